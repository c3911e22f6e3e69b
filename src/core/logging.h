// Logging: one named spdlog logger per module, all sharing one sink and one level.
#pragma once

#include <memory>
#include <string>

#include <spdlog/spdlog.h>

namespace hacoord {

// Returns the module's logger ("election", "nats", "node", "config", "cli", ...), creating it once.
std::shared_ptr<spdlog::logger> moduleLogger(const std::string& module);
// Sets the level of every module logger, present and future. False for an unknown level name.
bool setLogLevel(const std::string& level);

}  // namespace hacoord
