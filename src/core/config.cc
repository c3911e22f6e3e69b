// Strict JSON config loader: every key known, every type exact, every value bounded (DESIGN §2).
#include "hacoord/config.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <initializer_list>
#include <limits>
#include <memory>
#include <utility>
#include <vector>

#include <json/json.h>

namespace hacoord {
namespace {

// Anything longer than a day is a typo (seconds written as milliseconds twice over), not a policy.
constexpr long long kMaxMillis = 86'400'000;
// A config is a few kilobytes; reading a huge file by mistake should fail fast, not eat memory.
constexpr std::size_t kMaxFileBytes = 1 << 20;
// The schema is four levels deep; jsoncpp recurses per level, so a hostile file cannot blow the stack.
constexpr int kMaxNesting = 32;
constexpr std::size_t kMaxIdLength = 64;
// Linux IFNAMSIZ is 16 including the terminating NUL.
constexpr std::size_t kMaxInterfaceLength = 15;

constexpr std::string_view kLogLevels[] = {"trace", "debug", "info", "warn", "error", "critical", "off"};

// A rejected value: where (JSON path; "" is the document root) and why. Thrown only inside this file
// so each check stays one line; parseConfig and validateConfig turn it into a Status.
struct Problem {
  std::string path;
  std::string reason;
};

[[noreturn]] void fail(std::string path, std::string reason) {
  throw Problem{std::move(path), std::move(reason)};
}

// Control characters would break the one-line error contract (and terminals); escape them.
std::string printable(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

// A user-supplied value echoed in a message: quoted, escaped, and cut short so one bad value cannot
// flood a log line.
std::string quoteValue(std::string_view s) {
  constexpr std::size_t kMaxShown = 80;
  std::string out = "\"";
  for (char c : s.substr(0, kMaxShown)) {
    if (c == '"' || c == '\\') out += '\\';
    out += printable(std::string_view(&c, 1));
  }
  out += '"';
  if (s.size() > kMaxShown) out += "...";
  return out;
}

bool isPlainKey(std::string_view key) {
  if (key.empty()) return false;
  return std::all_of(key.begin(), key.end(), [](unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  });
}

// JSON paths as an operator would type them in jq: a.b[2].c; odd keys as a["odd key"].
std::string memberPath(const std::string& parent, std::string_view key) {
  if (!isPlainKey(key)) return parent + "[" + quoteValue(key) + "]";
  return parent.empty() ? std::string(key) : parent + "." + std::string(key);
}

std::string indexPath(const std::string& parent, std::size_t index) {
  return parent + "[" + std::to_string(index) + "]";
}

Status makeError(std::string_view source, const std::string& path, const std::string& reason) {
  return invalidArgument(printable(source) + ": " + (path.empty() ? "(root)" : path) + ": " + reason);
}

std::string typeName(const Json::Value& v) {
  switch (v.type()) {
    case Json::nullValue: return "null";
    case Json::intValue:
    case Json::uintValue:
    case Json::realValue: return "number";
    case Json::stringValue: return "string";
    case Json::booleanValue: return "boolean";
    case Json::arrayValue: return "array";
    case Json::objectValue: return "object";
  }
  return "unknown";
}

std::size_t editDistance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// go-cluster keys that users bring along; each gets a pointer instead of a bare "unknown key".
std::string migrationHint(const std::string& path) {
  if (path == "election.heartbeatIntervalMs") {
    return "go-cluster's heartbeatIntervalMs is election.renewIntervalMs here";
  }
  if (path == "nats.maxReconnects") return "hacoord reconnects without limit; remove it";
  if (path == "service") return "go-cluster's service section has no equivalent here; remove it";
  return "";
}

std::string unknownKeyReason(const std::string& path, std::string_view key,
                             std::initializer_list<std::string_view> known) {
  std::string hint = migrationHint(path);
  if (!hint.empty()) return "unknown key (" + hint + ")";
  std::string_view best;
  std::size_t best_distance = 3;  // beyond two edits a suggestion is more noise than help
  for (std::string_view candidate : known) {
    std::size_t d = editDistance(key, candidate);
    if (d < best_distance) {
      best_distance = d;
      best = candidate;
    }
  }
  if (best.empty()) return "unknown key";
  return "unknown key (did you mean " + std::string(best) + "?)";
}

// ---- value rules shared by the parser and validateConfig (messages must match) ----

void checkMillis(const std::string& path, long long ms, const std::string& shown) {
  if (ms <= 0) fail(path, "must be a positive number of milliseconds, got " + shown);
  if (ms > kMaxMillis) fail(path, "must be at most 86400000 (one day), got " + shown);
}
void checkMillis(const std::string& path, milliseconds ms) {
  checkMillis(path, ms.count(), std::to_string(ms.count()));
}

void checkRange(const std::string& path, long long value, long long lo, long long hi,
                const std::string& shown) {
  if (value < lo || value > hi) {
    fail(path, "must be between " + std::to_string(lo) + " and " + std::to_string(hi) + ", got " + shown);
  }
}
void checkRange(const std::string& path, long long value, long long lo, long long hi) {
  checkRange(path, value, lo, hi, std::to_string(value));
}

// A NUL would silently cut a path or command short once it reaches a C API.
void checkNoNul(const std::string& path, std::string_view s) {
  if (s.find('\0') != std::string_view::npos) fail(path, "must not contain a NUL character");
}

void checkId(const std::string& path, const std::string& id) {
  if (!isValidId(id)) {
    fail(path, "must be 1 to 64 characters from A-Z a-z 0-9 _ - (got " + quoteValue(id) + ")");
  }
}

// "" when `port` is a decimal port number in range, else the reason.
std::string portProblem(std::string_view port, bool allow_zero) {
  if (port.empty() || port.size() > 5 ||
      !std::all_of(port.begin(), port.end(), [](unsigned char c) { return c >= '0' && c <= '9'; })) {
    return "port must be a decimal number";
  }
  long value = std::stol(std::string(port));
  if (value > 65535 || (value == 0 && !allow_zero)) {
    return allow_zero ? "port must be between 0 and 65535" : "port must be between 1 and 65535";
  }
  return "";
}

// "" when `s` is host:port (a name, an IPv4 literal or a bracketed IPv6 literal), else the reason.
std::string hostPortProblem(std::string_view s, bool allow_port_zero) {
  std::string_view host;
  std::string_view port;
  if (!s.empty() && s.front() == '[') {
    std::size_t close = s.find(']');
    if (close == std::string_view::npos) return "unterminated [ in IPv6 address";
    host = s.substr(1, close - 1);
    std::string_view rest = s.substr(close + 1);
    if (rest.empty() || rest.front() != ':') return "expected host:port";
    port = rest.substr(1);
    in6_addr unused{};
    if (inet_pton(AF_INET6, std::string(host).c_str(), &unused) != 1) {
      return "the bracketed host must be an IPv6 address";
    }
  } else {
    std::size_t colon = s.rfind(':');
    if (colon == std::string_view::npos) return "expected host:port";
    host = s.substr(0, colon);
    port = s.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) return "an IPv6 host needs brackets, e.g. [::1]:4222";
  }
  if (host.empty()) return "the host is empty";
  for (unsigned char c : host) {
    if (c <= 0x20 || c == 0x7f || c == '/' || c == '@' || c == '?' || c == '#') {
      return "the host contains a character not allowed in a host name";
    }
  }
  return portProblem(port, allow_port_zero);
}

void checkHostPort(const std::string& path, const std::string& value, bool allow_port_zero) {
  std::string problem = hostPortProblem(value, allow_port_zero);
  if (!problem.empty()) fail(path, problem + " (got " + quoteValue(value) + ")");
}

void checkNatsUrl(const std::string& path, const std::string& url) {
  std::string_view rest;
  if (url.starts_with("nats://")) {
    rest = std::string_view(url).substr(7);
  } else if (url.starts_with("tls://")) {
    rest = std::string_view(url).substr(6);
  } else {
    fail(path, "must start with nats:// or tls:// (got " + quoteValue(url) + ")");
  }
  // nats.c accepts user:password@ or token@ before the host. Never echo it: it is a secret.
  std::string shown = url;
  std::size_t at = rest.rfind('@');
  if (at != std::string_view::npos) {
    rest = rest.substr(at + 1);
    shown = url.substr(0, url.size() - rest.size() - 1 - at) + "***@" + std::string(rest);
  }
  if (rest.find_first_of("/?#") != std::string_view::npos) {
    fail(path, "must be scheme://host:port with nothing after the port (got " + quoteValue(shown) + ")");
  }
  std::string problem = hostPortProblem(rest, /*allow_port_zero=*/false);
  if (!problem.empty()) fail(path, problem + " (got " + quoteValue(shown) + ")");
}

void checkHttpUrl(const std::string& path, const std::string& url) {
  for (unsigned char c : url) {
    if (c <= 0x20 || c == 0x7f) fail(path, "must not contain spaces or control characters");
  }
  if (url.starts_with("https://")) fail(path, "https is not supported; use http:// (got " + quoteValue(url) + ")");
  if (!url.starts_with("http://")) fail(path, "must start with http:// (got " + quoteValue(url) + ")");
  std::string_view rest = std::string_view(url).substr(7);
  std::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
  std::string problem = "the host is empty";
  if (!authority.empty()) {
    const bool has_port = authority.front() == '[' ? authority.back() != ']'
                                                   : authority.find(':') != std::string_view::npos;
    // Without a port, check the host alone by lending it the default one.
    problem = hostPortProblem(has_port ? std::string(authority) : std::string(authority) + ":80", false);
  }
  if (!problem.empty()) fail(path, problem + " (got " + quoteValue(url) + ")");
}

// Mirrors the kernel's dev_valid_name(): anything else fails only when the VIP is first added.
void checkInterfaceName(const std::string& path, const std::string& name) {
  if (name.empty() || name.size() > kMaxInterfaceLength) {
    fail(path, "must be 1 to 15 characters (got " + quoteValue(name) + ")");
  }
  if (name == "." || name == "..") fail(path, "must not be . or ..");
  for (unsigned char c : name) {
    if (c == '/' || c == ':' || c <= 0x20 || c == 0x7f) {
      fail(path, "must not contain '/', ':' or whitespace (got " + quoteValue(name) + ")");
    }
  }
}

// Returns the address family; rejects what can never be a service address.
int checkVipAddress(const std::string& path, const std::string& address) {
  checkNoNul(path, address);  // inet_pton would stop at it and accept the prefix
  in_addr v4{};
  in6_addr v6{};
  if (inet_pton(AF_INET, address.c_str(), &v4) == 1) {
    std::uint32_t a = ntohl(v4.s_addr);
    if (a == 0) fail(path, "must not be the unspecified address 0.0.0.0");
    if ((a >> 24) == 127) fail(path, "must not be a loopback address (got " + quoteValue(address) + ")");
    if ((a >> 28) == 0xE) fail(path, "must not be a multicast address (got " + quoteValue(address) + ")");
    if (a == 0xFFFFFFFFu) fail(path, "must not be the broadcast address 255.255.255.255");
    return AF_INET;
  }
  if (inet_pton(AF_INET6, address.c_str(), &v6) == 1) {
    static const in6_addr kLoopback = IN6ADDR_LOOPBACK_INIT;
    static const in6_addr kAny = IN6ADDR_ANY_INIT;
    if (std::memcmp(&v6, &kAny, sizeof v6) == 0) fail(path, "must not be the unspecified address ::");
    if (std::memcmp(&v6, &kLoopback, sizeof v6) == 0) fail(path, "must not be the loopback address ::1");
    if (v6.s6_addr[0] == 0xff) fail(path, "must not be a multicast address (got " + quoteValue(address) + ")");
    return AF_INET6;
  }
  fail(path, "must be an IPv4 or IPv6 address without prefix or zone (got " + quoteValue(address) + ")");
}

void validateNats(const NatsConfig& n) {
  if (n.servers.empty()) fail("nats.servers", "must list at least one server");
  for (std::size_t i = 0; i < n.servers.size(); ++i) {
    checkNoNul(indexPath("nats.servers", i), n.servers[i]);
    checkNatsUrl(indexPath("nats.servers", i), n.servers[i]);
  }
  checkNoNul("nats.credentials", n.credentials);
  checkNoNul("nats.tls.ca", n.tls.ca);
  checkNoNul("nats.tls.cert", n.tls.cert);
  checkNoNul("nats.tls.key", n.tls.key);
  if (!n.tls.cert.empty() && n.tls.key.empty()) fail("nats.tls.key", "required when nats.tls.cert is set");
  if (n.tls.cert.empty() && !n.tls.key.empty()) fail("nats.tls.cert", "required when nats.tls.key is set");
  checkMillis("nats.reconnectWaitMs", n.reconnect_wait);
  checkMillis("nats.reconnectWaitMaxMs", n.reconnect_wait_max);
  checkMillis("nats.connectTimeoutMs", n.connect_timeout);
  checkMillis("nats.requestTimeoutMs", n.request_timeout);
  if (n.reconnect_wait > n.reconnect_wait_max) {
    fail("nats.reconnectWaitMs", "must not exceed nats.reconnectWaitMaxMs (" +
                                     std::to_string(n.reconnect_wait.count()) + " > " +
                                     std::to_string(n.reconnect_wait_max.count()) + ")");
  }
}

void validateElection(const ElectionConfig& e) {
  checkMillis("election.leaseTtlMs", e.lease_ttl);
  checkMillis("election.renewIntervalMs", e.renew_interval);
  checkMillis("election.cooldownMs", e.cooldown);
  checkMillis("election.safetyMarginMs", e.safety_margin);
  checkMillis("election.hookTimeLimitMs", e.hook_time_limit);
  checkRange("election.bucketReplicas", e.bucket_replicas, 1, 5);
  const long long ttl = e.lease_ttl.count();
  const long long renew = e.renew_interval.count();
  const long long margin = e.safety_margin.count();
  // Two renewal attempts per lease: one lost or slow write must not cost the lease.
  if (2 * renew >= ttl) {
    fail("election.renewIntervalMs", "must be less than half of election.leaseTtlMs (" +
                                         std::to_string(renew) + " >= " + std::to_string(ttl) + "/2)");
  }
  // The leader fences itself at TTL - margin; it must get to renew before that.
  if (renew + margin >= ttl) {
    fail("election.safetyMarginMs",
         "election.renewIntervalMs + election.safetyMarginMs must be less than election.leaseTtlMs (" +
             std::to_string(renew) + " + " + std::to_string(margin) + " >= " + std::to_string(ttl) + ")");
  }
}

void validateVip(const VipConfig& v) {
  checkRange("vip.garpCount", v.garp_count, 0, 100);
  checkMillis("vip.garpIntervalMs", v.garp_interval);
  checkMillis("vip.garpRefreshMs", v.garp_refresh);
  if (!v.enabled()) {
    // Probably a forgotten address: refuse rather than run without the VIP the operator expects.
    if (!v.interface.empty()) fail("vip.interface", "set without vip.address");
    if (v.netmask != -1) fail("vip.netmask", "set without vip.address");
    return;
  }
  int family = checkVipAddress("vip.address", v.address);
  int max_prefix = family == AF_INET ? 32 : 128;
  if (v.netmask != -1 && (v.netmask < 0 || v.netmask > max_prefix)) {
    fail("vip.netmask", "must be between 0 and " + std::to_string(max_prefix) + " for an " +
                            (family == AF_INET ? "IPv4" : "IPv6") + " address, got " +
                            std::to_string(v.netmask));
  }
  if (v.interface.empty()) fail("vip.interface", "required when vip.address is set");
  checkInterfaceName("vip.interface", v.interface);
}

void validateHealth(const HealthConfig& h) {
  checkMillis("health.failAfterMs", h.fail_after);
  for (std::size_t i = 0; i < h.checks.size(); ++i) {
    const HealthCheckConfig& c = h.checks[i];
    const std::string base = indexPath("health.checks", i);
    checkId(base + ".name", c.name);
    for (std::size_t j = 0; j < i; ++j) {
      if (h.checks[j].name == c.name) {
        fail(base + ".name", "duplicate of " + indexPath("health.checks", j) + ".name (" + quoteValue(c.name) + ")");
      }
    }
    checkNoNul(base + ".command", c.command);
    using Type = HealthCheckConfig::Type;
    if (c.type != Type::kCommand && !c.command.empty()) fail(base + ".command", "only used by type command");
    if (c.type != Type::kTcp && !c.address.empty()) fail(base + ".address", "only used by type tcp");
    if (c.type != Type::kHttp && !c.url.empty()) fail(base + ".url", "only used by type http");
    switch (c.type) {
      case Type::kCommand:
        if (c.command.empty()) fail(base + ".command", "required for type command");
        break;
      case Type::kTcp:
        if (c.address.empty()) fail(base + ".address", "required for type tcp");
        checkHostPort(base + ".address", c.address, /*allow_port_zero=*/false);
        break;
      case Type::kHttp:
        if (c.url.empty()) fail(base + ".url", "required for type http");
        checkHttpUrl(base + ".url", c.url);
        break;
    }
    checkMillis(base + ".intervalMs", c.interval);
    checkMillis(base + ".timeoutMs", c.timeout);
    // Overlapping runs of one check would pile up (and race on the rise/fall counters).
    if (c.timeout > c.interval) {
      fail(base + ".timeoutMs", "must not exceed intervalMs (" + std::to_string(c.timeout.count()) + " > " +
                                    std::to_string(c.interval.count()) + ")");
    }
    checkRange(base + ".rise", c.rise, 1, 100);
    checkRange(base + ".fall", c.fall, 1, 100);
  }
}

void validate(const Config& c) {
  checkId("clusterId", c.cluster_id);
  checkId("nodeId", c.node_id);
  validateNats(c.nats);
  validateElection(c.election);
  validateVip(c.vip);
  validateHealth(c.health);
  if (!c.http_listen.empty()) checkHostPort("http.listen", c.http_listen, /*allow_port_zero=*/true);
  if (std::find(std::begin(kLogLevels), std::end(kLogLevels), c.log_level) == std::end(kLogLevels)) {
    fail("log.level", "must be one of trace, debug, info, warn, error, critical, off (got " +
                          quoteValue(c.log_level) + ")");
  }
}

// ---- the JSON walk ----

// One JSON object of the schema: checks it is an object with only known keys, then reads typed
// members. Absent members leave the caller's default untouched.
class ObjectReader {
 public:
  ObjectReader(const Json::Value& value, std::string path, std::initializer_list<std::string_view> known)
      : value_(value), path_(std::move(path)) {
    if (!value.isObject()) fail(path_, "expected an object, got " + typeName(value));
    for (auto it = value.begin(); it != value.end(); ++it) {
      const std::string key = it.name();
      if (std::find(known.begin(), known.end(), key) == known.end()) {
        const std::string key_path = memberPath(path_, key);
        fail(key_path, unknownKeyReason(key_path, key, known));
      }
    }
  }

