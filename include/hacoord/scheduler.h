// Scheduler: runs tasks one at a time, in order, now or after a delay (a strand with timers).
#pragma once

#include <cstdint>
#include <functional>

#include "hacoord/clock.h"

namespace hacoord {

// All tasks of one Scheduler run serially, so the state they touch needs no mutex.
// The real one sits on Boost.Asio; tests use a fake one driven by a manual clock.
class Scheduler {
 public:
  using Task = std::function<void()>;
  using TimerId = std::uint64_t;

  virtual ~Scheduler() = default;
  // Runs `task` soon, after the tasks already posted. Safe from any thread.
  virtual void post(Task task) = 0;
  // Runs `task` once `delay` has passed on the scheduler's clock. Safe from any thread.
  virtual TimerId runAfter(Duration delay, Task task) = 0;
  // Drops a timer that has not run yet; a no-op for one that ran or was cancelled.
  virtual void cancel(TimerId id) = 0;
};

}  // namespace hacoord
