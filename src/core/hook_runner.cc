// HookRunner: a WorkQueue plus a per-hook timer on the scheduler that reports overruns.
#include "core/hook_runner.h"

#include <atomic>

#include "core/logging.h"

namespace hacoord {
namespace {

struct HookCall {
  std::string name;
  std::function<void(bool)> done;
  std::atomic<bool> reported{false};
  // Reports once: whichever of "returned" and "time limit" comes first wins.
  void report(bool in_time) {
    if (reported.exchange(true)) return;
    if (done) done(in_time);
  }
};

}  // namespace

HookRunner::HookRunner(Scheduler& scheduler, milliseconds time_limit)
    : scheduler_(scheduler), time_limit_(time_limit) {}

HookRunner::~HookRunner() { shutdown(); }

void HookRunner::shutdown() { queue_.shutdown(); }

void HookRunner::run(std::string name, std::function<void()> hook, std::function<void(bool)> done) {
  auto call = std::make_shared<HookCall>();
  call->name = std::move(name);
  call->done = std::move(done);
  const bool queued = queue_.push([this, call, hook = std::move(hook)] {
    const auto limit_timer = scheduler_.runAfter(time_limit_, [this, call] {
      if (call->reported) return;
      moduleLogger("hooks")->warn("hook {} overran its time limit of {} ms", call->name,
                                  time_limit_.count());
      call->report(false);
    });
    try {
      hook();
    } catch (const std::exception& e) {
      moduleLogger("hooks")->error("hook {} threw: {}", call->name, e.what());
    } catch (...) {
      moduleLogger("hooks")->error("hook {} threw a non-standard exception", call->name);
    }
    scheduler_.cancel(limit_timer);
    scheduler_.post([call] { call->report(true); });
  });
  if (!queued) scheduler_.post([call] { call->report(false); });
}

}  // namespace hacoord
