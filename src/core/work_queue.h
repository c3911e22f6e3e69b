// WorkQueue: one thread running blocking jobs in FIFO order (hooks, NATS calls off the strand).
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace hacoord {

class WorkQueue {
 public:
  WorkQueue();
  ~WorkQueue();  // runs the jobs already queued, then joins
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  // Queues a job; false (and the job dropped) once shutdown() has begun.
  bool push(std::function<void()> job);
  // Stops taking jobs, runs those already queued, joins the thread. Idempotent.
  void shutdown();

 private:
  void loop();

  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace hacoord
