// `hacoord ping`: the mesh round trip from the config's node to a peer, measured by that node's
// daemon (the CLI never joins the mesh: it would pose as the daemon's node).
#include <algorithm>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <numeric>
#include <string>
#include <vector>

#include <json/json.h>

#include "cli/cli.h"
#include "core/logging.h"
#include "hacoord/manager.h"

namespace hacoord::cli {

int runPing(const Args& args) {
  Config config;
  if (!loadConfigOption(args, config)) return kExitConfig;
  setLogLevel("warn");
  if (args.positional.size() != 1) {
    printError("ping: exactly one NODE to ping is needed (see 'hacoord help')");
    return kExitUsage;
  }
  const std::string& peer = args.positional[0];
  int count = 3;
  if (auto it = args.options.find("count"); it != args.options.end()) {
    char* end = nullptr;
    const long n = std::strtol(it->second.c_str(), &end, 10);
    if (it->second.empty() || *end != '\0' || n < 1 || n > Manager::kMaxMeshPings) {
      printError("ping: --count " + it->second + " is not a number in 1.." +
                 std::to_string(Manager::kMaxMeshPings));
      return kExitUsage;
    }
    count = static_cast<int>(n);
  }
  auto result = Manager::meshPing(config, peer, count);
  if (!result.isOk()) {
    const Status& st = result.status();
    // The daemon's own refusals (no mesh, unknown or dead peer) are complete sentences already.
    printError("ping: " + (st.code() == StatusCode::kFailedPrecondition ? st.message() : st.toString()));
    return kExitFailure;
  }
  const MeshPingResult& r = *result;
  if (args.has("json")) {
    Json::Value v(Json::objectValue);
    v["node"] = r.node;
    v["peer"] = r.peer;
    v["rttUs"] = Json::Value(Json::arrayValue);
    for (std::int64_t us : r.rtt_us) v["rttUs"].append(Json::Int64(us));
    v["errors"] = Json::Value(Json::arrayValue);
    for (const std::string& e : r.errors) v["errors"].append(e);
    Json::StreamWriterBuilder w;
    w["indentation"] = "";
    std::printf("%s\n", Json::writeString(w, v).c_str());
  } else {
    for (std::int64_t us : r.rtt_us) {
      std::printf("%s -> %s: %.2f ms\n", r.node.c_str(), r.peer.c_str(), static_cast<double>(us) / 1000.0);
    }
    for (const std::string& e : r.errors)
      std::printf("%s -> %s: failed: %s\n", r.node.c_str(), r.peer.c_str(), e.c_str());
  }
  if (r.rtt_us.empty()) {
    printError("ping: every ping from " + r.node + " to " + r.peer + " failed (" +
               std::to_string(r.errors.size()) +
               "), first: " + (r.errors.empty() ? std::string("no reply") : r.errors.front()));
    return kExitFailure;
  }
  if (!args.has("json")) {
    std::vector<std::int64_t> sorted = r.rtt_us;
    std::sort(sorted.begin(), sorted.end());
    const double avg =
        static_cast<double>(std::accumulate(sorted.begin(), sorted.end(), std::int64_t{0})) / sorted.size();
    const std::int64_t p50 = sorted[(sorted.size() - 1) / 2];
    std::printf("%zu of %d answered: min %.2f / avg %.2f / p50 %.2f / max %.2f ms\n", sorted.size(), count,
                sorted.front() / 1000.0, avg / 1000.0, p50 / 1000.0, sorted.back() / 1000.0);
  }
  return kExitOk;
}

}  // namespace hacoord::cli
