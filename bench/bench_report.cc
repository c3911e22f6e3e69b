#include "bench_report.h"

#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include <json/json.h>
#include <nats/nats.h>

#include "core/json_reader.h"
#include "support/nats_server_fixture.h"

namespace hacoord::bench {

double percentile(const std::vector<double>& sorted, double p) {
  const auto n = sorted.size();
  auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(n)));
  rank = std::clamp<std::size_t>(rank, 1, n);
  return sorted[rank - 1];
}

Metric& Report::add(std::string name) {
  metrics_.push_back({std::move(name), {}});
  return metrics_.back();
}

const Metric* Report::find(const std::string& name) const {
  for (const auto& m : metrics_) {
    if (m.name == name) return &m;
  }
  return nullptr;
}

void Report::printTable() const {
  std::printf("| metric | n | p50 ms | p90 ms | p99 ms | max ms |\n");
  std::printf("|---|--:|--:|--:|--:|--:|\n");
  for (const auto& m : metrics_) {
    if (m.ms.empty()) {
      std::printf("| %s | 0 | - | - | - | - |\n", m.name.c_str());
      continue;
    }
    std::vector<double> s = m.ms;
    std::sort(s.begin(), s.end());
    const int d = decimals_;
    std::printf("| %s | %zu | %.*f | %.*f | %.*f | %.*f |\n", m.name.c_str(), s.size(), d, percentile(s, 50),
                d, percentile(s, 90), d, percentile(s, 99), d, s.back());
  }
}

std::optional<double> Report::pct(const std::string& name, double p) const {
  const Metric* m = find(name);
  if (m == nullptr || m->ms.empty()) return std::nullopt;
  std::vector<double> s = m->ms;
  std::sort(s.begin(), s.end());
  return percentile(s, p);
}

void Failures::add(const std::string& what) {
  std::fprintf(stderr, "%s: FAILED: %s\n", program_.c_str(), what.c_str());
  list_.push_back(what);
}

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string cpuModel() {
  std::istringstream in(readFile("/proc/cpuinfo"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) != 0) continue;
    auto colon = line.find(':');
    if (colon == std::string::npos) break;
    auto start = line.find_first_not_of(" \t", colon + 1);
    return start == std::string::npos ? "unknown CPU" : line.substr(start);
  }
  return "unknown CPU";
}

std::string kernelText() {
  utsname u{};
  if (::uname(&u) != 0) return "unknown kernel";
  return std::string(u.sysname) + " " + u.release + " " + u.machine;
}

std::string machineLine() {
  return "- machine: " + std::to_string(::sysconf(_SC_NPROCESSORS_ONLN)) + " CPUs, " + cpuModel() + ", " +
         kernelText();
}

std::string natsServerVersion(const test::NatsServer& server) {
  auto reply = test::httpGet(server.monitorPort(), "/varz");
  if (!reply || reply->status != 200) return "unknown";
  Json::Value v;
  if (!json::parseObject(reply->body, v) || !v["version"].isString()) return "unknown";
  return "v" + v["version"].asString();
}

void closeNats() { nats_CloseAndWait(1000); }

}  // namespace hacoord::bench
