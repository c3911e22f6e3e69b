// host:port parsing in one place (config validation, the HTTP listener, health probes).
#pragma once

#include <string>
#include <string_view>

#include "hacoord/status.h"

namespace hacoord {

struct HostPort {
  std::string host;  // a name, an IPv4 literal, or an IPv6 literal without its brackets
  int port = 0;
};

struct HostPortRules {
  bool allow_port_zero = false;        // "pick a free port" (listeners)
  const char* default_port = nullptr;  // used when the port is missing (URLs); nullptr: required
};

// Parses "host:port", "[v6]:port" (and "host" / "[v6]" when rules.default_port is set).
// InvalidArgument with a one-line reason that never repeats the input (callers quote it):
// "expected host:port", "an IPv6 host needs brackets, e.g. [::1]:4222", "the host is empty",
// "port must be a decimal number", "port must be between 1 and 65535", ...
Result<HostPort> parseHostPort(std::string_view text, HostPortRules rules = {});

}  // namespace hacoord
