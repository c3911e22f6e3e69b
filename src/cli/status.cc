// `hacoord status`: reads the lease record once and prints it; never joins the election.
#include <chrono>
#include <cstdio>

#include <json/json.h>

#include "cli/cli.h"
#include "core/logging.h"
#include "nats/nats_connection.h"
#include "nats/nats_lease_store.h"

namespace hacoord::cli {

int runStatus(const Args& args) {
  Config config;
  if (!loadConfigOption(args, config)) return kExitConfig;
  setLogLevel("warn");  // stdout is the answer; connection chatter would only be noise
  auto connection = NatsConnection::connect(config.nats, "hacoord-status", {});
  if (!connection.isOk()) {
    printError("status: " + connection.status().toString());
    return kExitFailure;
  }
  auto lease = readLeaseOnce(**connection, config.bucketName());
  if (!lease.isOk()) {
    printError("status: " + lease.status().toString());
    return kExitFailure;
  }
  const LeaseEntry& e = lease->entry;
  const LeaseRecord& r = e.record;
  const auto now_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  // Age compares our wall clock with the NATS server's: display only, never used for decisions.
  const long long age_ms = e.exists() ? (now_ns - lease->created_unix_ns) / 1000000 : -1;
  const bool expired = e.exists() && !r.vacant() && age_ms > r.lease.count();
  const std::string leader = (!e.exists() || r.vacant() || expired) ? "" : r.holder;

  if (args.has("json")) {
    Json::Value v(Json::objectValue);
    v["cluster"] = config.cluster_id;
    v["leader"] = leader;
    v["holder"] = r.holder;
    v["epoch"] = Json::UInt64(r.epoch.value());
    v["revision"] = Json::UInt64(e.revision);
    v["ageMs"] = Json::Int64(age_ms);
    v["leaseMs"] = Json::Int64(r.lease.count());
    v["vacant"] = !e.exists() || r.vacant();
    v["expired"] = expired;
    v["successor"] = r.successor;
    Json::StreamWriterBuilder w;
    w["indentation"] = "";
    std::printf("%s\n", Json::writeString(w, v).c_str());
    return kExitOk;
  }
  if (!e.exists()) {
    std::printf("cluster   %s\nleader    (none: no node has ever held the lease)\n",
                config.cluster_id.c_str());
    return kExitOk;
  }
  std::string leader_text = leader;
  if (r.vacant()) leader_text = "(vacant: handed over)";
  if (expired) leader_text = "(none: lease of " + r.holder + " expired)";
  std::printf("cluster   %s\n", config.cluster_id.c_str());
  std::printf("leader    %s\n", leader_text.c_str());
  std::printf("epoch     %llu\n", static_cast<unsigned long long>(r.epoch.value()));
  std::printf("revision  %llu\n", static_cast<unsigned long long>(e.revision));
  std::printf("age       %lld ms (lease %lld ms)\n", age_ms, static_cast<long long>(r.lease.count()));
  if (!r.successor.empty()) std::printf("successor %s\n", r.successor.c_str());
  return kExitOk;
}

}  // namespace hacoord::cli
