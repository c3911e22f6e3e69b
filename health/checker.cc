// HealthChecker: rise/fall counting and the overall verdict, on a Scheduler with an injected clock.
#include "health/checker.h"

#include <algorithm>
#include <climits>
#include <utility>

#include "core/logging.h"

namespace hacoord {
namespace {

constinit const ModuleLog kLog("health");

// The same probe: the same name, and the same thing run against the same target. Interval,
// timeout, rise and fall only say when to run it and how to count: a reload that changes only
// those keeps the check's history (see HealthChecker::retune).
bool sameProbe(const HealthCheckConfig& a, const HealthCheckConfig& b) {
  return a.name == b.name && a.type == b.type && a.command == b.command && a.address == b.address &&
         a.url == b.url;
}

void countUp(int& counter) {
  if (counter < INT_MAX) ++counter;  // a check at 20 ms would overflow an int in about 16 months
}

}  // namespace

struct HealthChecker::Check {
  HealthCheckConfig config;
  std::uint64_t serial = 0;  // identifies it to timers queued on the scheduler
  bool healthy = true;
  int passes = 0;
  int failures = 0;
  std::string last_result = "pending";
  std::uint64_t attempt = 0;  // the run in flight, as the checker tells it apart (0: none)
  std::uint64_t run = 0;      // the same run, as the ProbeRunner knows it (for cancel)
  TimePoint started_at{};     // start of the run in flight, or of the last one
  Scheduler::TimerId next_timer = 0;
};

HealthChecker::HealthChecker(std::vector<HealthCheckConfig> checks, milliseconds fail_after, Clock& clock,
                             Scheduler& scheduler, ProbeRunner& probes)
    : clock_(clock),
      scheduler_(scheduler),
      probes_(probes),
      fail_after_(fail_after),
      alive_(std::make_shared<bool>(true)) {
  for (auto& config : checks) {
    auto check = std::make_unique<Check>();
    check->config = std::move(config);
    check->serial = next_serial_++;
    checks_.push_back(std::move(check));
  }
  publish();
}

HealthChecker::~HealthChecker() {
  stop();
  *alive_ = false;
}

void HealthChecker::setOnChange(std::function<void(bool healthy)> callback) {
  on_change_ = std::move(callback);
}

void HealthChecker::setOnFailedTooLong(std::function<void()> callback) {
  on_failed_too_long_ = std::move(callback);
}

void HealthChecker::start() {
  if (running_) return;
  running_ = true;
  ++generation_;
  gate_ = std::make_shared<Gate>();
  gate_->scheduler = &scheduler_;
  for (auto& check : checks_) launch(*check);
  armFailAfter();  // still unhealthy from before a stop(): the deadline still holds
  kLog->info("health checks started: {} check(s), failAfter {} ms", checks_.size(), fail_after_.count());
}

void HealthChecker::stop() {
  if (!running_) return;
  running_ = false;
  ++generation_;  // callbacks still queued are dropped
  {
    std::lock_guard lock(gate_->mutex);
    gate_->scheduler = nullptr;
  }
  gate_.reset();
  if (fail_after_timer_ != 0) scheduler_.cancel(fail_after_timer_);
  fail_after_timer_ = 0;
  for (auto& check : checks_) retire(*check);
  kLog->info("health checks stopped");
}

void HealthChecker::replaceChecks(std::vector<HealthCheckConfig> checks, milliseconds fail_after) {
  std::vector<std::unique_ptr<Check>> next;
  std::vector<Check*> fresh;
  for (auto& config : checks) {
    auto kept = std::find_if(checks_.begin(), checks_.end(), [&](const std::unique_ptr<Check>& c) {
      return c && sameProbe(c->config, config);
    });
    if (kept != checks_.end()) {
      next.push_back(std::move(*kept));
      retune(*next.back(), std::move(config));
    } else {
      auto check = std::make_unique<Check>();
      check->config = std::move(config);
      check->serial = next_serial_++;
      fresh.push_back(check.get());
      next.push_back(std::move(check));
    }
  }
  for (auto& gone : checks_) {
    if (gone) retire(*gone);  // removed, or its probe changed: a late result must not count
  }
  checks_ = std::move(next);
  fail_after_ = fail_after;
  if (running_) {
    for (Check* check : fresh) launch(*check);
  }
  recompute();
  armFailAfter();  // a new fail_after moves a pending deadline
  publish();
  kLog->info("health checks reloaded: {} check(s) ({} new or changed), failAfter {} ms", checks_.size(),
             fresh.size(), fail_after.count());
}

void HealthChecker::launch(Check& check) {
  check.next_timer = 0;
  check.started_at = clock_.now();
  check.attempt = next_attempt_++;
  // The completion comes on the ProbeRunner's thread: through the gate onto the scheduler.
  check.run = probes_.start(
      check.config, [gate = gate_, alive = alive_, this, attempt = check.attempt](CheckOutcome outcome) {
        std::lock_guard lock(gate->mutex);
        if (gate->scheduler == nullptr) return;  // stopped: nobody waits for this result
        gate->scheduler->post([alive, this, attempt, outcome = std::move(outcome)] {
          if (*alive) onOutcome(attempt, outcome);
        });
      });
}

void HealthChecker::onOutcome(std::uint64_t attempt, const CheckOutcome& outcome) {
  if (!running_) return;
  auto it = std::find_if(checks_.begin(), checks_.end(),
                         [&](const std::unique_ptr<Check>& c) { return c->attempt == attempt; });
  if (it == checks_.end()) return;  // the run of a check removed or changed meanwhile
  Check& check = **it;
  check.attempt = 0;
  check.run = 0;
  record(check, outcome);
  recompute();
  scheduleNext(check);
  publish();
}

void HealthChecker::scheduleNext(Check& check) {
  // Start to start: a run that overran its interval is followed at once by the next.
  const Duration delay = std::max(Duration::zero(), check.started_at + check.config.interval - clock_.now());
  check.next_timer = scheduler_.runAfter(delay, [this, alive = alive_, serial = check.serial] {
    if (!*alive || !running_) return;
    if (Check* c = findCheck(serial)) launch(*c);
  });
}

void HealthChecker::retire(Check& check) {
  if (check.next_timer != 0) scheduler_.cancel(check.next_timer);
  check.next_timer = 0;
  if (check.attempt != 0) probes_.cancel(check.run);  // a run cut short proves nothing
  check.attempt = 0;
  check.run = 0;
}

void HealthChecker::retune(Check& check, HealthCheckConfig config) {
  const bool new_interval = check.config.interval != config.interval;
  check.config = std::move(config);
  judge(check);  // the streaks stay; the new rise/fall may already be reached
  if (new_interval && check.next_timer != 0) {
    scheduler_.cancel(check.next_timer);
    scheduleNext(check);
  }
  // A run in flight keeps the timeout it started with; the next one gets the new one.
}

void HealthChecker::record(Check& check, const CheckOutcome& outcome) {
  check.last_result = outcome.passed ? "pass" : "fail: " + outcome.reason;
  if (outcome.passed) {
    check.failures = 0;
    countUp(check.passes);
  } else {
    check.passes = 0;
    countUp(check.failures);
    kLog->debug("check {} failed ({} in a row): {}", check.config.name, check.failures, outcome.reason);
  }
  judge(check);
}

void HealthChecker::judge(Check& check) {
  if (!check.healthy && check.passes >= check.config.rise) {
    check.healthy = true;
    kLog->info("check {} healthy after {} pass(es)", check.config.name, check.passes);
  } else if (check.healthy && check.failures >= check.config.fall) {
    check.healthy = false;
    kLog->warn("check {} unhealthy after {} failure(s): {}", check.config.name, check.failures,
               check.last_result);
  }
}

void HealthChecker::recompute() {
  const bool now_healthy =
      std::all_of(checks_.begin(), checks_.end(), [](const std::unique_ptr<Check>& c) { return c->healthy; });
  if (now_healthy == healthy_) return;
  healthy_ = now_healthy;
  if (healthy_) {
    unhealthy_since_.reset();
    kLog->info("node healthy again: every check passes");
  } else {
    unhealthy_since_ = clock_.now();
    failed_too_long_fired_ = false;
    std::string failing;
    for (const auto& c : checks_) {
      if (!c->healthy) failing += (failing.empty() ? "" : ", ") + c->config.name;
    }
    kLog->warn("node unhealthy: failing check(s) {}; handover after {} ms", failing, fail_after_.count());
  }
  armFailAfter();
  if (running_ && on_change_) notify([callback = on_change_, healthy = healthy_] { callback(healthy); });
}

void HealthChecker::armFailAfter() {
  if (fail_after_timer_ != 0) scheduler_.cancel(fail_after_timer_);
  fail_after_timer_ = 0;
  if (!running_ || healthy_ || failed_too_long_fired_ || !unhealthy_since_) return;
  const Duration delay = std::max(Duration::zero(), *unhealthy_since_ + fail_after_ - clock_.now());
  fail_after_timer_ = scheduler_.runAfter(delay, [this, alive = alive_] {
    if (!*alive) return;
    fail_after_timer_ = 0;
    onFailedTooLong();
  });
}

void HealthChecker::onFailedTooLong() {
  failed_too_long_fired_ = true;
  kLog->warn("node unhealthy for {} ms (failAfter): a leader hands over", fail_after_.count());
  if (on_failed_too_long_) notify(on_failed_too_long_);
}

void HealthChecker::notify(std::function<void()> call) {
  scheduler_.post([this, alive = alive_, generation = generation_, call = std::move(call)] {
    if (*alive && generation == generation_) call();
  });
}

void HealthChecker::publish() {
  Snapshot s;
  s.healthy = healthy_;
  s.unhealthy_since = unhealthy_since_;
  s.fail_after = fail_after_;
  s.checks.reserve(checks_.size());
  for (const auto& c : checks_) {
    s.checks.push_back(CheckStatus{c->config.name, std::string(checkTypeName(c->config.type)), c->healthy,
                                   c->last_result, c->passes, c->failures});
  }
  std::lock_guard lock(snapshot_mutex_);
  snapshot_ = std::move(s);
}

HealthChecker::Check* HealthChecker::findCheck(std::uint64_t serial) {
  for (auto& c : checks_) {
    if (c->serial == serial) return c.get();
  }
  return nullptr;
}

bool HealthChecker::healthy() const {
  std::lock_guard lock(snapshot_mutex_);
  return snapshot_.healthy;
}

std::vector<CheckStatus> HealthChecker::states() const {
  std::lock_guard lock(snapshot_mutex_);
  return snapshot_.checks;
}

std::optional<TimePoint> HealthChecker::unhealthySince() const {
  std::lock_guard lock(snapshot_mutex_);
  return snapshot_.unhealthy_since;
}

bool HealthChecker::failedLongerThan(milliseconds duration) const {
  const std::optional<TimePoint> since = unhealthySince();
  return since && clock_.now() - *since >= duration;
}

milliseconds HealthChecker::failAfter() const {
  std::lock_guard lock(snapshot_mutex_);
  return snapshot_.fail_after;
}

}  // namespace hacoord
