// Runtime: hc-io and hc-block threads, strands with lease-clock timers, guarded shutdown.
#include "core/runtime.h"

#include <pthread.h>
#include <time.h>

#include <algorithm>
#include <condition_variable>
#include <future>

#include <boost/asio/basic_waitable_timer.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>

namespace hacoord {

TimePoint leaseClockNow() {
  timespec ts{};
  ::clock_gettime(CLOCK_BOOTTIME, &ts);
  return TimePoint(std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec));
}

std::int64_t SystemWallClock::nowUnixMs() const {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

namespace {

// std::chrono-style clock over leaseClockNow(), for Asio timers.
struct LeaseChronoClock {
  using duration = Duration;
  using rep = duration::rep;
  using period = duration::period;
  using time_point = TimePoint;
  // Part of the Clock requirements though nothing here reads it (clang warns about that).
  [[maybe_unused]] static constexpr bool is_steady = true;
  static time_point now() { return leaseClockNow(); }
};

// Asio asks the traits how long the reactor may sleep for a timer: never longer than
// kMaxTimerWait, after which it compares the lease clock again (it may have jumped by a suspend).
struct CappedWaitTraits {
  static Duration to_wait_duration(const Duration& d) {
    return std::min(d, Duration(StrandScheduler::kMaxTimerWait));
  }
  static Duration to_wait_duration(const TimePoint& t) {
    return to_wait_duration(t - LeaseChronoClock::now());
  }
};

using LeaseTimer =
    boost::asio::basic_waitable_timer<LeaseChronoClock, CappedWaitTraits, boost::asio::any_io_executor>;

}  // namespace

// Shared by the scheduler and every handler it posted: a handler that runs after shutdown() finds
// `shut` and does nothing.
struct StrandScheduler::Timers {
  std::mutex mutex;
  std::condition_variable idle;
  bool shut = false;
  bool running = false;  // a task of this strand is executing
  std::thread::id running_on;
  TimerId next_id = 1;
  std::unordered_map<TimerId, std::shared_ptr<LeaseTimer>> live;

  // Runs `task` unless shut down; tracks it so that shutdown() can wait for it.
  bool run(const Task& task) {
    {
      std::lock_guard lock(mutex);
      if (shut) return false;
      running = true;
      running_on = std::this_thread::get_id();
    }
    struct Done {
      Timers* t;
      ~Done() {
        std::lock_guard lock(t->mutex);
        t->running = false;
        t->idle.notify_all();
      }
    } done{this};
    task();
    return true;
  }
};

StrandScheduler::StrandScheduler(const boost::asio::any_io_executor& executor)
    : strand_(boost::asio::make_strand(executor)), timers_(std::make_shared<Timers>()) {}

StrandScheduler::~StrandScheduler() { shutdown(); }

void StrandScheduler::post(Task task) {
  boost::asio::post(strand_, [timers = timers_, task = std::move(task)] { timers->run(task); });
}

Scheduler::TimerId StrandScheduler::runAfter(Duration delay, Task task) {
  auto timer = std::make_shared<LeaseTimer>(strand_);
  timer->expires_after(delay);
  TimerId id;
  {
    std::lock_guard lock(timers_->mutex);
    if (timers_->shut) return 0;
    id = timers_->next_id++;
    timers_->live.emplace(id, timer);
  }
  timer->async_wait(boost::asio::bind_executor(
      strand_, [timers = timers_, id, task = std::move(task)](const boost::system::error_code& ec) {
        {
          std::lock_guard lock(timers->mutex);
          // Cancelled (erased) timers never run, even if their expiry was already queued.
          if (timers->live.erase(id) == 0) return;
        }
        if (!ec) timers->run(task);
      }));
  return id;
}

void StrandScheduler::cancel(TimerId id) {
  std::shared_ptr<LeaseTimer> timer;
  {
    std::lock_guard lock(timers_->mutex);
    auto it = timers_->live.find(id);
    if (it == timers_->live.end()) return;
    timer = std::move(it->second);
    timers_->live.erase(it);
  }
  // Frees the wait early; the handler finds its id gone either way. Timers are not thread-safe:
  // cancel on the strand.
  boost::asio::post(strand_, [timer] { timer->cancel(); });
}

bool StrandScheduler::runSync(Task task) {
  std::promise<bool> ran;
  auto future = ran.get_future();
  boost::asio::post(strand_, [&] { ran.set_value(timers_->run(task)); });
  return future.get();
}

void StrandScheduler::shutdown() {
  std::unordered_map<TimerId, std::shared_ptr<LeaseTimer>> timers;
  {
    std::unique_lock lock(timers_->mutex);
    timers_->shut = true;
    timers.swap(timers_->live);
    if (timers_->running_on != std::this_thread::get_id()) {
      timers_->idle.wait(lock, [&] { return !timers_->running; });
    }
  }
  // Not a structured binding: clang 14 (the fuzz build) cannot capture one in a lambda.
  for (auto& entry : timers) {
    boost::asio::post(strand_, [timer = entry.second] { timer->cancel(); });
  }
}

bool StrandScheduler::inStrand() const { return strand_.running_in_this_thread(); }

Runtime::Runtime(int blocking_threads)
    : io_work_(boost::asio::make_work_guard(io_)), blocking_work_(boost::asio::make_work_guard(blocking_)) {
  threads_.push_back(startThread("hc-io", [this] { io_.run(); }));
  names_.push_back("hc-io");
  for (int i = 0; i < std::max(1, blocking_threads); ++i) {
    threads_.push_back(startThread("hc-block", [this] { blocking_.run(); }));
    names_.push_back("hc-block");
  }
}

Runtime::~Runtime() { stop(); }

std::unique_ptr<StrandScheduler> Runtime::makeStrand() {
  return std::make_unique<StrandScheduler>(io_.get_executor());
}

std::unique_ptr<StrandScheduler> Runtime::makeBlockingLane() {
  return std::make_unique<StrandScheduler>(blocking_.get_executor());
}

std::thread Runtime::startThread(const std::string& name, std::function<void()> body) {
  return std::thread([name, body = std::move(body)] {
    ::pthread_setname_np(::pthread_self(), name.substr(0, 15).c_str());
    body();
  });
}

std::vector<std::string> Runtime::threadNames() const { return names_; }

void Runtime::stop() {
  std::call_once(stopped_, [this] {
    io_work_.reset();
    blocking_work_.reset();
    io_.stop();
    blocking_.stop();
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  });
}

}  // namespace hacoord
