// `hacoord daemon`: runs one node until SIGTERM/SIGINT (planned handover); SIGHUP reloads the log level.
#include <csignal>
#include <pthread.h>

#include "cli/cli.h"
#include "core/logging.h"
#include "hacoord/node.h"

namespace hacoord::cli {
namespace {

// Logs every leadership event: the daemon's hooks until the VIP module plugs in here.
class LoggingHooks final : public Hooks {
 public:
  explicit LoggingHooks(std::string node) : node_(std::move(node)), log_(moduleLogger("daemon")) {}
  Status onBecomeLeader(Epoch epoch) override {
    log_->info("{} is now LEADER (epoch {})", node_, epoch.value());
    return Status::ok();
  }
  void onLoseLeadership(Epoch epoch, LossReason reason) override {
    log_->info("{} is no longer leader of epoch {} ({})", node_, epoch.value(), lossReasonName(reason));
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

  // Block the signals before any thread starts, so that only sigwait() below receives them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  Node node(config, std::make_shared<LoggingHooks>(config.node_id));
  if (Status s = node.start(); !s.isOk()) {
    printError("daemon " + config.node_id + ": " + s.toString());
    return kExitFailure;
  }
  auto log = moduleLogger("daemon");
  for (;;) {
    int sig = 0;
    if (sigwait(&signals, &sig) != 0) continue;
    if (sig == SIGHUP) {
      auto reloaded = loadConfigFile(args.options.at("config"));
      if (!reloaded.isOk()) {
        log->error("SIGHUP: keeping the running config: {}", reloaded.status().message());
        continue;
      }
      setLogLevel(reloaded->log_level);
      log->info("SIGHUP: log level now {}", reloaded->log_level);
      continue;
    }
    log->info("signal {}: stopping (planned handover if leader)", sig);
    node.stop();
    return kExitOk;
  }
}

}  // namespace hacoord::cli
