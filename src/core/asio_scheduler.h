// AsioScheduler: the production Scheduler, one Boost.Asio io_context run by one thread of its own.
#pragma once

#include <utility>  // before Asio: Boost 1.74 under C++20 needs it

#include <atomic>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/executor_work_guard.hpp>

#include "hacoord/scheduler.h"

namespace hacoord {

class AsioScheduler final : public Scheduler {
 public:
  AsioScheduler();
  ~AsioScheduler() override;  // stop()

  void post(Task task) override;
  TimerId runAfter(Duration delay, Task task) override;
  void cancel(TimerId id) override;

  // Runs `task` on the scheduler thread and waits for it (never call from that thread).
  void runSync(Task task);
  // Stops the thread; tasks not yet run are dropped. Idempotent.
  void stop();
  bool inSchedulerThread() const { return std::this_thread::get_id() == thread_.get_id(); }

 private:
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  std::mutex mutex_;  // guards timers_ and next_id_: runAfter/cancel may come from any thread
  std::unordered_map<TimerId, std::shared_ptr<boost::asio::steady_timer>> timers_;
  TimerId next_id_ = 1;
  std::thread thread_;
};

}  // namespace hacoord
