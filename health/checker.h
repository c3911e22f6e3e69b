// HealthChecker: rise/fall counting over the local checks' probe runs, and the node's verdict.
//
// Threading contract
//  - Every method but the readers below must be called on `scheduler` (a StrandScheduler in the
//    daemon, the FakeScheduler's thread in tests); the setters also from the owner's thread
//    before start(). All state lives there, without a mutex. Probe results arrive on the
//    ProbeRunner's thread and are posted to the scheduler.
//  - healthy(), states(), unhealthySince(), failedLongerThan() and failAfter() may be called from
//    any thread (the NATS status responders do): they read a snapshot kept under a small mutex,
//    updated after every change.
//  - onChange and onFailedTooLong are posted to the scheduler in the order of the changes; they
//    may call any method. One still queued when stop() is called is dropped.
//  - stop() cancels the timers and the runs in progress (the ProbeRunner then kills a command's
//    process group and reaps it, on its own thread, without waiting for the timeout); once stop()
//    returns, nothing of the checker runs any more: the completions of cancelled runs are
//    discarded before they reach the scheduler. Destroy the checker on the scheduler, or after
//    the scheduler has been shut down; the scheduler and the ProbeRunner must outlive it.
//  - `clock` must be the clock the scheduler's timers measure (the lease clock for a
//    StrandScheduler, the SimLoop for a FakeScheduler).
//
// Safety-relevant behaviour
//  - Start-up: every check starts HEALTHY ("pending" until its first run), so that a cluster whose
//    nodes all restart at once still has candidates; it turns unhealthy only after `fall`
//    consecutive failures, and healthy again after `rise` consecutive passes. The first run of
//    every check starts at once in start(), then one every `interval`, start to start (a run that
//    overran its interval is followed at once by the next).
//  - A node failing from the start is thus a candidate for about (fall - 1) x interval + timeout,
//    and a leader keeps leading for at most that plus fail_after: the owner leaves candidacy while
//    !healthy() and, when leader, hands over when onFailedTooLong fires (fail_after, on `clock`,
//    after the verdict turned unhealthy, once per unhealthy period).
//  - A reload (replaceChecks, on SIGHUP) never resets a check whose probe it did not change, even
//    if it edits the check's interval, timeout, rise or fall: counters, verdict, the run in flight
//    and the unhealthy-since instant are kept, so a reload cannot give a failing leader a fresh
//    grace period.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "hacoord/clock.h"
#include "hacoord/config.h"
#include "hacoord/node_status.h"
#include "hacoord/scheduler.h"
#include "health/probes.h"

namespace hacoord {

class HealthChecker {
 public:
  HealthChecker(std::vector<HealthCheckConfig> checks, milliseconds fail_after, Clock& clock,
                Scheduler& scheduler, ProbeRunner& probes);
  ~HealthChecker();  // stop()
  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

  // onChange(healthy) fires on every change of the overall verdict while running.
  void setOnChange(std::function<void(bool healthy)> callback);
  // Fires once per unhealthy period, `fail_after` after the verdict turned unhealthy, unless it
  // turned healthy before (a leader should then hand over).
  void setOnFailedTooLong(std::function<void()> callback);

  // Runs every check at once, then every interval. Idempotent.
  void start();
  // Cancels the timers and the runs in progress. Counters and verdict stay; start() may follow.
  // Idempotent.
  void stop();
  // SIGHUP reload. A check whose probe is unchanged (same name, type and command/address/url)
  // keeps its counters, verdict, run in flight and schedule; new interval, timeout, rise and fall
  // apply to it (its current streak is judged by the new rise/fall at once, a new interval moves
  // its next start, a new timeout applies from its next run). A new check, or one whose probe
  // changed, starts afresh (healthy, "pending", first run at once); a removed one is cancelled.
  // The overall verdict is recomputed (onChange fires if it changed) and fail_after replaced (a
  // pending onFailedTooLong moves to the new deadline).
  void replaceChecks(std::vector<HealthCheckConfig> checks, milliseconds fail_after);

  // Any thread.
  bool healthy() const;
  std::vector<CheckStatus> states() const;
  // When the overall verdict last turned unhealthy (on `clock`); nullopt while healthy.
  std::optional<TimePoint> unhealthySince() const;
  // Unhealthy, and for at least `duration` without a break (on `clock`).
  bool failedLongerThan(milliseconds duration) const;
  milliseconds failAfter() const;

 private:
  struct Check;
  // Where probe completions enter: closed by stop(), so that a late one never touches the
  // scheduler (which may be gone by then). A mutex because completions come from another thread.
  struct Gate {
    std::mutex mutex;
    Scheduler* scheduler = nullptr;
  };
  struct Snapshot {
    bool healthy = true;
    std::vector<CheckStatus> checks;
    std::optional<TimePoint> unhealthy_since;
    milliseconds fail_after{0};
  };

  void launch(Check& check);
  void onOutcome(std::uint64_t attempt, const CheckOutcome& outcome);
  void scheduleNext(Check& check);
  void retire(Check& check);
  // New settings for a check whose probe is unchanged: history kept, judged by the new rise/fall.
  void retune(Check& check, HealthCheckConfig config);
  void record(Check& check, const CheckOutcome& outcome);
  // Turns the check's verdict once its current streak reaches rise (or fall).
  void judge(Check& check);
  void recompute();
  void armFailAfter();
  void onFailedTooLong();
  void notify(std::function<void()> call);
  void publish();
  Check* findCheck(std::uint64_t serial);

  Clock& clock_;
  Scheduler& scheduler_;
  ProbeRunner& probes_;

  std::vector<std::unique_ptr<Check>> checks_;  // in configuration order
  milliseconds fail_after_;
  bool running_ = false;
  bool healthy_ = true;
  std::optional<TimePoint> unhealthy_since_;
  bool failed_too_long_fired_ = false;
  Scheduler::TimerId fail_after_timer_ = 0;
  std::function<void(bool)> on_change_;
  std::function<void()> on_failed_too_long_;
  std::uint64_t next_serial_ = 1;
  std::uint64_t next_attempt_ = 1;
  std::uint64_t generation_ = 0;  // bumped by start() and stop(): older queued callbacks drop
  std::shared_ptr<Gate> gate_;    // open while running
  std::shared_ptr<bool> alive_;   // tasks still queued after destruction see false

  mutable std::mutex snapshot_mutex_;  // guards snapshot_ only
  Snapshot snapshot_;
};

}  // namespace hacoord