  std::string path(std::string_view key) const { return memberPath(path_, key); }
  const Json::Value* find(std::string_view key) const { return value_.find(key.data(), key.data() + key.size()); }

  bool readString(std::string_view key, std::string& out) const {
    const Json::Value* v = find(key);
    if (v == nullptr) return false;
    out = asString(*v, path(key));
    return true;
  }

  void readBool(std::string_view key, bool& out) const {
    const Json::Value* v = find(key);
    if (v == nullptr) return;
    if (!v->isBool()) fail(path(key), "expected a boolean (true or false), got " + typeName(*v));
    out = v->asBool();
  }

  std::optional<milliseconds> readMillis(std::string_view key) const {
    const Json::Value* v = find(key);
    if (v == nullptr) return std::nullopt;
    long long ms = asInteger(*v, path(key));
    checkMillis(path(key), ms, v->asString());
    return milliseconds(ms);
  }
  void readMillis(std::string_view key, milliseconds& out) const {
    if (auto ms = readMillis(key)) out = *ms;
  }

  void readInt(std::string_view key, int& out, int lo, int hi) const {
    const Json::Value* v = find(key);
    if (v == nullptr) return;
    long long n = asInteger(*v, path(key));
    checkRange(path(key), n, lo, hi, v->asString());
    out = static_cast<int>(n);
  }

