// libFuzzer target: the config loader (parseConfig) on arbitrary text.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "hacoord/config.h"

// Besides not crashing: whatever parseConfig accepts must also pass validateConfig, since an
// embedder relies on both saying the same thing about a Config.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  hacoord::Result<hacoord::Config> config = hacoord::parseConfig(text, "fuzz");
  if (config.isOk() && !hacoord::validateConfig(*config).isOk()) std::abort();
  return 0;
}
