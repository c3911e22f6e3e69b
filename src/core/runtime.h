// Runtime: the one io_context a daemon or Node runs on, its strands, and every thread hacoord owns.
//
// The threads hacoord starts, all of them (names as `ps -T` and /proc/<pid>/task/*/comm show them):
//   hc-io       1            runs the io_context: every strand (elector, VIP, health checks, HTTP,
//                            control); nothing on it blocks
//   hc-block    2            blocking calls kept off the strands: the VIP's netlink calls, the
//                            floor exchange, control requests that wait for another node
//   hc-hooks    1            the application's hooks (HookRunner): they may block for seconds
//   hc-kvread   1 per store  the lease store's nats.c KV reads, and
//   hc-kvwrite  1 per store  its writes: two serial lanes, so a leader's poll never waits behind
//                            a renewal (NatsLeaseStore)
//   hc-kvwatch  1 per store  its NatsKvWatcher: kvWatcher_Next blocks (nats.c 3.4.1 has no callback
//                            watcher)
//   hc-members  1 per source the members bucket's puts, key polls and final delete (NatsMemberSource)
//   hc-mbwatch  1 per source its NatsKvWatcher of every key
//   hc-mesh     2 per mesh   the mesh's RPC handlers (they may block, within their deadline)
//   hc-meshcb   1 per mesh   the Done callbacks and peer events the mesh hands the application
// nats.c adds threads of its own (per connection: read loop and flusher; per process: timers and
// async callbacks); they only copy data and post to a strand. Every thread of ours is started with
// Runtime::startThread, which names it.
//
// Threading contract: a StrandScheduler runs its tasks one at a time, in order, so the state a
// component keeps on its strand needs no mutex. A component shuts its strand down (shutdown())
// before it is destroyed; tasks and timers of a strand that was shut down never run, so nothing
// posted earlier can touch a destroyed component.
#pragma once

#include <utility>  // before Asio: Boost 1.74 under C++20 needs it

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>

#include "hacoord/clock.h"
#include "hacoord/scheduler.h"

namespace hacoord {

// A Scheduler on a strand of an executor, with timers on the lease clock (leaseClockNow()). A
// timer's wait is re-checked at least every kMaxTimerWait, so a timer due during a host suspend
// fires within that long after the resume (the kernel's own waits stop counting while suspended).
class StrandScheduler final : public Scheduler {
 public:
  static constexpr milliseconds kMaxTimerWait{250};

  explicit StrandScheduler(const boost::asio::any_io_executor& executor);
  ~StrandScheduler() override;  // shutdown()
  StrandScheduler(const StrandScheduler&) = delete;
  StrandScheduler& operator=(const StrandScheduler&) = delete;

  void post(Task task) override;
  TimerId runAfter(Duration delay, Task task) override;
  void cancel(TimerId id) override;

  // Runs `task` on the strand and waits until it has run. Never call it from the strand itself.
  // False when the strand was shut down (the task did not run).
  bool runSync(Task task);
  // From now on nothing posted to or timed on this strand runs; a task running right now finishes
  // first (this waits for it, unless called from that very task). Idempotent.
  void shutdown();
  // True inside a task of this strand.
  bool inStrand() const;

  boost::asio::strand<boost::asio::any_io_executor>& strand() { return strand_; }

 private:
  struct Timers;

  boost::asio::strand<boost::asio::any_io_executor> strand_;
  std::shared_ptr<Timers> timers_;  // shared with the handlers, which may outlive this object
};

class Runtime {
 public:
  // The owner's thread is not one of the runtime's: Runtime() starts hc-io and hc-block threads.
  explicit Runtime(int blocking_threads = 2);
  ~Runtime();  // stop()
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  // The io_context of hc-io (for Asio sockets: HTTP, health probes, later the mesh).
  boost::asio::io_context& io() { return io_; }
  // A new strand on hc-io: nothing run on it may block.
  std::unique_ptr<StrandScheduler> makeStrand();
  // A new serial lane on the hc-block threads, for calls that block (nats.c, waiting requests).
  std::unique_ptr<StrandScheduler> makeBlockingLane();
  boost::asio::any_io_executor blockingExecutor() { return blocking_.get_executor(); }

  // Starts a named thread (names longer than 15 characters are cut by the kernel).
  static std::thread startThread(const std::string& name, std::function<void()> body);
  // The names of the threads this runtime started (for tests and diagnostics).
  std::vector<std::string> threadNames() const;

  // Stops the io_contexts and joins their threads. Components must have shut their strands down.
  // Idempotent; never call it from one of the runtime's own threads.
  void stop();

 private:
  boost::asio::io_context io_;
  boost::asio::io_context blocking_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> io_work_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> blocking_work_;
  std::vector<std::thread> threads_;
  std::vector<std::string> names_;
  std::once_flag stopped_;
};

}  // namespace hacoord