  static std::string asString(const Json::Value& v, const std::string& path) {
    if (!v.isString()) fail(path, "expected a string, got " + typeName(v));
    std::string s = v.asString();
    checkNoNul(path, s);
    return s;
  }

  // Exact integers only: jsoncpp calls 1.0 and 1e3 "Int64" too, but a config that says 1.5 seconds
  // as 1.5 means something else than it reads, so fractions and exponents are refused outright.
  static long long asInteger(const Json::Value& v, const std::string& path) {
    switch (v.type()) {
      case Json::intValue: return v.asInt64();
      case Json::uintValue:
        // Above int64 the range checks reject it anyway; saturate to keep the arithmetic defined.
        return v.asUInt64() > static_cast<Json::UInt64>(std::numeric_limits<long long>::max())
                   ? std::numeric_limits<long long>::max()
                   : static_cast<long long>(v.asUInt64());
      case Json::realValue:
        // jsoncpp stores integers beyond 64 bits as doubles; call those too large, not fractional.
        if (v.asDouble() >= 0x1p63) return std::numeric_limits<long long>::max();
        if (v.asDouble() <= -0x1p63) return std::numeric_limits<long long>::min();
        fail(path, "expected an integer, got a number with a fraction or exponent");
      default: fail(path, "expected an integer, got " + typeName(v));
    }
  }

