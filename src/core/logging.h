// Logging: one named spdlog logger per module, all sharing one sink and one level.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <string_view>

#include <spdlog/spdlog.h>

namespace hacoord {

// Returns the module's logger ("election", "nats", "node", "config", "cli", ...), creating it once.
// Thread-safe and cheap to call again (a lookup under a mutex). The logger is never destroyed, so
// the reference stays valid for the whole process, static destructors and detached threads included.
const std::shared_ptr<spdlog::logger>& moduleLogger(std::string_view module);
// Sets the level of every module logger, present and future. False for an unknown level name.
bool setLogLevel(const std::string& level);

// A source file's logger, declared once at namespace scope and used like a pointer:
//   constinit const ModuleLog kLog("election");
//   kLog->info("became leader at epoch {}", epoch);
// Constant-initialised and trivially destructible (usable before main and after it); the first use
// looks the module up, every later one is a single atomic load.
class ModuleLog {
 public:
  explicit constexpr ModuleLog(const char* module) : module_(module) {}

  spdlog::logger* operator->() const {
    spdlog::logger* logger = logger_.load(std::memory_order_acquire);
    if (logger == nullptr) {
      // Two threads may both get here: they store the same pointer.
      logger = moduleLogger(module_).get();
      logger_.store(logger, std::memory_order_release);
    }
    return logger;
  }

 private:
  const char* module_;
  mutable std::atomic<spdlog::logger*> logger_{nullptr};
};

}  // namespace hacoord
