// Config: the daemon's and the library's settings, loaded from one strict JSON file (DESIGN §2).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hacoord/clock.h"
#include "hacoord/status.h"

namespace hacoord {

struct NatsTlsConfig {
  std::string ca;    // CA bundle that signs the server's certificate
  std::string cert;  // client certificate chain (mutual TLS); needs key
  std::string key;
  bool enabled() const { return !ca.empty() || !cert.empty(); }
};

struct NatsConfig {
  std::vector<std::string> servers;  // required, e.g. "nats://127.0.0.1:4222"; tls:// selects TLS
  std::string credentials;           // optional .creds file (JWT + seed)
  std::string user;                  // optional user name (nats-server `authorization.users`)
  std::string password_file;         // with user: a file holding the password (first line)
  NatsTlsConfig tls;
  // First reconnect delay; doubles up to reconnect_wait_max. The cap stays at the renew interval
  // so that a NATS server back within the TTL sees the leader renew before its deadline.
  milliseconds reconnect_wait{100};
  milliseconds reconnect_wait_max{500};
  milliseconds connect_timeout{2000};
  milliseconds request_timeout{1000};  // JetStream / KV calls; a timeout means "outcome unknown"
};

struct ElectionConfig {
  milliseconds lease_ttl{2000};
  milliseconds renew_interval{500};  // < lease_ttl / 2
  milliseconds cooldown{2000};       // default = lease_ttl
  milliseconds safety_margin{200};   // default = lease_ttl / 10; leader stops this early
  milliseconds hook_time_limit{5000};
  int bucket_replicas = 1;  // 3 for a 3-node NATS cluster
  bool candidate = true;    // campaign from start (false: observe only until `join`)
};

// Used by the VIP module (next issue); validated now so nothing starts half-configured.
struct VipConfig {
  std::string address;    // "" = no VIP
  int netmask = -1;       // prefix length; default 32 (IPv4) / 128 (IPv6)
  std::string interface;  // required with an address
  int garp_count = 5;
  milliseconds garp_interval{200};
  milliseconds garp_refresh{60000};
  bool duplicate_check = false;
  // The fast profile (e.g. TTL 300 ms) leaves no whole second of kernel lifetime: the VIP is then
  // added without one, and a frozen daemon keeps it until it wakes. A config error unless true.
  bool allow_without_kernel_lifetime = false;
  bool enabled() const { return !address.empty(); }
};

struct HealthCheckConfig {
  enum class Type { kCommand, kTcp, kHttp };
  std::string name;
  Type type = Type::kCommand;
  std::string command;  // kCommand: run through /bin/sh -c; exit code 0 = pass
  std::string address;  // kTcp: "host:port"
  std::string url;      // kHttp: "http://host:port/path"; 2xx/3xx = pass
  milliseconds interval{1000};
  milliseconds timeout{1000};
  int rise = 2;  // consecutive passes to become healthy
  int fall = 3;  // consecutive failures to become unhealthy
};

struct HealthConfig {
  std::vector<HealthCheckConfig> checks;
  milliseconds fail_after{3000};  // a leader unhealthy this long hands over
};

// Shell commands the daemon runs on leadership changes (keepalived's notify_master/notify_backup),
// through /bin/sh -c, with HACOORD_CLUSTER, HACOORD_NODE, HACOORD_EPOCH, HACOORD_LEADER and
// HACOORD_REASON in the environment, each bounded by election.hookTimeLimitMs. "" = none.
struct NotifyHooksConfig {
  std::string on_become_leader;    // non-zero exit: the node steps down
  std::string on_lose_leadership;  // non-zero exit: the lease is not released (left to expire)
  std::string on_leader_change;
};

// The mutual-TLS peer mesh (DESIGN §6.1-6.3). Absent (listen "") = no mesh.
struct MeshConfig {
  std::string listen;                  // "host:port"; port 0 binds a free port (tests)
  std::vector<std::string> advertise;  // "host:port" peers dial, at most 8; empty = listen
  std::string ca;                      // cluster CA certificate (PEM)
  std::string cert;                    // this node's certificate (URI SAN hacoord://<cluster>/<node>)
  std::string key;                     // its private key
  std::string division;                // "dc1/r2": up to 8 segments of [A-Za-z0-9_-]; "" = none
  std::string type;                    // free-form node type, [A-Za-z0-9_.-], at most 64
  milliseconds ping_interval{1000};    // PING after this long without traffic
  milliseconds suspect_after{3000};    // silence before Suspect; > ping_interval
  milliseconds dead_after{5000};       // silence before Dead; > suspect_after
  milliseconds dial_timeout{3000};     // TCP connect + TLS handshake
  milliseconds refresh{5000};          // members record re-put period; the bucket's MaxAge is 3x
  std::int64_t max_message_bytes = 16 * 1024 * 1024;
  std::int64_t send_budget_bytes = 8 * 1024 * 1024;  // queued per peer before `call` waits

  bool enabled() const { return !listen.empty(); }
  // What goes into this node's members record: advertise, or the listen address when empty.
  // A port 0 there stands for the port actually bound.
  std::vector<std::string> advertiseAddrs() const {
    return advertise.empty() ? std::vector<std::string>{listen} : advertise;
  }
  milliseconds membersMaxAge() const { return 3 * refresh; }
};

struct Config {
  std::string cluster_id;  // isValidId
  std::string node_id;     // isValidId
  NatsConfig nats;
  ElectionConfig election;
  VipConfig vip;
  HealthConfig health;
  NotifyHooksConfig hooks;
  MeshConfig mesh;
  // Where the node keeps the highest epoch it has seen (fsynced before it acts on an epoch), so
  // that epochs never repeat even if the KV bucket is lost while every node restarts.
  std::string state_dir = "/var/lib/hacoord";
  std::string http_listen;        // "" = no HTTP listener; else "host:port" for /healthz /readyz /metrics
  int http_max_connections = 64;  // open HTTP connections at most; more are refused
  milliseconds http_request_timeout{5000};  // a connection must deliver its request in this time
  std::string log_level = "info";           // trace debug info warn error critical off

  std::string bucketName() const { return "HACOORD_" + cluster_id; }
  // Discovery (DESIGN §6.1): its own bucket, because MaxAge applies to every key of a bucket.
  std::string membersBucketName() const { return "HACOORD_" + cluster_id + "_MEMBERS"; }
};

// Parses and validates. Errors are InvalidArgument with "<source>: <json.path>: <reason>".
Result<Config> parseConfig(std::string_view json_text, std::string_view source = "config");
Result<Config> loadConfigFile(const std::string& path);
// Validates the values of an assembled Config (used by parseConfig and by embedders).
Status validateConfig(const Config& config);
// Cluster ids, node ids and health check names: 1-64 characters of [A-Za-z0-9_-], not starting
// with '-' (it would read as an option on a command line). They become NATS subject tokens, KV
// bucket names and certificate URI SANs, so '.', '*', '>' and '/' are out. mesh::checkId uses it.
bool isValidId(std::string_view id);

}  // namespace hacoord
