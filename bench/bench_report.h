// What every benchmark prints: nearest-rank percentiles in a markdown table, notes under it,
// outright failures, and the machine it ran on. Benchmarks measure and print; they never judge.
#pragma once

#include <cstdio>
#include <deque>
#include <exception>
#include <optional>
#include <string>
#include <vector>

namespace hacoord::test {
class NatsServer;
}

namespace hacoord::bench {

// Nearest-rank percentile: the smallest sample with at least p% of the samples at or below it.
// With 20 samples p99 is the max; the table shows n so nobody over-reads the tail.
double percentile(const std::vector<double>& sorted, double p);

struct Metric {
  std::string name;
  std::vector<double> ms;
};

class Report {
 public:
  // `decimals`: digits after the point in the table (milliseconds).
  explicit Report(int decimals = 2) : decimals_(decimals) {}
  // A deque: sections keep references to their metrics while later sections add more.
  Metric& add(std::string name);
  const Metric* find(const std::string& name) const;
  // | metric | n | p50 ms | p90 ms | p99 ms | max ms |
  void printTable() const;
  // A line printed under the table: what a reader needs to read the numbers right.
  void note(std::string text) { notes_.push_back(std::move(text)); }
  const std::vector<std::string>& notes() const { return notes_; }
  std::optional<double> pct(const std::string& name, double p) const;

 private:
  int decimals_;
  std::deque<Metric> metrics_;
  std::vector<std::string> notes_;
};

// Outright failures: printed as they happen (the run goes on where it can) and counted for the exit.
class Failures {
 public:
  explicit Failures(std::string program) : program_(std::move(program)) {}
  void add(const std::string& what);
  bool any() const { return !list_.empty(); }
  const std::vector<std::string>& list() const { return list_; }

 private:
  std::string program_;
  std::vector<std::string> list_;
};

// Machine description for the header line.
std::string readFile(const std::string& path);
std::string cpuModel();
std::string kernelText();
// "- machine: N CPUs, <model>, <kernel>"
std::string machineLine();
// The version the server reports on its monitor port (so it is the server that ran, not whatever
// `nats-server` is first on PATH now).
std::string natsServerVersion(const test::NatsServer& server);

// nats_CloseAndWait: a benchmark's last call (nats.c's global threads are gone afterwards).
void closeNats();

// A benchmark's main(): `parse(argc, argv, options, error)` (false with an empty error: --help,
// print the usage, exit 0; with an error: say it, exit 2), then `run(options)`; an exception is an
// outright failure (exit 1).
template <class Options, class Parse, class Run>
int benchMain(const char* program, const char* usage, int argc, char** argv, Parse parse, Run run) {
  Options options;
  std::string error;
  if (!parse(argc, argv, options, error)) {
    if (error.empty()) {
      std::fputs(usage, stdout);
      return 0;
    }
    std::fprintf(stderr, "%s: %s\n\n%s", program, error.c_str(), usage);
    return 2;
  }
  int code;
  try {
    code = run(options);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: FAILED: %s\n", program, e.what());
    code = 1;
  }
  closeNats();
  return code;
}

}  // namespace hacoord::bench