 private:
  const Json::Value& value_;
  std::string path_;
};

void parseNats(const Json::Value& value, NatsConfig& n) {
  ObjectReader o(value, "nats",
                 {"servers", "credentials", "tls", "reconnectWaitMs", "reconnectWaitMaxMs", "connectTimeoutMs",
                  "requestTimeoutMs"});
  const Json::Value* servers = o.find("servers");
  if (servers == nullptr) fail("nats.servers", "required");
  if (!servers->isArray()) fail("nats.servers", "expected an array of strings, got " + typeName(*servers));
  for (Json::ArrayIndex i = 0; i < servers->size(); ++i) {
    n.servers.push_back(ObjectReader::asString((*servers)[i], indexPath("nats.servers", i)));
  }
  o.readString("credentials", n.credentials);
  if (const Json::Value* tls = o.find("tls")) {
    ObjectReader t(*tls, "nats.tls", {"ca", "cert", "key"});
    t.readString("ca", n.tls.ca);
    t.readString("cert", n.tls.cert);
    t.readString("key", n.tls.key);
  }
  o.readMillis("reconnectWaitMs", n.reconnect_wait);
  o.readMillis("reconnectWaitMaxMs", n.reconnect_wait_max);
  o.readMillis("connectTimeoutMs", n.connect_timeout);
  o.readMillis("requestTimeoutMs", n.request_timeout);
}

void parseElection(const Json::Value* value, ElectionConfig& e) {
  std::optional<milliseconds> renew;
  std::optional<milliseconds> cooldown;
  std::optional<milliseconds> margin;
  if (value != nullptr) {
    ObjectReader o(*value, "election",
                   {"leaseTtlMs", "renewIntervalMs", "cooldownMs", "safetyMarginMs", "hookTimeLimitMs",
                    "bucketReplicas", "candidate"});
    o.readMillis("leaseTtlMs", e.lease_ttl);
    renew = o.readMillis("renewIntervalMs");
    cooldown = o.readMillis("cooldownMs");
    margin = o.readMillis("safetyMarginMs");
    o.readMillis("hookTimeLimitMs", e.hook_time_limit);
    o.readInt("bucketReplicas", e.bucket_replicas, 1, 5);
    o.readBool("candidate", e.candidate);
  }
  // Defaults that scale with the TTL, so raising only leaseTtlMs gives a consistent set
  // (DESIGN §3 gives renew TTL/4 and cooldown TTL; the margin is TTL/10): 500, 2000, 200 by default.
  const milliseconds ttl = e.lease_ttl;
  e.renew_interval = renew.value_or(std::max(milliseconds(1), ttl / 4));
  e.cooldown = cooldown.value_or(ttl);
  e.safety_margin = margin.value_or(std::max(milliseconds(1), ttl / 10));
}

void parseVip(const Json::Value& value, VipConfig& v) {
  ObjectReader o(value, "vip",
                 {"address", "netmask", "interface", "garpCount", "garpIntervalMs", "garpRefreshMs",
                  "duplicateCheck"});
  o.readString("address", v.address);
  // Range per family is checked in validateVip, once the address is known.
  o.readInt("netmask", v.netmask, 0, 128);
  o.readString("interface", v.interface);
  o.readInt("garpCount", v.garp_count, 0, 100);
  o.readMillis("garpIntervalMs", v.garp_interval);
  o.readMillis("garpRefreshMs", v.garp_refresh);
  o.readBool("duplicateCheck", v.duplicate_check);
}

HealthCheckConfig parseCheck(const Json::Value& value, const std::string& path) {
  ObjectReader o(value, path,
                 {"name", "type", "command", "address", "url", "intervalMs", "timeoutMs", "rise", "fall"});
  HealthCheckConfig c;
  if (!o.readString("name", c.name)) fail(o.path("name"), "required");
  std::string type;
  if (!o.readString("type", type)) fail(o.path("type"), "required (command, tcp or http)");
  if (type == "command") {
    c.type = HealthCheckConfig::Type::kCommand;
  } else if (type == "tcp") {
    c.type = HealthCheckConfig::Type::kTcp;
  } else if (type == "http") {
    c.type = HealthCheckConfig::Type::kHttp;
  } else {
    fail(o.path("type"), "must be one of command, tcp, http (got " + quoteValue(type) + ")");
  }
  o.readString("command", c.command);
  o.readString("address", c.address);
  o.readString("url", c.url);
  o.readMillis("intervalMs", c.interval);
  o.readMillis("timeoutMs", c.timeout);
  o.readInt("rise", c.rise, 1, 100);
  o.readInt("fall", c.fall, 1, 100);
  return c;
}

void parseHealth(const Json::Value& value, HealthConfig& h) {
  ObjectReader o(value, "health", {"checks", "failAfterMs"});
  if (const Json::Value* checks = o.find("checks")) {
    if (!checks->isArray()) fail("health.checks", "expected an array of objects, got " + typeName(*checks));
    for (Json::ArrayIndex i = 0; i < checks->size(); ++i) {
      h.checks.push_back(parseCheck((*checks)[i], indexPath("health.checks", i)));
    }
  }
  o.readMillis("failAfterMs", h.fail_after);
}

Config parseRoot(const Json::Value& root) {
  ObjectReader o(root, "", {"clusterId", "nodeId", "nats", "election", "vip", "health", "http", "log"});
  Config c;
  if (!o.readString("clusterId", c.cluster_id)) fail("clusterId", "required");
  if (!o.readString("nodeId", c.node_id)) fail("nodeId", "required");
  const Json::Value* nats = o.find("nats");
  if (nats == nullptr) fail("nats.servers", "required");
  parseNats(*nats, c.nats);
  parseElection(o.find("election"), c.election);
  if (const Json::Value* vip = o.find("vip")) parseVip(*vip, c.vip);
  if (const Json::Value* health = o.find("health")) parseHealth(*health, c.health);
  if (const Json::Value* http = o.find("http")) {
    ObjectReader h(*http, "http", {"listen"});
    h.readString("listen", c.http_listen);
  }
  if (const Json::Value* log = o.find("log")) {
    ObjectReader l(*log, "log", {"level"});
    l.readString("level", c.log_level);
  }
  // The family is known only now; an absent netmask means a single host route.
  if (c.vip.enabled() && c.vip.netmask == -1) {
    in_addr unused{};
    c.vip.netmask = inet_pton(AF_INET, c.vip.address.c_str(), &unused) == 1 ? 32 : 128;
  }
  return c;
}

// Lexical rules jsoncpp 1.9.5 does not enforce even in strict mode: it accepts numbers with leading
// zeros, and /* block */ comments between members regardless of allowComments. `//` line comments
// are allowed (`hacoord init` writes a commented sample); block comments are not. Returns
// "line L, column C: reason" or "".
std::string lexicalProblem(std::string_view text) {
  int line = 1;
  int column = 0;
  bool in_string = false;
  bool escaped = false;
  bool in_number = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    ++column;
    if (c == '\n') {
      ++line;
      column = 0;
    }
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    auto at = [&] { return "line " + std::to_string(line) + ", column " + std::to_string(column) + ": "; };
    if (c == '"') {
      in_string = true;
      in_number = false;
    } else if (c == '/' && i + 1 < text.size() && text[i + 1] == '/') {
      while (i + 1 < text.size() && text[i + 1] != '\n') ++i;  // the newline itself counts lines
      in_number = false;
    } else if (c == '/') {
      return at() + "only // line comments are allowed";
    } else if (!in_number && (c == '-' || (c >= '0' && c <= '9'))) {
      in_number = true;
      std::size_t digit = c == '-' ? i + 1 : i;
      if (digit + 1 < text.size() && text[digit] == '0' && text[digit + 1] >= '0' && text[digit + 1] <= '9') {
        return at() + "numbers must not have leading zeros";
      }
    } else if (in_number && !((c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-')) {
      in_number = false;
    }
  }
  return "";
}

// jsoncpp reports "* Line 3, Column 5\n  Missing ',' ...\n" (possibly several); keep the first, on
// one line.
std::string firstParseError(const std::string& errors) {
  std::string location;
  std::string message;
  std::size_t end = errors.find('\n');
  location = errors.substr(0, end);
  if (end != std::string::npos) {
    std::size_t next = errors.find('\n', end + 1);
    message = errors.substr(end + 1, next == std::string::npos ? std::string::npos : next - end - 1);
  }
  auto trim = [](std::string& s) {
    s.erase(0, s.find_first_not_of(" *\t"));
    s.erase(s.find_last_not_of(" \t\r") + 1);
  };
  trim(location);
  trim(message);
  if (location.starts_with("Line ")) location[0] = 'l';
  std::size_t column = location.find(", Column ");
  if (column != std::string::npos) location[column + 2] = 'c';
  if (location.empty()) return "invalid JSON";
  return location + ": " + (message.empty() ? "invalid JSON" : message);
}

}  // namespace

bool isValidId(std::string_view id) {
  if (id.empty() || id.size() > kMaxIdLength) return false;
  return std::all_of(id.begin(), id.end(), [](unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
}

Status validateConfig(const Config& config) {
  try {
    validate(config);
  } catch (const Problem& p) {
    return makeError("config", p.path, p.reason);
  }
  return Status::ok();
}

Result<Config> parseConfig(std::string_view json_text, std::string_view source) {
  if (std::string lexical = lexicalProblem(json_text); !lexical.empty()) {
    return invalidArgument(printable(source) + ": " + printable(lexical));
  }
  Json::CharReaderBuilder builder;
  Json::CharReaderBuilder::strictMode(&builder.settings_);
  builder["allowComments"] = true;  // `//` only: lexicalProblem() refused block comments
  builder["stackLimit"] = kMaxNesting;
  // An editor's byte-order mark is harmless; refusing it would only puzzle the operator.
  builder["skipBom"] = true;
  std::unique_ptr<Json::CharReader> reader(builder.newCharReader());
  Json::Value root;
  std::string errors;
  try {
    if (!reader->parse(json_text.data(), json_text.data() + json_text.size(), &root, &errors)) {
      return invalidArgument(printable(source) + ": " + printable(firstParseError(errors)));
    }
  } catch (const std::exception&) {
    // jsoncpp throws when stackLimit is exceeded.
    return invalidArgument(printable(source) + ": (root): nested deeper than " + std::to_string(kMaxNesting) +
                           " levels");
  }
  try {
    Config config = parseRoot(root);
    validate(config);
    return config;
  } catch (const Problem& p) {
    return makeError(source, p.path, p.reason);
  }
}

Result<Config> loadConfigFile(const std::string& path) {
  // 'e': O_CLOEXEC, so health-check commands forked later never inherit the descriptor.
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(path.c_str(), "rbe"), &std::fclose);
  if (!file) return invalidArgument(printable(path) + ": cannot read: " + std::strerror(errno));
  std::string text;
  char buffer[8192];
  while (true) {
    std::size_t n = std::fread(buffer, 1, sizeof buffer, file.get());
    text.append(buffer, n);
    if (text.size() > kMaxFileBytes) {
      return invalidArgument(printable(path) + ": cannot read: larger than " + std::to_string(kMaxFileBytes) +
                             " bytes, not a config file");
    }
    if (n < sizeof buffer) {
      if (std::ferror(file.get())) return invalidArgument(printable(path) + ": cannot read: " + std::strerror(errno));
      break;
    }
  }
  std::string source = std::filesystem::path(path).filename().string();
  return parseConfig(text, source.empty() ? path : source);
}

}  // namespace hacoord
