// HookRunner: runs application hooks one at a time, in order, on hc-hooks, each with a time limit.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "hacoord/clock.h"
#include "hacoord/scheduler.h"
#include "hacoord/status.h"

namespace hacoord {

// The time limit of a call starts when it is QUEUED, not when it starts: a hook stuck behind a
// wedged one overruns too, so a wedged hook cannot silently hold the election's reactions back.
//
// Threading: run() may be called from any thread; hooks run on the runner's own thread
// (`hc-hooks`), one at a time, in queue order. Every `done` and every overrun report is posted to
// `scheduler`.
class HookRunner {
 public:
  using Hook = std::function<Status()>;
  using Done = std::function<void(Status)>;

  // `on_overrun(true)` when the first call passes its limit unfinished, `on_overrun(false)` when no
  // call is past its limit any more (the wedged hook returned); both on `scheduler`.
  HookRunner(Scheduler& scheduler, milliseconds time_limit,
             std::function<void(bool overrunning)> on_overrun = {});
  ~HookRunner();  // shutdown()
  HookRunner(const HookRunner&) = delete;
  HookRunner& operator=(const HookRunner&) = delete;

  // Queues `hook`. `done` gets, exactly once: the hook's Status if it returned within the limit;
  // DeadlineExceeded as soon as the limit passes while it is queued or running (a C++ thread
  // cannot be cut short: it still runs to the end, and the hooks behind it wait); Internal if it
  // threw; Cancelled if the runner was shut down before it ran.
  void run(std::string name, Hook hook, Done done = {});
  // Drops what is queued (their `done` gets Cancelled), waits for the hook running now, joins.
  // Called from inside a hook (or the runner destroyed there), it cannot wait for itself: the
  // thread is detached and ends when the hook returns, touching nothing of the runner; that
  // hook's `done` is not called.
  // Idempotent.
  void shutdown();
  // Calls past their limit and not finished yet (from any thread).
  int overrunning() const;
  // Inside a hook, on the runner's thread: when that call's time limit ends (queued + limit), on
  // the steady clock. A hook that starts processes kills them by then (CommandHooks), so a command
  // queued behind a slow one never outlives its own limit. time_point::max() outside a hook.
  static std::chrono::steady_clock::time_point currentDeadline();

 private:
  struct Call;
  void loop();
  void onLimit(const std::shared_ptr<Call>& call);
  void finish(const std::shared_ptr<Call>& call, Status status);

  Scheduler& scheduler_;
  const milliseconds time_limit_;
  std::function<void(bool)> on_overrun_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Call>> queue_;
  std::shared_ptr<Call> running_;  // the call whose hook runs now (under mutex_)
  int overrunning_ = 0;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace hacoord
