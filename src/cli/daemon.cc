// `hacoord daemon`: runs the HA daemon until SIGTERM/SIGINT (planned handover); SIGHUP reloads log level and
// checks.
#include "cli/cli.h"
#include "core/logging.h"
#include "hacoord/manager.h"
#include "manager/command_hooks.h"

namespace hacoord::cli {

int runDaemon(const Args& args) {
  Config config;
  if (!loadConfigOption(args, config)) return kExitConfig;
  setLogLevel(config.log_level);

  Manager manager(config, std::make_shared<CommandHooks>(config));
  if (Status s = manager.runDaemon(args.options.at("config")); !s.isOk()) {
    printError("daemon " + config.node_id + ": " + s.toString());
    return kExitFailure;
  }
  return kExitOk;
}

}  // namespace hacoord::cli
