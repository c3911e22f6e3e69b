// Config schema and value rules: which keys, which defaults, which values a node may start with.
#include "hacoord/config.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <utility>

#include "core/host_port.h"
#include "core/json_reader.h"

namespace hacoord {
namespace {

using json::quote;

// Anything longer than a day is a typo (seconds written as milliseconds twice over), not a policy.
constexpr long long kMaxMillis = 86'400'000;
// A config is a few kilobytes; reading a huge file by mistake should fail fast, not eat memory.
constexpr std::size_t kMaxFileBytes = 1 << 20;
// The schema is four levels deep; anything near this is not a config.
constexpr int kMaxNesting = 32;
constexpr std::size_t kMaxIdLength = 64;
// Linux IFNAMSIZ is 16 including the terminating NUL.
constexpr std::size_t kMaxInterfaceLength = 15;
// A hook is a command line, not a script: put a longer one in a file and run that.
constexpr std::size_t kMaxHookBytes = 4096;
// Mesh timings are seconds in practice; an hour of silence before a peer is declared dead is
// already far past useful, and the members record's MaxAge is 3x refresh.
constexpr long long kMaxMeshMillis = 3'600'000;
// A members record refuses more addresses than this (src/mesh/member.h); so does the config.
constexpr std::size_t kMaxAdvertise = 8;
constexpr std::size_t kMaxDivisionSegments = 8;
constexpr std::size_t kMaxDivisionSegmentLength = 64;
constexpr std::size_t kMaxTypeLength = 64;
// One fragment (64 KiB, src/mesh/frame.h) at least; 256 MiB at most for a message, which the
// receiver buffers whole; 1 GiB of queue per peer.
constexpr long long kMinMessageBytes = 65'536;
constexpr long long kMaxMessageBytes = 268'435'456;
constexpr long long kMinSendBudgetBytes = 65'536;
constexpr long long kMaxSendBudgetBytes = 1'073'741'824;
// The kernel outlives an address's lifetime by up to ~0.25 s (vip/vip_manager.h kKernelExpirySlack).
constexpr long long kKernelExpirySlackMs = 300;

constexpr std::string_view kLogLevels[] = {"trace", "debug", "info", "warn", "error", "critical", "off"};

// go-cluster keys that users bring along; each gets a pointer instead of a bare "unknown key".
std::string migrationHint(std::string_view path) {
  if (path == "election.heartbeatIntervalMs") {
    return "go-cluster's heartbeatIntervalMs is election.renewIntervalMs here";
  }
  if (path == "nats.maxReconnects") return "hacoord reconnects without limit; remove it";
  if (path == "service") return "go-cluster's service section has no equivalent here; remove it";
  return "";
}

// Election defaults that scale with the TTL, so raising only leaseTtlMs gives a consistent set
// (DESIGN §3 gives renew TTL/4 and cooldown TTL; the margin is TTL/10): 500, 2000, 200 by default.
milliseconds derivedRenewInterval(milliseconds ttl) { return std::max(milliseconds(1), ttl / 4); }
milliseconds derivedSafetyMargin(milliseconds ttl) { return std::max(milliseconds(1), ttl / 10); }

// VipManager::chooseKernelLifetime (vip/vip_manager.cc) restated, because the core does not link
// the VIP module; config_test compares the two over a table of timings. The longest whole-second
// lifetime that ends before the leader's own deadline (TTL - margin, less the kernel's slack) and
// outlasts one renew interval, in seconds; nullopt when there is none.
std::optional<long long> kernelLifetimeSeconds(long long ttl_ms, long long renew_ms, long long margin_ms) {
  const long long budget_ms = ttl_ms - margin_ms - kKernelExpirySlackMs;
  if (budget_ms < 1000) return std::nullopt;
  const long long seconds = budget_ms / 1000;
  if (seconds * 1000 <= renew_ms) return std::nullopt;
  return seconds;
}

// The advice for a TTL without kernel lifetime: the smallest leaseTtlMs, in whole 100 ms, that
// leaves one both with renewIntervalMs and safetyMarginMs as they are and with the defaults derived
// from the new TTL (the operator may have set only leaseTtlMs). Raising the TTL never breaks the
// other election rules.
long long leaseTtlWithKernelLifetime(const ElectionConfig& e) {
  for (long long ttl = (e.lease_ttl.count() / 100 + 1) * 100; ttl < kMaxMillis; ttl += 100) {
    const milliseconds as_ttl(ttl);
    if (kernelLifetimeSeconds(ttl, e.renew_interval.count(), e.safety_margin.count()) &&
        kernelLifetimeSeconds(ttl, derivedRenewInterval(as_ttl).count(),
                              derivedSafetyMargin(as_ttl).count())) {
      return ttl;
    }
  }
  return kMaxMillis;
}

// ---- value rules: each gives "" or the reason. The parser appends the number as written, and
// validate the number it holds, so a file and a Config built in code get the same message. ----

std::string millisProblem(long long ms) {
  if (ms <= 0) return "must be a positive number of milliseconds";
  if (ms > kMaxMillis) return "must be at most 86400000 (one day)";
  return "";
}

std::string meshMillisProblem(long long ms) {
  if (ms <= 0) return millisProblem(ms);
  if (ms > kMaxMeshMillis) return "must be at most 3600000 (one hour)";
  return "";
}

bool isIdChar(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

// "" or the reason. Whole segments are what division filters match on (DESIGN §6.3), so an empty
// segment ("dc1//r2") would be a division no filter can name.
std::string divisionProblem(std::string_view division) {
  if (division.empty()) return "";
  std::size_t segments = 0;
  std::size_t start = 0;
  while (true) {
    const std::size_t slash = division.find('/', start);
    const std::string_view segment =
        division.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    ++segments;
    if (segment.empty()) return "must be segments separated by single '/', with no empty segment";
    if (segment.size() > kMaxDivisionSegmentLength) return "has a segment longer than 64 characters";
    if (!std::all_of(segment.begin(), segment.end(), isIdChar))
      return "segments must be characters from A-Z a-z 0-9 _ -";
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  if (segments > kMaxDivisionSegments) {
    return "has " + std::to_string(segments) + " segments; at most 8 are allowed";
  }
  return "";
}

// Checks an assembled Config; every problem goes to `problems`, which keeps the first.
class Validator {
 public:
  explicit Validator(json::Problems& problems) : problems_(problems) {}

  void check(const Config& c) {
    id("clusterId", c.cluster_id);
    id("nodeId", c.node_id);
    stateDir(c.state_dir);
    nats(c.nats);
    election(c.election);
    vip(c.vip, c.election);
    health(c.health);
    hooks(c.hooks);
    http(c);
    mesh(c.mesh);
    if (std::find(std::begin(kLogLevels), std::end(kLogLevels), c.log_level) == std::end(kLogLevels)) {
      fail("log.level",
           "must be one of trace, debug, info, warn, error, critical, off (got " + quote(c.log_level) + ")");
    }
  }

 private:
  void fail(std::string path, std::string reason) { problems_.report(std::move(path), std::move(reason)); }

  void millis(const std::string& path, milliseconds ms) {
    const std::string problem = millisProblem(ms.count());
    if (!problem.empty()) fail(path, problem + ", got " + std::to_string(ms.count()));
  }

  void range(const std::string& path, long long value, long long lo, long long hi) {
    const std::string problem = json::between(lo, hi)(value);
    if (!problem.empty()) fail(path, problem + ", got " + std::to_string(value));
  }

  // A NUL would silently cut a path or command short once it reaches a C API. True if none.
  bool noNul(const std::string& path, std::string_view s) {
    if (s.find('\0') == std::string_view::npos) return true;
    fail(path, "must not contain a NUL character");
    return false;
  }

  void id(const std::string& path, const std::string& value) {
    if (!isValidId(value))
      fail(path,
           "must be 1 to 64 characters from A-Z a-z 0-9 _ -, not starting with - (got " + quote(value) + ")");
  }

  // `shown` stands for `value` in the message (a URL with its secret masked).
  void hostPort(const std::string& path, std::string_view value, bool allow_port_zero,
                const char* default_port, const std::string& shown) {
    HostPortRules rules;
    rules.allow_port_zero = allow_port_zero;
    rules.default_port = default_port;
    Result<HostPort> parsed = parseHostPort(value, rules);
    if (!parsed.isOk()) fail(path, parsed.status().message() + " (got " + quote(shown) + ")");
  }
  void hostPort(const std::string& path, const std::string& value, bool allow_port_zero) {
    hostPort(path, value, allow_port_zero, nullptr, value);
  }

  // True when the URL carries user information (user:password@ or token@) before the host.
  bool natsUrl(const std::string& path, const std::string& url, const NatsConfig& n) {
    std::string_view rest;
    if (url.starts_with("nats://")) {
      rest = std::string_view(url).substr(7);
    } else if (url.starts_with("tls://")) {
      rest = std::string_view(url).substr(6);
    } else {
      fail(path, "must start with nats:// or tls:// (got " + quote(url) + ")");
      return false;
    }
    // nats.c accepts user:password@ or token@ before the host. Never echo it: it is a secret.
    std::string shown = url;
    const std::size_t at = rest.rfind('@');
    const bool has_user_info = at != std::string_view::npos;
    if (has_user_info) {
      rest = rest.substr(at + 1);
      shown = url.substr(0, url.size() - rest.size() - 1 - at) + "***@" + std::string(rest);
    }
    if (rest.find_first_of("/?#") != std::string_view::npos) {
      fail(path, "must be scheme://host:port with nothing after the port (got " + quote(shown) + ")");
      return has_user_info;
    }
    hostPort(path, rest, /*allow_port_zero=*/false, nullptr, shown);
    if (has_user_info && !n.user.empty()) {
      // Two sets of credentials for one connection: which one nats.c sends is not for the
      // operator to guess.
      fail(path,
           "carries credentials before the host (user:password@ or token@), which conflicts with "
           "nats.user; keep the user in nats.user and the password in nats.passwordFile (got " +
               quote(shown) + ")");
    }
    return has_user_info;
  }

  void httpUrl(const std::string& path, const std::string& url) {
    for (unsigned char c : url) {
      if (c <= 0x20 || c == 0x7f) return fail(path, "must not contain spaces or control characters");
    }
    if (url.starts_with("https://"))
      return fail(path, "https is not supported; use http:// (got " + quote(url) + ")");
    if (!url.starts_with("http://")) return fail(path, "must start with http:// (got " + quote(url) + ")");
    const std::string_view rest = std::string_view(url).substr(7);
    hostPort(path, rest.substr(0, rest.find_first_of("/?#")), /*allow_port_zero=*/false, "80", url);
  }

  // Mirrors the kernel's dev_valid_name(): anything else fails only when the VIP is first added.
  void interfaceName(const std::string& path, const std::string& name) {
    if (name.empty() || name.size() > kMaxInterfaceLength) {
      return fail(path, "must be 1 to 15 characters (got " + quote(name) + ")");
    }
    if (name == "." || name == "..") return fail(path, "must not be . or ..");
    for (unsigned char c : name) {
      if (c == '/' || c == ':' || c <= 0x20 || c == 0x7f) {
        return fail(path, "must not contain '/', ':' or whitespace (got " + quote(name) + ")");
      }
    }
  }

  // The address family, or 0 after reporting what can never be a service address.
  int vipAddress(const std::string& path, const std::string& address) {
    if (!noNul(path, address)) return 0;  // inet_pton would stop at it and accept the prefix
    in_addr v4{};
    in6_addr v6{};
    if (inet_pton(AF_INET, address.c_str(), &v4) == 1) {
      const std::uint32_t a = ntohl(v4.s_addr);
      if (a == 0) fail(path, "must not be the unspecified address 0.0.0.0");
      if ((a >> 24) == 127) fail(path, "must not be a loopback address (got " + quote(address) + ")");
      if ((a >> 28) == 0xE) fail(path, "must not be a multicast address (got " + quote(address) + ")");
      if (a == 0xFFFFFFFFu) fail(path, "must not be the broadcast address 255.255.255.255");
      return AF_INET;
    }
    if (inet_pton(AF_INET6, address.c_str(), &v6) == 1) {
      static const in6_addr kLoopback = IN6ADDR_LOOPBACK_INIT;
      static const in6_addr kAny = IN6ADDR_ANY_INIT;
      if (std::memcmp(&v6, &kAny, sizeof v6) == 0) fail(path, "must not be the unspecified address ::");
      if (std::memcmp(&v6, &kLoopback, sizeof v6) == 0) fail(path, "must not be the loopback address ::1");
      if (v6.s6_addr[0] == 0xff) fail(path, "must not be a multicast address (got " + quote(address) + ")");
      return AF_INET6;
    }
    fail(path, "must be an IPv4 or IPv6 address without prefix or zone (got " + quote(address) + ")");
    return 0;
  }

  void stateDir(const std::string& dir) {
    if (dir.empty()) {
      return fail("stateDir",
                  "must not be empty: the highest epoch this node has seen is kept there, and it "
                  "must survive restarts so that epochs never repeat");
    }
    if (!noNul("stateDir", dir)) return;
    // systemd starts the daemon in /, a shell anywhere: a relative path would move with it.
    if (dir.front() != '/') fail("stateDir", "must be an absolute path (got " + quote(dir) + ")");
  }

  void nats(const NatsConfig& n) {
    if (n.servers.empty()) fail("nats.servers", "must list at least one server");
    for (std::size_t i = 0; i < n.servers.size(); ++i) {
      const std::string path = json::indexPath("nats.servers", i);
      if (noNul(path, n.servers[i])) natsUrl(path, n.servers[i], n);
    }
    noNul("nats.credentials", n.credentials);
    noNul("nats.user", n.user);
    noNul("nats.passwordFile", n.password_file);
    if (!n.user.empty() && n.password_file.empty())
      fail("nats.passwordFile", "required when nats.user is set");
    if (n.user.empty() && !n.password_file.empty())
      fail("nats.user", "required when nats.passwordFile is set");
    if (!n.user.empty() && !n.credentials.empty()) {
      fail("nats.user",
           "cannot be combined with nats.credentials: the .creds file is a login of its own; "
           "use one or the other");
    }
    noNul("nats.tls.ca", n.tls.ca);
    noNul("nats.tls.cert", n.tls.cert);
    noNul("nats.tls.key", n.tls.key);
    if (!n.tls.cert.empty() && n.tls.key.empty()) fail("nats.tls.key", "required when nats.tls.cert is set");
    if (n.tls.cert.empty() && !n.tls.key.empty()) fail("nats.tls.cert", "required when nats.tls.key is set");
    millis("nats.reconnectWaitMs", n.reconnect_wait);
    millis("nats.reconnectWaitMaxMs", n.reconnect_wait_max);
    millis("nats.connectTimeoutMs", n.connect_timeout);
    millis("nats.requestTimeoutMs", n.request_timeout);
    if (n.reconnect_wait > n.reconnect_wait_max) {
      fail("nats.reconnectWaitMs", "must not exceed nats.reconnectWaitMaxMs (" +
                                       std::to_string(n.reconnect_wait.count()) + " > " +
                                       std::to_string(n.reconnect_wait_max.count()) + ")");
    }
  }

  void election(const ElectionConfig& e) {
    millis("election.leaseTtlMs", e.lease_ttl);
    millis("election.renewIntervalMs", e.renew_interval);
    millis("election.cooldownMs", e.cooldown);
    millis("election.safetyMarginMs", e.safety_margin);
    millis("election.hookTimeLimitMs", e.hook_time_limit);
    range("election.bucketReplicas", e.bucket_replicas, 1, 5);
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

  void vip(const VipConfig& v, const ElectionConfig& e) {
    range("vip.garpCount", v.garp_count, 0, 100);
    millis("vip.garpIntervalMs", v.garp_interval);
    millis("vip.garpRefreshMs", v.garp_refresh);
    if (!v.enabled()) {
      // Probably a forgotten address: refuse rather than run without the VIP the operator expects.
      if (!v.interface.empty()) fail("vip.interface", "set without vip.address");
      if (v.netmask != -1) fail("vip.netmask", "set without vip.address");
      if (v.allow_without_kernel_lifetime) fail("vip.allowWithoutKernelLifetime", "set without vip.address");
      return;
    }
    const int family = vipAddress("vip.address", v.address);
    const int max_prefix = family == AF_INET ? 32 : 128;
    if (v.netmask != -1 && (v.netmask < 0 || v.netmask > max_prefix)) {
      fail("vip.netmask", "must be between 0 and " + std::to_string(max_prefix) + " for an " +
                              (family == AF_INET ? "IPv4" : "IPv6") + " address, got " +
                              std::to_string(v.netmask));
    }
    if (v.interface.empty()) fail("vip.interface", "required when vip.address is set");
    interfaceName("vip.interface", v.interface);
    // The arithmetic below assumes election timings that passed their own rules.
    if (!problems_.ok() || v.allow_without_kernel_lifetime) return;
    if (!kernelLifetimeSeconds(e.lease_ttl.count(), e.renew_interval.count(), e.safety_margin.count())) {
      // The kernel lifetime is what removes the VIP from a frozen or killed leader (DESIGN §4).
      fail("vip", "leaseTtlMs " + std::to_string(e.lease_ttl.count()) + " - safetyMarginMs " +
                      std::to_string(e.safety_margin.count()) + " - " + std::to_string(kKernelExpirySlackMs) +
                      " ms kernel slack leaves no whole second of kernel lifetime above renewIntervalMs " +
                      std::to_string(e.renew_interval.count()) +
                      "; the kernel could not remove the VIP if this daemon froze. Raise "
                      "election.leaseTtlMs to at least " +
                      std::to_string(leaseTtlWithKernelLifetime(e)) +
                      ", or set vip.allowWithoutKernelLifetime: true (the fast profile: a frozen daemon "
                      "keeps the VIP until it wakes)");
    }
  }

  void health(const HealthConfig& h) {
    millis("health.failAfterMs", h.fail_after);
    for (std::size_t i = 0; i < h.checks.size(); ++i) {
      const HealthCheckConfig& c = h.checks[i];
      const std::string base = json::indexPath("health.checks", i);
      id(base + ".name", c.name);
      for (std::size_t j = 0; j < i; ++j) {
        if (h.checks[j].name == c.name) {
          fail(base + ".name",
               "duplicate of " + json::indexPath("health.checks", j) + ".name (" + quote(c.name) + ")");
        }
      }
      noNul(base + ".command", c.command);
      using Type = HealthCheckConfig::Type;
      if (c.type != Type::kCommand && !c.command.empty())
        fail(base + ".command", "only used by type command");
      if (c.type != Type::kTcp && !c.address.empty()) fail(base + ".address", "only used by type tcp");
      if (c.type != Type::kHttp && !c.url.empty()) fail(base + ".url", "only used by type http");
      switch (c.type) {
        case Type::kCommand:
          if (c.command.empty()) fail(base + ".command", "required for type command");
          break;
        case Type::kTcp:
          if (c.address.empty()) fail(base + ".address", "required for type tcp");
          hostPort(base + ".address", c.address, /*allow_port_zero=*/false);
          break;
        case Type::kHttp:
          if (c.url.empty()) fail(base + ".url", "required for type http");
          httpUrl(base + ".url", c.url);
          break;
      }
      millis(base + ".intervalMs", c.interval);
      millis(base + ".timeoutMs", c.timeout);
      // Overlapping runs of one check would pile up (and race on the rise/fall counters).
      if (c.timeout > c.interval) {
        fail(base + ".timeoutMs", "must not exceed intervalMs (" + std::to_string(c.timeout.count()) + " > " +
                                      std::to_string(c.interval.count()) + ")");
      }
      range(base + ".rise", c.rise, 1, 100);
      range(base + ".fall", c.fall, 1, 100);
    }
  }

  void hook(const std::string& path, const std::string& command) {
    if (!noNul(path, command)) return;
    if (command.size() > kMaxHookBytes) {
      fail(path, "must be at most " + std::to_string(kMaxHookBytes) +
                     " bytes (put a longer command in a script), "
                     "got " +
                     std::to_string(command.size()));
    }
  }

  void hooks(const NotifyHooksConfig& h) {
    hook("hooks.onBecomeLeader", h.on_become_leader);
    hook("hooks.onLoseLeadership", h.on_lose_leadership);
    hook("hooks.onLeaderChange", h.on_leader_change);
  }

  void http(const Config& c) {
    if (!c.http_listen.empty()) hostPort("http.listen", c.http_listen, /*allow_port_zero=*/true);
    range("http.maxConnections", c.http_max_connections, 1, 10000);
    millis("http.requestTimeoutMs", c.http_request_timeout);
  }

  // A wildcard address is where to listen, never where to dial.
  static bool isWildcardHost(const std::string& host) {
    in_addr v4{};
    in6_addr v6{};
    if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return v4.s_addr == 0;
    if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) return IN6_IS_ADDR_UNSPECIFIED(&v6);
    return false;
  }

  void meshMillis(const std::string& path, milliseconds ms) {
    const std::string problem = meshMillisProblem(ms.count());
    if (!problem.empty()) fail(path, problem + ", got " + std::to_string(ms.count()));
  }

  void mesh(const MeshConfig& m) {
    if (!m.enabled()) {
      // Like vip.interface without vip.address: probably a forgotten listen address.
      const std::pair<const char*, bool> set[] = {
          {"mesh.advertise", !m.advertise.empty()}, {"mesh.ca", !m.ca.empty()},
          {"mesh.cert", !m.cert.empty()},           {"mesh.key", !m.key.empty()},
          {"mesh.division", !m.division.empty()},   {"mesh.type", !m.type.empty()},
      };
      for (const auto& [path, is_set] : set) {
        if (is_set) fail(path, "set without mesh.listen");
      }
      return;
    }
    bool wildcard_listen = false;
    if (noNul("mesh.listen", m.listen)) {
      HostPortRules rules;
      rules.allow_port_zero = true;  // a free port (tests); the members record carries the bound one
      Result<HostPort> listen = parseHostPort(m.listen, rules);
      if (!listen.isOk()) {
        fail("mesh.listen", listen.status().message() + " (got " + quote(m.listen) + ")");
      } else {
        wildcard_listen = isWildcardHost(listen->host);
      }
    }
    if (m.advertise.size() > kMaxAdvertise) {
      fail("mesh.advertise", "must list at most 8 addresses, got " + std::to_string(m.advertise.size()));
    }
    for (std::size_t i = 0; i < m.advertise.size(); ++i) {
      const std::string path = json::indexPath("mesh.advertise", i);
      if (!noNul(path, m.advertise[i])) continue;
      Result<HostPort> addr = parseHostPort(m.advertise[i]);
      if (!addr.isOk()) {
        fail(path, addr.status().message() + " (got " + quote(m.advertise[i]) + ")");
      } else if (isWildcardHost(addr->host)) {
        fail(path, "must be an address peers can dial, not a wildcard (got " + quote(m.advertise[i]) + ")");
      }
    }
    if (wildcard_listen && m.advertise.empty()) {
      fail("mesh.advertise",
           "required when mesh.listen is a wildcard address (" + quote(m.listen) + "): peers cannot dial it");
    }
    for (const auto& [path, file] :
         {std::pair{"mesh.ca", &m.ca}, std::pair{"mesh.cert", &m.cert}, std::pair{"mesh.key", &m.key}}) {
      if (file->empty()) {
        fail(path, "required when mesh.listen is set");
      } else {
        noNul(path, *file);
      }
    }
    if (const std::string problem = divisionProblem(m.division); !problem.empty()) {
      fail("mesh.division", problem + " (got " + quote(m.division) + ")");
    }
    const bool type_ok =
        std::all_of(m.type.begin(), m.type.end(), [](unsigned char c) { return isIdChar(c) || c == '.'; });
    if (m.type.size() > kMaxTypeLength || !type_ok) {
      fail("mesh.type", "must be at most 64 characters from A-Z a-z 0-9 _ . - (got " + quote(m.type) + ")");
    }
    meshMillis("mesh.pingIntervalMs", m.ping_interval);
    meshMillis("mesh.suspectAfterMs", m.suspect_after);
    meshMillis("mesh.deadAfterMs", m.dead_after);
    meshMillis("mesh.dialTimeoutMs", m.dial_timeout);
    meshMillis("mesh.refreshMs", m.refresh);
    // A peer must get to ping before it can be suspected, and be suspected before it is dead.
    if (m.ping_interval >= m.suspect_after) {
      fail("mesh.pingIntervalMs", "must be less than mesh.suspectAfterMs (" +
                                      std::to_string(m.ping_interval.count()) +
                                      " >= " + std::to_string(m.suspect_after.count()) + ")");
    }
    if (m.suspect_after >= m.dead_after) {
      fail("mesh.suspectAfterMs", "must be less than mesh.deadAfterMs (" +
                                      std::to_string(m.suspect_after.count()) +
                                      " >= " + std::to_string(m.dead_after.count()) + ")");
    }
    range("mesh.maxMessageBytes", m.max_message_bytes, kMinMessageBytes, kMaxMessageBytes);
    range("mesh.sendBudgetBytes", m.send_budget_bytes, kMinSendBudgetBytes, kMaxSendBudgetBytes);
  }

  json::Problems& problems_;
};

// ---- the schema: which keys each object has, read in document order of the reference ----

std::optional<milliseconds> readMillis(const json::Object& o, std::string_view key) {
  const std::optional<long long> ms = o.get(key).integer(millisProblem);
  if (!ms) return std::nullopt;
  return milliseconds(*ms);
}
void readMillis(const json::Object& o, std::string_view key, milliseconds& out) {
  if (auto ms = readMillis(o, key)) out = *ms;
}

void readMeshMillis(const json::Object& o, std::string_view key, milliseconds& out) {
  if (auto ms = o.get(key).integer(meshMillisProblem)) out = milliseconds(*ms);
}

void parseMesh(const json::Object& o, MeshConfig& m) {
  // Present but without a listen address would be a mesh that is silently off.
  if (o.require("listen").present() && o.read("listen", m.listen) && m.listen.empty()) {
    o.fail("listen", "required");
  }
  if (auto advertise = o.get("advertise").array("strings")) {
    for (const json::Value& addr : *advertise) {
      if (auto s = addr.string()) m.advertise.push_back(std::move(*s));
    }
  }
  o.read("ca", m.ca);
  o.read("cert", m.cert);
  o.read("key", m.key);
  o.read("division", m.division);
  o.read("type", m.type);
  readMeshMillis(o, "pingIntervalMs", m.ping_interval);
  readMeshMillis(o, "suspectAfterMs", m.suspect_after);
  readMeshMillis(o, "deadAfterMs", m.dead_after);
  readMeshMillis(o, "dialTimeoutMs", m.dial_timeout);
  readMeshMillis(o, "refreshMs", m.refresh);
  o.read("maxMessageBytes", m.max_message_bytes, kMinMessageBytes, kMaxMessageBytes);
  o.read("sendBudgetBytes", m.send_budget_bytes, kMinSendBudgetBytes, kMaxSendBudgetBytes);
}

void parseNats(const json::Object& o, NatsConfig& n) {
  if (auto servers = o.require("servers").array("strings")) {
    for (const json::Value& server : *servers) {
      if (auto url = server.string()) n.servers.push_back(std::move(*url));
    }
  }
  o.read("credentials", n.credentials);
  o.read("user", n.user);
  o.read("passwordFile", n.password_file);
  if (auto tls = o.get("tls").object({"ca", "cert", "key"})) {
    tls->read("ca", n.tls.ca);
    tls->read("cert", n.tls.cert);
    tls->read("key", n.tls.key);
  }
  readMillis(o, "reconnectWaitMs", n.reconnect_wait);
  readMillis(o, "reconnectWaitMaxMs", n.reconnect_wait_max);
  readMillis(o, "connectTimeoutMs", n.connect_timeout);
  readMillis(o, "requestTimeoutMs", n.request_timeout);
}

void parseElection(const json::Value& value, ElectionConfig& e) {
  std::optional<milliseconds> renew;
  std::optional<milliseconds> cooldown;
  std::optional<milliseconds> margin;
  if (auto o = value.object({"leaseTtlMs", "renewIntervalMs", "cooldownMs", "safetyMarginMs",
                             "hookTimeLimitMs", "bucketReplicas", "candidate"})) {
    readMillis(*o, "leaseTtlMs", e.lease_ttl);
    renew = readMillis(*o, "renewIntervalMs");
    cooldown = readMillis(*o, "cooldownMs");
    margin = readMillis(*o, "safetyMarginMs");
    readMillis(*o, "hookTimeLimitMs", e.hook_time_limit);
    o->read("bucketReplicas", e.bucket_replicas, 1, 5);
    o->read("candidate", e.candidate);
  }
  e.renew_interval = renew.value_or(derivedRenewInterval(e.lease_ttl));
  e.cooldown = cooldown.value_or(e.lease_ttl);
  e.safety_margin = margin.value_or(derivedSafetyMargin(e.lease_ttl));
}

void parseVip(const json::Object& o, VipConfig& v) {
  o.read("address", v.address);
  // Range per family is checked by the Validator, once the address is known.
  o.read("netmask", v.netmask, 0, 128);
  o.read("interface", v.interface);
  o.read("garpCount", v.garp_count, 0, 100);
  readMillis(o, "garpIntervalMs", v.garp_interval);
  readMillis(o, "garpRefreshMs", v.garp_refresh);
  o.read("duplicateCheck", v.duplicate_check);
  o.read("allowWithoutKernelLifetime", v.allow_without_kernel_lifetime);
}

HealthCheckConfig parseCheck(const json::Object& o) {
  HealthCheckConfig c;
  o.require("name", c.name);
  if (!o.has("type")) o.fail("type", "required (command, tcp or http)");
  if (std::string type; o.read("type", type)) {
    if (type == "command") {
      c.type = HealthCheckConfig::Type::kCommand;
    } else if (type == "tcp") {
      c.type = HealthCheckConfig::Type::kTcp;
    } else if (type == "http") {
      c.type = HealthCheckConfig::Type::kHttp;
    } else {
      o.fail("type", "must be one of command, tcp, http (got " + quote(type) + ")");
    }
  }
  o.read("command", c.command);
  o.read("address", c.address);
  o.read("url", c.url);
  readMillis(o, "intervalMs", c.interval);
  readMillis(o, "timeoutMs", c.timeout);
  o.read("rise", c.rise, 1, 100);
  o.read("fall", c.fall, 1, 100);
  return c;
}

void parseHealth(const json::Object& o, HealthConfig& h) {
  if (auto checks = o.get("checks").array("objects")) {
    for (const json::Value& check : *checks) {
      auto c = check.object(
          {"name", "type", "command", "address", "url", "intervalMs", "timeoutMs", "rise", "fall"});
      if (c) h.checks.push_back(parseCheck(*c));
    }
  }
  readMillis(o, "failAfterMs", h.fail_after);
}

void parseHttp(const json::Object& o, Config& c) {
  o.read("listen", c.http_listen);
  o.read("maxConnections", c.http_max_connections, 1, 10000);
  readMillis(o, "requestTimeoutMs", c.http_request_timeout);
  // Like vip.interface without vip.address: probably a forgotten listen address.
  if (c.http_listen.empty()) {
    for (std::string_view key : {"maxConnections", "requestTimeoutMs"}) {
      if (o.has(key)) o.fail(key, "set without http.listen");
    }
  }
}

Config parseRoot(const json::Value& root, json::Problems& problems) {
  Config c;
  auto o = root.object({"clusterId", "nodeId", "stateDir", "nats", "election", "vip", "health", "hooks",
                        "http", "log", "mesh"});
  if (!o) return c;
  o->require("clusterId", c.cluster_id);
  o->require("nodeId", c.node_id);
  o->read("stateDir", c.state_dir);
  if (!o->has("nats")) problems.report("nats.servers", "required");
  if (auto nats =
          o->get("nats").object({"servers", "credentials", "user", "passwordFile", "tls", "reconnectWaitMs",
                                 "reconnectWaitMaxMs", "connectTimeoutMs", "requestTimeoutMs"})) {
    parseNats(*nats, c.nats);
  }
  parseElection(o->get("election"), c.election);
  if (auto vip = o->get("vip").object({"address", "netmask", "interface", "garpCount", "garpIntervalMs",
                                       "garpRefreshMs", "duplicateCheck", "allowWithoutKernelLifetime"})) {
    parseVip(*vip, c.vip);
  }
  if (auto health = o->get("health").object({"checks", "failAfterMs"})) parseHealth(*health, c.health);
  if (auto hooks = o->get("hooks").object({"onBecomeLeader", "onLoseLeadership", "onLeaderChange"})) {
    hooks->read("onBecomeLeader", c.hooks.on_become_leader);
    hooks->read("onLoseLeadership", c.hooks.on_lose_leadership);
    hooks->read("onLeaderChange", c.hooks.on_leader_change);
  }
  if (auto http = o->get("http").object({"listen", "maxConnections", "requestTimeoutMs"}))
    parseHttp(*http, c);
  if (auto log = o->get("log").object({"level"})) log->read("level", c.log_level);
  if (auto mesh = o->get("mesh").object({"listen", "advertise", "ca", "cert", "key", "division", "type",
                                         "pingIntervalMs", "suspectAfterMs", "deadAfterMs", "dialTimeoutMs",
                                         "refreshMs", "maxMessageBytes", "sendBudgetBytes"})) {
    parseMesh(*mesh, c.mesh);
  }
  // The family is known only now; an absent netmask means a single host route.
  if (c.vip.enabled() && c.vip.netmask == -1) {
    in_addr unused{};
    c.vip.netmask = inet_pton(AF_INET, c.vip.address.c_str(), &unused) == 1 ? 32 : 128;
  }
  return c;
}

json::Rules configRules() {
  json::Rules rules;
  rules.line_comments = true;  // `hacoord init` writes a commented sample
  rules.max_bytes = kMaxFileBytes;
  rules.max_depth = kMaxNesting;
  rules.unknown_key_hint = migrationHint;
  return rules;
}

}  // namespace

bool isValidId(std::string_view id) {
  if (id.empty() || id.size() > kMaxIdLength || id.front() == '-') return false;
  return std::all_of(id.begin(), id.end(), isIdChar);
}

Status validateConfig(const Config& config) {
  json::Problems problems;
  Validator(problems).check(config);
  return problems.toStatus("config");
}

Result<Config> parseConfig(std::string_view json_text, std::string_view source) {
  Result<json::Document> doc = json::Document::parse(json_text, configRules());
  if (!doc.isOk()) return invalidArgument(json::printable(source) + ": " + doc.status().message());
  json::Problems problems;
  Config config = parseRoot(doc->root(problems), problems);
  if (problems.ok()) Validator(problems).check(config);
  if (!problems.ok()) return problems.toStatus(source);
  return config;
}

Result<Config> loadConfigFile(const std::string& path) {
  // 'e': O_CLOEXEC, so health-check commands forked later never inherit the descriptor.
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(path.c_str(), "rbe"), &std::fclose);
  if (!file) return invalidArgument(json::printable(path) + ": cannot read: " + std::strerror(errno));
  std::string text;
  char buffer[8192];
  while (true) {
    const std::size_t n = std::fread(buffer, 1, sizeof buffer, file.get());
    text.append(buffer, n);
    if (text.size() > kMaxFileBytes) {
      return invalidArgument(json::printable(path) + ": cannot read: larger than " +
                             std::to_string(kMaxFileBytes) + " bytes, not a config file");
    }
    if (n < sizeof buffer) {
      if (std::ferror(file.get())) {
        return invalidArgument(json::printable(path) + ": cannot read: " + std::strerror(errno));
      }
      break;
    }
  }
  const std::string source = std::filesystem::path(path).filename().string();
  return parseConfig(text, source.empty() ? path : source);
}

}  // namespace hacoord
