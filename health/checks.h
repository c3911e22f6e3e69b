// HealthChecker: runs the configured local checks (command, TCP connect, HTTP GET) with rise/fall.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hacoord/clock.h"
#include "hacoord/config.h"
#include "hacoord/node_status.h"

namespace hacoord {

// What one run of one check found: pass, or a one-line reason.
struct CheckOutcome {
  bool passed = false;
  std::string reason;  // "" on a pass; e.g. "exit 1: pg_isready: no response", "timed out after 1000 ms"
};

// Runs one check once, bounded by its timeout (plus a few milliseconds to reap a killed command).
// `cancel_fd` (or -1): a descriptor that turns readable to abandon the run at once (the command's
// process group is killed and reaped); the outcome is then a failure "cancelled". Blocks the
// calling thread; HealthChecker calls it from the check's own thread. Exposed for tests and tools.
CheckOutcome runCheckOnce(const HealthCheckConfig& check, int cancel_fd = -1);

// Runs every configured check on its own thread, each at its own interval (start to start; a run
// that overran its interval is followed at once by the next), and folds the results into one
// verdict with rise/fall counting.
//
// Start-up state: every check starts HEALTHY ("pending" until its first run), so that a cluster
// whose nodes all restart at once still has candidates; it turns unhealthy only after `fall`
// consecutive failures, and healthy again after `rise` consecutive passes. A node whose checks
// are failing from the start is thus a candidate for about (fall - 1) x interval + timeout (and
// leads for at most that plus fail_after): the first run happens as soon as start() is called.
//
// healthy() is true when every check is healthy (always true with no checks). The owner (the
// Manager) is expected to leave candidacy while !healthy() and, when leader, hand over once
// onFailedTooLong fires (unhealthy for `fail_after` without a break).
//
// Callbacks run on one delivery thread owned by the checker, one at a time and in the order the
// changes happened, never under the checker's lock: they may call any const method, but must not
// call start(), stop(), replaceChecks() or destroy the checker (those wait for that thread).
// Post to your own scheduler instead. Thread-safe otherwise.
class HealthChecker {
 public:
  HealthChecker(std::vector<HealthCheckConfig> checks, milliseconds fail_after);
  ~HealthChecker();  // stop()
  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

  // May be set at any time; a change applies to events after it.
  // onChange(healthy) fires on every change of the overall verdict.
  void setOnChange(std::function<void(bool healthy)> callback);
  // Fires once per unhealthy period, `fail_after` after the verdict turned unhealthy, unless it
  // turned healthy before (a leader should then hand over).
  void setOnFailedTooLong(std::function<void()> callback);

  // Starts one thread per check; each runs its check at once, then every interval.
  void start();
  // Stops and joins every thread; a command in progress has its process group killed and reaped.
  // Callbacks already due are delivered before this returns. Idempotent; start() may follow.
  void stop();
  // SIGHUP reload. A check whose name and settings are unchanged keeps its thread, counters and
  // verdict; a new or changed one starts afresh (healthy, "pending"); a removed one is stopped.
  // The overall verdict is recomputed (onChange fires if it changed) and fail_after replaced.
  void replaceChecks(std::vector<HealthCheckConfig> checks, milliseconds fail_after);

  bool healthy() const;
  std::vector<CheckStatus> states() const;
  // When the overall verdict last turned unhealthy (steady clock); nullopt while healthy.
  std::optional<TimePoint> unhealthySince() const;
  // Unhealthy, and for at least `duration` without a break.
  bool failedLongerThan(milliseconds duration) const;
  milliseconds failAfter() const;

 private:
  struct CheckState;
  class Runner;
  struct Shared;

  std::shared_ptr<Shared> shared_;  // state the runner threads report into
  std::mutex control_mutex_;        // serialises start/stop/replaceChecks (they join threads)
  std::vector<std::unique_ptr<Runner>> runners_;
  bool running_ = false;
};

std::string_view checkTypeName(HealthCheckConfig::Type type);

}  // namespace hacoord
