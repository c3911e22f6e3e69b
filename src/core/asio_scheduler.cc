// AsioScheduler: timers are steady_timers keyed by id so that cancel() can find them.
#include "core/asio_scheduler.h"

#include <future>

#include <boost/asio/post.hpp>

namespace hacoord {

AsioScheduler::AsioScheduler()
    : work_(boost::asio::make_work_guard(io_)), thread_([this] { io_.run(); }) {}

AsioScheduler::~AsioScheduler() { stop(); }

void AsioScheduler::post(Task task) { boost::asio::post(io_, std::move(task)); }

Scheduler::TimerId AsioScheduler::runAfter(Duration delay, Task task) {
  auto timer = std::make_shared<boost::asio::steady_timer>(io_);
  timer->expires_after(delay);
  TimerId id;
  {
    std::lock_guard lock(mutex_);
    id = next_id_++;
    timers_.emplace(id, timer);
  }
  timer->async_wait([this, id, task = std::move(task)](const boost::system::error_code& ec) {
    {
      std::lock_guard lock(mutex_);
      timers_.erase(id);
    }
    if (!ec) task();
  });
  return id;
}

void AsioScheduler::cancel(TimerId id) {
  std::shared_ptr<boost::asio::steady_timer> timer;
  {
    std::lock_guard lock(mutex_);
    auto it = timers_.find(id);
    if (it == timers_.end()) return;
    timer = it->second;
    timers_.erase(it);
  }
  // The handler may already be queued: cancel() on the timer's own strand keeps Asio's rules.
  boost::asio::post(io_, [timer] { timer->cancel(); });
}

void AsioScheduler::runSync(Task task) {
  std::promise<void> done;
  post([&] {
    task();
    done.set_value();
  });
  done.get_future().wait();
}

void AsioScheduler::stop() {
  if (!thread_.joinable()) return;
  work_.reset();
  io_.stop();
  if (inSchedulerThread()) {
    thread_.detach();
  } else {
    thread_.join();
  }
  std::lock_guard lock(mutex_);
  timers_.clear();
}

}  // namespace hacoord
