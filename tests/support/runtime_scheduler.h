// RuntimeScheduler: one real Scheduler for integration tests and benchmarks, a strand on a Runtime
// of its own (the production runtime, not a look-alike).
#pragma once

#include <memory>
#include <utility>

#include "core/runtime.h"
#include "hacoord/scheduler.h"

namespace hacoord::test {

class RuntimeScheduler final : public Scheduler {
 public:
  RuntimeScheduler() : runtime_(1), strand_(runtime_.makeStrand()) {}
  ~RuntimeScheduler() override { stop(); }

  void post(Task task) override { strand_->post(std::move(task)); }
  TimerId runAfter(Duration delay, Task task) override { return strand_->runAfter(delay, std::move(task)); }
  void cancel(TimerId id) override { strand_->cancel(id); }
  // Runs `task` on the strand and waits for it (never call from the strand itself).
  void runSync(Task task) { strand_->runSync(std::move(task)); }
  // Tasks and timers not yet run are dropped. Idempotent.
  void stop() { strand_->shutdown(); }
  bool inSchedulerThread() const { return strand_->inStrand(); }

 private:
  Runtime runtime_;
  std::unique_ptr<StrandScheduler> strand_;
};

}  // namespace hacoord::test
