// Module loggers on a shared stderr sink with a process-wide level.
#include "core/logging.h"

#include <functional>
#include <map>
#include <mutex>
#include <string>

#include <spdlog/sinks/stdout_color_sinks.h>

namespace hacoord {
namespace {

struct Loggers {
  std::mutex mutex;
  spdlog::level::level_enum level = spdlog::level::info;
  spdlog::sink_ptr sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  std::map<std::string, std::shared_ptr<spdlog::logger>, std::less<>> by_name;
};

// Never destroyed: moduleLogger() hands out references into it, and ModuleLog keeps raw pointers.
Loggers& loggers() {
  static Loggers* const instance = new Loggers;
  return *instance;
}

}  // namespace

const std::shared_ptr<spdlog::logger>& moduleLogger(std::string_view module) {
  Loggers& all = loggers();
  std::lock_guard lock(all.mutex);
  if (auto it = all.by_name.find(module); it != all.by_name.end()) return it->second;
  std::string name(module);
  auto logger = spdlog::get(name);
  if (!logger) {
    // Registered with spdlog too, so an embedding application's spdlog::set_level() reaches it.
    logger = std::make_shared<spdlog::logger>(name, all.sink);
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%-5l%$ [%n] %v");
    logger->set_level(all.level);
    spdlog::register_logger(logger);
  }
  return all.by_name.emplace(std::move(name), std::move(logger)).first->second;
}

bool setLogLevel(const std::string& level) {
  auto parsed = spdlog::level::from_str(level);
  if (parsed == spdlog::level::off && level != "off") return false;
  Loggers& all = loggers();
  std::lock_guard lock(all.mutex);
  all.level = parsed;
  spdlog::apply_all([parsed](const std::shared_ptr<spdlog::logger>& l) { l->set_level(parsed); });
  return true;
}

}  // namespace hacoord
