// Health probes: one bounded run of a command, TCP connect or HTTP GET check, asynchronous on Asio.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "hacoord/config.h"

namespace boost::asio {
class io_context;
}  // namespace boost::asio

namespace hacoord {

// What one run of one check found: pass, or a one-line reason.
struct CheckOutcome {
  bool passed = false;
  std::string reason;  // "" on a pass; e.g. "exit 1: pg_isready: no response", "timed out after 1000 ms"
};

std::string_view checkTypeName(HealthCheckConfig::Type type);

// Runs single probes. HealthChecker sees only this interface, so its tests use a scripted fake.
class ProbeRunner {
 public:
  using Done = std::function<void(CheckOutcome)>;
  virtual ~ProbeRunner() = default;
  // Starts one run of `check`, bounded by check.timeout; `done` runs exactly once (also after
  // cancel(), with a failure "cancelled"), never inline inside start().
  virtual std::uint64_t start(const HealthCheckConfig& check, Done done) = 0;
  // Cuts a run short; a no-op for a run that has finished (or never existed).
  virtual void cancel(std::uint64_t run) = 0;
};

// The real probes, on an io_context (hc-io in the daemon): no thread of their own, and nothing
// that blocks the io thread.
//  - command: `/bin/sh -c` via posix_spawn, in a process group of its own, stdin /dev/null,
//    stdout+stderr captured (the first line goes into the failure reason), no descriptor of the
//    daemon inherited. The exit is noticed through a pidfd. A timeout or cancel() kills the whole
//    group (SIGKILL); `done` runs only once the shell has been reaped: never a zombie.
//  - tcp: connects to host:port, trying each address in turn. IP literals need no lookup; a name
//    is resolved by Asio's resolver, which runs getaddrinfo() on Asio's own internal thread (the
//    io thread never waits for DNS; a lookup cut short by the timeout is abandoned there).
//  - http: GET over Boost.Beast (HTTP/1.0, Connection: close); reads the response header only;
//    2xx and 3xx pass. One timeout covers lookup, connect, request and answer.
//
// Thread-safe: start() and cancel() may be called from any thread. `done` runs on a thread running
// `io`. Destroy the runner before `io`: the destructor cancels every run (their `done` still
// runs, "cancelled", as long as `io` runs). A command still running when `io` is destroyed without
// having run its completion is killed and reaped then, synchronously: no command outlives both.
class AsioProbeRunner final : public ProbeRunner {
 public:
  explicit AsioProbeRunner(boost::asio::io_context& io);
  ~AsioProbeRunner() override;
  AsioProbeRunner(const AsioProbeRunner&) = delete;
  AsioProbeRunner& operator=(const AsioProbeRunner&) = delete;

  std::uint64_t start(const HealthCheckConfig& check, Done done) override;
  void cancel(std::uint64_t run) override;

 private:
  struct State;
  std::shared_ptr<State> state_;  // shared with every handler in flight
};

}  // namespace hacoord
