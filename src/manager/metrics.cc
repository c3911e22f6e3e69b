// Prometheus text format 0.0.4: HELP/TYPE lines, one sample per line, cumulative histogram buckets.
#include "manager/metrics.h"

#include <iterator>
#include <sstream>

namespace hacoord {
namespace {

class Writer {
 public:
  explicit Writer(std::string node) : labels_("node=\"" + std::move(node) + "\"") {}

  template <typename T>
  void metric(const char* name, const char* type, const char* help, T value, const std::string& extra = "") {
    header(name, type, help);
    sample(name, value, extra);
  }
  void header(const char* name, const char* type, const char* help) {
    out_ << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
  }
  template <typename T>
  void sample(const std::string& name, T value, const std::string& extra = "") {
    out_ << name << '{' << labels_ << (extra.empty() ? "" : ",") << extra << "} " << value << '\n';
  }
  std::string str() const { return out_.str(); }

 private:
  std::string labels_;
  std::ostringstream out_;
};

std::string escapeLabel(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

}  // namespace

std::string renderMetrics(const MetricsInput& in) {
  const NodeStatus& s = in.status;
  Writer w(s.node_id);
  w.metric("hacoord_leader", "gauge", "1 while this node leads inside a valid lease.",
           s.role == "leader" ? 1 : 0);
  w.metric("hacoord_epoch", "gauge", "Epoch (fencing token) of the latest lease record seen.", s.epoch);
  w.metric("hacoord_candidate", "gauge", "1 while this node campaigns for the lease.", s.candidate ? 1 : 0);
  w.metric("hacoord_hooks_overrunning", "gauge",
           "1 while a hook is past its time limit (the node is out of candidacy meanwhile).",
           in.stats.hooks_overrunning ? 1 : 0);
  w.metric("hacoord_hook_overruns_total", "counter", "Hook calls that passed their time limit.",
           in.stats.hook_overruns);
  if (in.http) {
    w.metric("hacoord_http_connections_accepted_total", "counter", "HTTP connections accepted.",
             in.http->accepted);
    w.metric("hacoord_http_connections_refused_total", "counter",
             "HTTP connections refused at http.maxConnections.", in.http->refused_at_cap);
    w.metric("hacoord_http_connections_timed_out_total", "counter",
             "HTTP connections closed for not delivering a request within http.requestTimeoutMs.",
             in.http->closed_by_timeout);
    w.metric("hacoord_http_connections_open", "gauge", "HTTP connections open now.", in.http->open);
  }
  w.metric("hacoord_nats_connected", "gauge", "1 while the control connection to NATS is up.",
           s.nats_connected ? 1 : 0);
  w.metric("hacoord_uptime_seconds", "gauge", "Seconds since the daemon started.",
           static_cast<double>(s.uptime_ms) / 1000.0);
  w.header("hacoord_leadership_transitions_total", "counter",
           "Times this node became leader (to=leader) or stopped leading (to=follower).");
  w.sample("hacoord_leadership_transitions_total", in.stats.became_leader, "to=\"leader\"");
  w.sample("hacoord_leadership_transitions_total", in.stats.lost_leadership, "to=\"follower\"");

  w.header("hacoord_lease_renew_seconds", "histogram",
           "Time from sending a lease renewal to its confirmation.");
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < std::size(NodeStats::kRenewLatencyBoundsMs); ++i) {
    cumulative += in.stats.renew_latency_buckets[i];
    std::ostringstream le;
    le << "le=\"" << NodeStats::kRenewLatencyBoundsMs[i] / 1000.0 << '"';
    w.sample("hacoord_lease_renew_seconds_bucket", cumulative, le.str());
  }
  w.sample("hacoord_lease_renew_seconds_bucket", in.stats.renewals, "le=\"+Inf\"");
  w.sample("hacoord_lease_renew_seconds_sum", in.stats.renew_latency_sum_ms / 1000.0);
  w.sample("hacoord_lease_renew_seconds_count", in.stats.renewals);

  w.metric("hacoord_healthy", "gauge", "1 while every local health check passes.", s.healthy ? 1 : 0);
  w.header("hacoord_check_healthy", "gauge", "1 while this local health check passes.");
  for (const auto& c : s.checks) {
    w.sample("hacoord_check_healthy", c.healthy ? 1 : 0, "check=\"" + escapeLabel(c.name) + "\"");
  }
  if (in.vip) {
    const VipMetrics& v = *in.vip;
    const std::string addr = "address=\"" + escapeLabel(s.vip.address) + "\"";
    w.metric("hacoord_vip_held", "gauge", "1 while the VIP is on this node's interface.", s.vip.held ? 1 : 0,
             addr);
    w.metric("hacoord_vip_epoch", "gauge", "Epoch of the latest VIP act.", v.epoch, addr);
    w.metric("hacoord_vip_acquires_total", "counter", "Times the VIP was put on.", v.acquires, addr);
    w.metric("hacoord_vip_releases_total", "counter", "Times the VIP was taken off.", v.releases, addr);
    w.metric("hacoord_vip_lifetime_extends_total", "counter", "Kernel lifetime extensions of the VIP.",
             v.extends, addr);
    w.metric("hacoord_garps_sent_total", "counter", "Gratuitous ARP frames sent.", v.garps_sent, addr);
    w.metric("hacoord_unsolicited_na_sent_total", "counter",
             "Unsolicited IPv6 neighbour advertisements sent.", v.nas_sent, addr);
    w.metric("hacoord_vip_duplicate_conflicts_total", "counter",
             "ARP probes another MAC answered for the VIP.", v.duplicate_conflicts, addr);
    w.metric("hacoord_vip_errors_total", "counter", "Failed VIP operations.", v.errors, addr);
  }
  if (in.mesh) {
    const mesh::MeshCounters& c = in.mesh->counters;
    w.header("hacoord_mesh_peers", "gauge", "Mesh peers in each state.");
    for (const char* state : {"connecting", "alive", "suspect", "dead"}) {
      std::uint64_t n = 0;
      for (const PeerStatus& p : s.peers) n += p.state == state ? 1 : 0;
      w.sample("hacoord_mesh_peers", n, std::string("state=\"") + state + "\"");
    }
    w.header("hacoord_mesh_peer_rtt_seconds", "gauge", "Round-trip time to a mesh peer (EWMA of its PINGs).");
    for (const PeerStatus& p : s.peers) {
      w.sample("hacoord_mesh_peer_rtt_seconds", p.rtt_ms / 1000.0, "peer=\"" + escapeLabel(p.id) + "\"");
    }
    w.metric("hacoord_mesh_calls_sent_total", "counter", "Mesh calls sent to peers.", c.calls_sent);
    w.metric("hacoord_mesh_calls_failed_total", "counter", "Mesh calls that ended in an error.",
             c.calls_failed);
    w.metric("hacoord_mesh_calls_timed_out_total", "counter", "Mesh calls that passed their deadline.",
             c.calls_timed_out);
    w.metric("hacoord_mesh_requests_served_total", "counter", "Mesh requests this node's handlers answered.",
             c.requests_served);
    w.header("hacoord_mesh_tls_refused_total", "counter", "Mesh TLS connections refused, by reason.");
    for (const auto& [reason, n] : in.mesh->refusals) {
      w.sample("hacoord_mesh_tls_refused_total", n, "reason=\"" + escapeLabel(reason) + "\"");
    }
    w.metric("hacoord_mesh_links_refused_identity_total", "counter",
             "Mesh links refused: no members record or a certificate it does not list.",
             c.links_refused_identity);
  }
  return w.str();
}

}  // namespace hacoord
