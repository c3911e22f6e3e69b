// HookRunner: one named thread, a FIFO of calls, and a limit timer per call started at queue time.
#include "core/hook_runner.h"

#include <exception>

#include "core/logging.h"
#include "core/runtime.h"

namespace hacoord {
namespace {

constinit const ModuleLog kLog("hooks");

// Set on the hook thread when a hook shut its own runner down (Node::stop() from inside a hook,
// say): the runner may be destroyed before the hook returns, so the loop must not touch it again.
thread_local bool t_runner_released = false;
// The running call's deadline (HookRunner::currentDeadline), on the hook thread.
thread_local std::chrono::steady_clock::time_point t_deadline = std::chrono::steady_clock::time_point::max();

}  // namespace

struct HookRunner::Call {
  std::string name;
  Hook hook;
  Done done;
  TimePoint queued_at{};
  std::chrono::steady_clock::time_point deadline{};  // queued + the limit
  Scheduler::TimerId timer = 0;
  bool reported = false;  // done was called (under mutex_)
  bool overran = false;   // counted in overrunning_ (under mutex_)
  bool finished = false;  // the hook returned or was dropped (under mutex_)
};

HookRunner::HookRunner(Scheduler& scheduler, milliseconds time_limit, std::function<void(bool)> on_overrun)
    : scheduler_(scheduler), time_limit_(time_limit), on_overrun_(std::move(on_overrun)) {
  thread_ = Runtime::startThread("hc-hooks", [this] { loop(); });
}

HookRunner::~HookRunner() { shutdown(); }

int HookRunner::overrunning() const {
  std::lock_guard lock(mutex_);
  return overrunning_;
}

void HookRunner::run(std::string name, Hook hook, Done done) {
  auto call = std::make_shared<Call>();
  call->name = std::move(name);
  call->hook = std::move(hook);
  call->done = std::move(done);
  call->deadline = std::chrono::steady_clock::now() + time_limit_;
  {
    std::lock_guard lock(mutex_);
    if (stopping_) {
      call->finished = true;
      call->reported = true;
      if (call->done) {
        scheduler_.post([done = call->done, n = call->name] {
          done(Status(StatusCode::kCancelled, "hook " + n + " not run: shutting down"));
        });
      }
      return;
    }
    // Armed before the hook thread can see the call: finish() must find the timer to cancel it
    // (else it could fire on a runner already destroyed), and reads it without a race.
    call->timer = scheduler_.runAfter(time_limit_, [this, call] { onLimit(call); });
    queue_.push_back(call);
  }
  cv_.notify_one();
}

// On the scheduler: the limit passed. If the call has not finished it overruns now.
void HookRunner::onLimit(const std::shared_ptr<Call>& call) {
  bool first = false;
  {
    std::lock_guard lock(mutex_);
    if (call->finished || call->overran) return;
    call->overran = true;
    first = ++overrunning_ == 1;
    if (call->reported) return;
    call->reported = true;
  }
  kLog->warn("hook {} has not finished {} ms after it was queued: its time limit", call->name,
             time_limit_.count());
  if (call->done) {
    call->done(deadlineExceeded("hook " + call->name + " did not finish within its time limit of " +
                                std::to_string(time_limit_.count()) + " ms"));
  }
  if (first && on_overrun_) on_overrun_(true);
}

// On the hook thread: the hook returned (or was dropped) with `status`.
void HookRunner::finish(const std::shared_ptr<Call>& call, Status status) {
  bool report = false;
  bool last_overrun = false;
  {
    std::lock_guard lock(mutex_);
    call->finished = true;
    if (call->overran) {
      last_overrun = --overrunning_ == 0;
      kLog->warn("hook {} returned after overrunning its time limit: {}", call->name, status.toString());
    }
    report = !call->reported;
    call->reported = true;
  }
  scheduler_.cancel(call->timer);
  if (report && call->done) {
    scheduler_.post([done = call->done, status] { done(status); });
  }
  if (last_overrun && on_overrun_) {
    scheduler_.post([cb = on_overrun_] { cb(false); });
  }
}

void HookRunner::loop() {
  for (;;) {
    std::shared_ptr<Call> call;
    {
      std::unique_lock lock(mutex_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      call = std::move(queue_.front());
      queue_.pop_front();
      running_ = call;
    }
    Status status;
    t_deadline = call->deadline;
    try {
      status = call->hook();
    } catch (const std::exception& e) {
      status = internalError("hook " + call->name + " threw: " + e.what());
      kLog->error("{}", status.message());
    } catch (...) {
      status = internalError("hook " + call->name + " threw a non-standard exception");
      kLog->error("{}", status.message());
    }
    t_deadline = std::chrono::steady_clock::time_point::max();
    if (t_runner_released) return;  // shut down from inside this hook: `this` may be gone
    {
      std::lock_guard lock(mutex_);
      running_.reset();
    }
    finish(call, std::move(status));
  }
}

std::chrono::steady_clock::time_point HookRunner::currentDeadline() { return t_deadline; }

void HookRunner::shutdown() {
  std::deque<std::shared_ptr<Call>> dropped;
  {
    std::lock_guard lock(mutex_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
    dropped.swap(queue_);
  }
  cv_.notify_all();
  if (thread_.joinable()) {
    if (thread_.get_id() == std::this_thread::get_id()) {
      // Shut down from inside a hook: the loop ends when it returns, without touching the runner
      // (its own `done` is not reported: everything after a shutdown is cancelled anyway). Its
      // limit timer would still fire on a runner that may be gone by then: cancelled here.
      t_runner_released = true;
      thread_.detach();
      std::shared_ptr<Call> running;
      {
        std::lock_guard lock(mutex_);
        running = std::move(running_);
        if (running) running->reported = true;
      }
      if (running) scheduler_.cancel(running->timer);
    } else {
      thread_.join();
    }
  }
  for (auto& call : dropped) {
    finish(call, Status(StatusCode::kCancelled, "hook " + call->name + " not run: shutting down"));
  }
}

}  // namespace hacoord
