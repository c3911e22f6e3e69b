// host:port parsing: bracketed IPv6, decimal ports in range, no characters that end a host.
#include "core/host_port.h"

#include <arpa/inet.h>

#include <algorithm>

namespace hacoord {
namespace {

Status portProblem(std::string_view port, bool allow_zero) {
  if (port.empty() || port.size() > 5 ||
      !std::all_of(port.begin(), port.end(), [](unsigned char c) { return c >= '0' && c <= '9'; })) {
    return invalidArgument("port must be a decimal number");
  }
  const long value = std::stol(std::string(port));
  if (value > 65535 || (value == 0 && !allow_zero)) {
    return invalidArgument(allow_zero ? "port must be between 0 and 65535"
                                      : "port must be between 1 and 65535");
  }
  return Status::ok();
}

}  // namespace

Result<HostPort> parseHostPort(std::string_view s, HostPortRules rules) {
  std::string_view host;
  std::string_view port;
  bool has_port = true;
  if (!s.empty() && s.front() == '[') {
    const std::size_t close = s.find(']');
    if (close == std::string_view::npos) return invalidArgument("unterminated [ in IPv6 address");
    host = s.substr(1, close - 1);
    std::string_view rest = s.substr(close + 1);
    if (rest.empty() && rules.default_port != nullptr) {
      has_port = false;
    } else if (rest.empty() || rest.front() != ':') {
      return invalidArgument("expected host:port");
    } else {
      port = rest.substr(1);
    }
    in6_addr unused{};
    if (inet_pton(AF_INET6, std::string(host).c_str(), &unused) != 1) {
      return invalidArgument("the bracketed host must be an IPv6 address");
    }
  } else {
    const std::size_t colon = s.rfind(':');
    if (colon == std::string_view::npos) {
      if (rules.default_port == nullptr) return invalidArgument("expected host:port");
      host = s;
      has_port = false;
    } else {
      host = s.substr(0, colon);
      port = s.substr(colon + 1);
    }
    if (host.find(':') != std::string_view::npos) {
      return invalidArgument("an IPv6 host needs brackets, e.g. [::1]:4222");
    }
  }
  if (host.empty()) return invalidArgument("the host is empty");
  for (unsigned char c : host) {
    if (c <= 0x20 || c == 0x7f || c == '/' || c == '@' || c == '?' || c == '#') {
      return invalidArgument("the host contains a character not allowed in a host name");
    }
  }
  if (!has_port) port = rules.default_port;
  if (Status p = portProblem(port, rules.allow_port_zero); !p.isOk()) return p;
  return HostPort{std::string(host), static_cast<int>(std::stol(std::string(port)))};
}

}  // namespace hacoord
