// `hacoord daemon`: runs the HA daemon until SIGTERM/SIGINT (planned handover); SIGHUP reloads log level and checks.
#include "cli/cli.h"
#include "core/logging.h"
#include "hacoord/manager.h"

namespace hacoord::cli {
namespace {

// Logs every leadership event (the Manager moves the VIP around these).
class LoggingHooks final : public Hooks {
 public:
  explicit LoggingHooks(std::string node) : node_(std::move(node)), log_(moduleLogger("daemon")) {}
  Status onBecomeLeader(Epoch epoch) override {
    log_->info("{} is now LEADER (epoch {})", node_, epoch.value());
    return Status::ok();
  }
  Status onLoseLeadership(Epoch epoch, LossReason reason) override {
    log_->info("{} is no longer leader of epoch {} ({})", node_, epoch.value(), lossReasonName(reason));
    return Status::ok();
  }
  void onLeaderChange(std::string_view leader, Epoch epoch) override {
    log_->info("leader is now '{}' (epoch {})", leader, epoch.value());
  }

 private:
  std::string node_;
  std::shared_ptr<spdlog::logger> log_;
};

}  // namespace

int runDaemon(const Args& args) {
  Config config;
  if (!loadConfigOption(args, config)) return kExitConfig;
  setLogLevel(config.log_level);

  Manager manager(config, std::make_shared<LoggingHooks>(config.node_id));
  if (Status s = manager.runDaemon(args.options.at("config")); !s.isOk()) {
    printError("daemon " + config.node_id + ": " + s.toString());
    return kExitFailure;
  }
  return kExitOk;
}

}  // namespace hacoord::cli
