// HookRunner: runs application hooks one at a time, in order, each watched by a time limit.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "core/work_queue.h"
#include "hacoord/clock.h"
#include "hacoord/scheduler.h"

namespace hacoord {

class HookRunner {
 public:
  // `done` callbacks are posted to `scheduler`.
  HookRunner(Scheduler& scheduler, milliseconds time_limit);
  ~HookRunner();  // runs queued hooks, then joins

  // Runs `hook` after every hook queued before it. `done(true)` once it returns within the time
  // limit; `done(false)` as soon as the limit passes while it still runs (logged), and then not
  // again. A C++ thread cannot be cut short: an overrunning hook delays the hooks behind it.
  void run(std::string name, std::function<void()> hook, std::function<void(bool)> done = {});
  // Runs what is queued and stops. Idempotent.
  void shutdown();

 private:
  Scheduler& scheduler_;
  milliseconds time_limit_;
  WorkQueue queue_;
};

}  // namespace hacoord
