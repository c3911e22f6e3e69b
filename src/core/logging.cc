// Module loggers on a shared stderr sink with a process-wide level.
#include "core/logging.h"

#include <mutex>

#include <spdlog/sinks/stdout_color_sinks.h>

namespace hacoord {
namespace {

std::mutex g_mutex;
spdlog::level::level_enum g_level = spdlog::level::info;

spdlog::sink_ptr sharedSink() {
  static spdlog::sink_ptr sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  return sink;
}

}  // namespace

std::shared_ptr<spdlog::logger> moduleLogger(const std::string& module) {
  std::lock_guard lock(g_mutex);
  if (auto existing = spdlog::get(module)) return existing;
  auto logger = std::make_shared<spdlog::logger>(module, sharedSink());
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%-5l%$ [%n] %v");
  logger->set_level(g_level);
  spdlog::register_logger(logger);
  return logger;
}

bool setLogLevel(const std::string& level) {
  auto parsed = spdlog::level::from_str(level);
  if (parsed == spdlog::level::off && level != "off") return false;
  std::lock_guard lock(g_mutex);
  g_level = parsed;
  spdlog::apply_all([parsed](const std::shared_ptr<spdlog::logger>& l) { l->set_level(parsed); });
  return true;
}

}  // namespace hacoord
