// Deterministic virtual time for tests: a global event loop, per-node schedulers and drifting clocks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <unordered_map>
#include <utility>

#include "hacoord/clock.h"
#include "hacoord/scheduler.h"

namespace hacoord::test {

// The one global (virtual) time of a test, and the queue of everything that will happen in it.
// Events run one at a time in (time, insertion order); time only moves when an event runs or a test
// advances it, so a test never sleeps and a seed always replays the same history.
// Single-threaded: every method must be called from the test's thread.
class SimLoop : public Clock {
 public:
  using EventId = std::uint64_t;
  using Event = std::function<void()>;

  // An arbitrary, fixed origin far from zero so "time 0" is never special to code under test.
  static constexpr TimePoint kStart = TimePoint(std::chrono::seconds(1000));

  explicit SimLoop(TimePoint start = kStart);
  SimLoop(const SimLoop&) = delete;
  SimLoop& operator=(const SimLoop&) = delete;

  TimePoint now() const override { return now_; }
  // Time elapsed since construction: handy for readable test messages.
  Duration elapsed() const { return now_ - start_; }

  // Queues `event` at global time `at` (clamped to now: the past cannot be scheduled), after every
  // event already queued for the same time.
  EventId schedule(TimePoint at, Event event);
  EventId scheduleAfter(Duration delay, Event event) { return schedule(now_ + delay, std::move(event)); }
  // Drops a queued event; a no-op for one that ran or was cancelled.
  void cancel(EventId id);

  // Runs the earliest event, moving time to it. False when nothing is queued.
  bool runOne();
  // Runs every event due at or before `deadline`, then sets time to `deadline` (if later).
  void runUntil(TimePoint deadline);
  // runUntil(now() + d).
  void advance(Duration d) { runUntil(now_ + d); }
  // Runs events while `done()` is false and the next event is due at or before `deadline`.
  // Returns done(). Time is left at the last event run (not moved to the deadline).
  bool runUntilCondition(const std::function<bool()>& done, TimePoint deadline);
  // Runs everything due now without moving time (e.g. posted tasks and zero-delay deliveries).
  void runDue() { runUntil(now_); }
  // Runs events until none is queued or `max_events` ran. True when the queue drained; timers that
  // re-arm forever (polls, renewals) never drain, so prefer runUntil with such code.
  bool runUntilIdle(std::size_t max_events = 1'000'000);

  std::size_t pending() const { return queue_.size(); }
  // When the next event is due, or nullopt-like TimePoint::max() if none is queued.
  TimePoint nextEventTime() const;
  // How many events ran so far: the "step" counter of a simulation.
  std::uint64_t steps() const { return steps_; }

  // Called after every event (the invariant checker of a simulation). Empty to disable.
  void setAfterEachEvent(std::function<void()> hook) { after_each_ = std::move(hook); }

 private:
  using Key = std::pair<TimePoint, std::uint64_t>;  // (due time, insertion seq): FIFO at equal times

  TimePoint start_;
  TimePoint now_;
  std::uint64_t next_seq_ = 1;
  std::uint64_t steps_ = 0;
  std::map<Key, Event> queue_;
  std::unordered_map<EventId, TimePoint> due_of_;  // EventId == seq; finds the key to cancel
  std::function<void()> after_each_;
};

// The manual clock of DESIGN §7: single-node tests need nothing more than the loop's own time.
using ManualClock = SimLoop;

// A node's steady clock: it runs at `rate` relative to the global SimLoop time (1.0005 = 500 ppm
// fast) from its own origin, so lease arithmetic sees realistic clock-rate differences between hosts.
// Integer arithmetic in parts per billion keeps it exact and replayable.
class DriftClock : public Clock {
 public:
  // `origin` is what this clock reads when the loop is at its current time (hosts boot at
  // different times, so their steady clocks disagree by an arbitrary offset).
  DriftClock(const SimLoop& loop, double rate, TimePoint origin);
  explicit DriftClock(const SimLoop& loop, double rate = 1.0) : DriftClock(loop, rate, loop.now()) {}

  TimePoint now() const override;
  double rate() const { return 1.0 + static_cast<double>(ppb_) * 1e-9; }

  // Global time that elapses while this clock advances by `local` (rounded up: a timer set for
  // `local` must never fire before this clock has moved that far).
  Duration toGlobal(Duration local) const;
  // The global time at which this clock will read `local_time` (or now, if already past).
  TimePoint globalTimeOf(TimePoint local_time) const;

 private:
  Duration localElapsed(Duration global_elapsed) const;

  const SimLoop& loop_;
  std::int64_t ppb_;       // (rate - 1) in parts per billion
  TimePoint global_base_;  // loop time when this clock read local_base_
  TimePoint local_base_;
};

// One node's Scheduler (its strand) on the shared SimLoop. Delays are measured on the node's clock:
// with a DriftClock, runAfter(d) fires at the global time when that clock has advanced by d.
//
// Fault models:
//  - pause()/resume(): SIGSTOP/SIGCONT of the process. Nothing of this scheduler runs while paused;
//    what fell due meanwhile runs on resume, in due order, after events already queued for then.
//  - crash(): kill -9. Every pending task is dropped and nothing posted afterwards ever runs, until
//    restart() (a new process on the same host: usually a test builds a fresh scheduler instead).
// Unlike the real one it is not thread-safe: like the SimLoop, it belongs to the test's thread.
class FakeScheduler : public Scheduler {
 public:
  // `clock` (optional) is this node's clock; null means the node's clock is the loop itself.
  explicit FakeScheduler(SimLoop& loop, const DriftClock* clock = nullptr);
  ~FakeScheduler() override;
  FakeScheduler(const FakeScheduler&) = delete;
  FakeScheduler& operator=(const FakeScheduler&) = delete;

  void post(Task task) override;
  TimerId runAfter(Duration delay, Task task) override;
  void cancel(TimerId id) override;

  // Runs `task` on this scheduler at global time `at` (deliveries from the outside world, e.g. a
  // store reply arriving over the network). Subject to pause and crash like any task.
  TimerId runAtGlobal(TimePoint at, Task task);

  void pause();
  void resume();
  bool paused() const { return paused_; }
  void crash();
  void restart();
  bool crashed() const { return crashed_; }

  // Tasks that will still run (queued on the loop, or held by a pause).
  std::size_t pending() const { return tasks_.size(); }
  // The clock delays are measured on.
  const Clock& clock() const;
  SimLoop& loop() const { return loop_; }

 private:
  struct Entry {
    Task task;
    SimLoop::EventId event = 0;  // 0 while held by a pause
  };

  TimerId enqueue(TimePoint global_at, Task task);
  void fire(TimerId id);

  SimLoop& loop_;
  const DriftClock* clock_;
  TimerId next_id_ = 1;
  std::map<TimerId, Entry> tasks_;
  std::deque<TimerId> held_;  // fell due while paused, in due order
  bool paused_ = false;
  bool crashed_ = false;
};

}  // namespace hacoord::test
