// `hacoord daemon`: runs the HA daemon until SIGTERM/SIGINT (planned handover); SIGHUP reloads log level and checks.
#include <csignal>
#include <pthread.h>

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

  Manager manager(config, std::make_shared<LoggingHooks>(config.node_id));
  if (Status s = manager.start(); !s.isOk()) {
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
      if (Status s = manager.reload(*reloaded); !s.isOk()) {
        log->error("SIGHUP: {}", s.toString());
      }
      continue;
    }
    log->info("signal {}: stopping (planned handover if leader)", sig);
    manager.stop();
    return kExitOk;
  }
}

}  // namespace hacoord::cli
