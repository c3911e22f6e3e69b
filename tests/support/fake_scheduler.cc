// SimLoop, DriftClock and FakeScheduler: virtual time for deterministic tests.
#include "support/fake_scheduler.h"

#include <algorithm>
#include <cstdlib>

namespace hacoord::test {

// ---------------------------------------------------------------------------------------------
// SimLoop

SimLoop::SimLoop(TimePoint start) : start_(start), now_(start) {}

SimLoop::EventId SimLoop::schedule(TimePoint at, Event event) {
  at = std::max(at, now_);
  const std::uint64_t seq = next_seq_++;
  queue_.emplace(Key{at, seq}, std::move(event));
  due_of_.emplace(seq, at);
  return seq;
}

void SimLoop::cancel(EventId id) {
  auto it = due_of_.find(id);
  if (it == due_of_.end()) return;
  queue_.erase(Key{it->second, id});
  due_of_.erase(it);
}

bool SimLoop::runOne() {
  if (queue_.empty()) return false;
  auto it = queue_.begin();
  const Key key = it->first;
  // Move the event out before running it: it may schedule or cancel other events.
  Event event = std::move(it->second);
  queue_.erase(it);
  due_of_.erase(key.second);
  now_ = std::max(now_, key.first);
  ++steps_;
  event();
  if (after_each_) after_each_();
  return true;
}

void SimLoop::runUntil(TimePoint deadline) {
  while (!queue_.empty() && queue_.begin()->first.first <= deadline) {
    runOne();
  }
  now_ = std::max(now_, deadline);
}

bool SimLoop::runUntilCondition(const std::function<bool()>& done, TimePoint deadline) {
  while (!done()) {
    if (queue_.empty() || queue_.begin()->first.first > deadline) return false;
    runOne();
  }
  return true;
}

bool SimLoop::runUntilIdle(std::size_t max_events) {
  for (std::size_t i = 0; i < max_events; ++i) {
    if (!runOne()) return true;
  }
  return queue_.empty();
}

TimePoint SimLoop::nextEventTime() const {
  return queue_.empty() ? TimePoint::max() : queue_.begin()->first.first;
}

// ---------------------------------------------------------------------------------------------
// DriftClock

namespace {

__extension__ using Int128 = __int128;  // products of ns and ppb overflow 64 bits after ~10 s
constexpr std::int64_t kBillion = 1'000'000'000;

Int128 floorDiv(Int128 a, Int128 b) {
  Int128 q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

}  // namespace

DriftClock::DriftClock(const SimLoop& loop, double rate, TimePoint origin)
    : loop_(loop),
      ppb_(static_cast<std::int64_t>((rate - 1.0) * 1e9 + (rate >= 1.0 ? 0.5 : -0.5))),
      global_base_(loop.now()),
      local_base_(origin) {
  if (rate <= 0.5 || rate >= 2.0) std::abort();  // a clock this wrong is a broken test
}

Duration DriftClock::localElapsed(Duration global_elapsed) const {
  const Int128 e = global_elapsed.count();
  return Duration(static_cast<std::int64_t>(e + floorDiv(e * ppb_, kBillion)));
}

TimePoint DriftClock::now() const { return local_base_ + localElapsed(loop_.now() - global_base_); }

Duration DriftClock::toGlobal(Duration local) const {
  if (local <= Duration::zero()) return Duration::zero();
  if (ppb_ == 0) return local;
  // g = ceil(local / rate) + 1: the floor in localElapsed() can lose up to 1 ns over any interval,
  // the extra nanosecond pays for it, so a timer never fires early on this clock.
  const Int128 num = static_cast<Int128>(local.count()) * kBillion;
  const Int128 den = kBillion + ppb_;
  return Duration(static_cast<std::int64_t>((num + den - 1) / den + 1));
}

TimePoint DriftClock::globalTimeOf(TimePoint local_time) const {
  const TimePoint local_now = now();
  if (local_time <= local_now) return loop_.now();
  return loop_.now() + toGlobal(local_time - local_now);
}

// ---------------------------------------------------------------------------------------------
// FakeScheduler

FakeScheduler::FakeScheduler(SimLoop& loop, const DriftClock* clock) : loop_(loop), clock_(clock) {}

FakeScheduler::~FakeScheduler() {
  // Events on the loop point at this object: withdraw them so none runs after we are gone.
  for (auto& [id, entry] : tasks_) {
    if (entry.event != 0) loop_.cancel(entry.event);
  }
}

const Clock& FakeScheduler::clock() const {
  if (clock_ != nullptr) return *clock_;
  return loop_;
}

void FakeScheduler::post(Task task) { enqueue(loop_.now(), std::move(task)); }

Scheduler::TimerId FakeScheduler::runAfter(Duration delay, Task task) {
  delay = std::max(delay, Duration::zero());
  const Duration global = clock_ != nullptr ? clock_->toGlobal(delay) : delay;
  return enqueue(loop_.now() + global, std::move(task));
}

Scheduler::TimerId FakeScheduler::runAtGlobal(TimePoint at, Task task) {
  return enqueue(at, std::move(task));
}

Scheduler::TimerId FakeScheduler::enqueue(TimePoint global_at, Task task) {
  const TimerId id = next_id_++;
  if (crashed_) return id;  // a dead process runs nothing; the id is valid to cancel (a no-op)
  Entry& entry = tasks_[id];
  entry.task = std::move(task);
  entry.event = loop_.schedule(global_at, [this, id] { fire(id); });
  return id;
}

void FakeScheduler::fire(TimerId id) {
  auto it = tasks_.find(id);
  if (it == tasks_.end()) return;
  if (paused_) {
    it->second.event = 0;
    held_.push_back(id);
    return;
  }
  Task task = std::move(it->second.task);
  tasks_.erase(it);
  task();
}

void FakeScheduler::cancel(TimerId id) {
  auto it = tasks_.find(id);
  if (it == tasks_.end()) return;
  if (it->second.event != 0) loop_.cancel(it->second.event);
  tasks_.erase(it);  // a held id left in held_ is skipped on resume
}

void FakeScheduler::pause() { paused_ = true; }

void FakeScheduler::resume() {
  if (!paused_) return;
  paused_ = false;
  // Held tasks fell due while the process was stopped; they run now, in the order they fell due.
  std::deque<TimerId> held;
  held.swap(held_);
  for (TimerId id : held) {
    auto it = tasks_.find(id);
    if (it == tasks_.end()) continue;
    it->second.event = loop_.schedule(loop_.now(), [this, id] { fire(id); });
  }
}

void FakeScheduler::crash() {
  for (auto& [id, entry] : tasks_) {
    if (entry.event != 0) loop_.cancel(entry.event);
  }
  tasks_.clear();
  held_.clear();
  paused_ = false;
  crashed_ = true;
}

void FakeScheduler::restart() { crashed_ = false; }

}  // namespace hacoord::test
