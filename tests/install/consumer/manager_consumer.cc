// Embeds the whole daemon (hacoord::Manager) from the installed package. With the config's NATS
// server down, start() must fail with Unavailable and say which server: exit 0 exactly then.
#include <cstdio>

#include "hacoord/manager.h"

int main(int argc, char** argv) {
  auto config = hacoord::loadConfigFile(argc == 2 ? argv[1] : "");
  if (!config.isOk()) return 3;
  hacoord::Manager manager(*config);
  const hacoord::Status s = manager.start();
  std::printf("start: %s\n", s.toString().c_str());
  return s.code() == hacoord::StatusCode::kUnavailable ? 0 : 1;
}
