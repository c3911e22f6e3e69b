// LeadershipBus: per-observer queues on the elector's strand, gains and losses chained in order.
#include "node/leadership.h"

#include <utility>

#include "core/logging.h"

namespace hacoord {
namespace {

constinit const ModuleLog kLog("node");

}  // namespace

LeadershipBus::LeadershipBus(Scheduler& strand) : strand_(strand), alive_(std::make_shared<bool>(true)) {}

LeadershipBus::~LeadershipBus() { *alive_ = false; }

void LeadershipBus::add(LeadershipObserver& observer) {
  Slot slot;
  slot.observer = &observer;
  slots_.push_back(std::move(slot));
}

void LeadershipBus::gained(Epoch epoch, TimePoint valid_until) {
  Event e{Event::Kind::kGain, epoch, valid_until, LossReason::kStopped, ""};
  enqueue(e);
}

void LeadershipBus::renewed(Epoch epoch, TimePoint valid_until) {
  Event e{Event::Kind::kRenew, epoch, valid_until, LossReason::kStopped, ""};
  enqueue(e);
}

void LeadershipBus::lost(Epoch epoch, LossReason reason, std::function<void(bool)> released) {
  ended_ = std::max(ended_, epoch);
  releases_.push_back(Release{epoch, std::move(released), true});
  Event e{Event::Kind::kLose, epoch, TimePoint{}, reason, ""};
  enqueue(e);
  finishRelease();
}

void LeadershipBus::leaderChanged(const std::string& leader, Epoch epoch) {
  Event e{Event::Kind::kChange, epoch, TimePoint{}, LossReason::kStopped, leader};
  enqueue(e);
}

void LeadershipBus::enqueue(const Event& event) {
  for (auto& slot : slots_) slot.queue.push_back(event);
  pump();
}

// Not reentrant: an event queued while pumping (an observer's synchronous reaction) makes the
// running pump go round once more instead of popping queues under its feet.
void LeadershipBus::pump() {
  if (pumping_) {
    pump_again_ = true;
    return;
  }
  pumping_ = true;
  do {
    pump_again_ = false;
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      while (!slots_[i].queue.empty() && deliver(i)) slots_[i].queue.pop_front();
    }
  } while (pump_again_);
  pumping_ = false;
}

bool LeadershipBus::deliver(std::size_t index) {
  Slot& slot = slots_[index];
  const Event e = slot.queue.front();
  switch (e.kind) {
    case Event::Kind::kGain: {
      // A leadership that already ended, or whose chain failed before this observer: never told.
      if (e.epoch <= ended_ || e.epoch == failed_) return true;
      for (std::size_t j = 0; j < index; ++j) {
        if (slots_[j].gained_ok != e.epoch) return false;  // the ones before are not ready yet
      }
      slot.told = e.epoch;
      slot.observer->onGained(e.epoch, e.until,
                              // `strand`, not strand_: a late `done` may come after the bus is gone.
                              [this, strand = &strand_, alive = alive_, index, epoch = e.epoch](Status s) {
                                strand->post([this, alive, index, epoch, s] {
                                  if (!*alive) return;
                                  if (s.isOk()) {
                                    slots_[index].gained_ok = epoch;
                                  } else {
                                    kLog->error("epoch {}: {} could not take leadership: {}; stepping down",
                                                epoch.value(), slots_[index].observer->name(), s.toString());
                                    failed_ = std::max(failed_, epoch);
                                    if (step_down_) step_down_(epoch, s);
                                  }
                                  pump();
                                });
                              });
      return true;
    }
    case Event::Kind::kRenew:
      if (slot.told == e.epoch) slot.observer->onRenewed(e.epoch, e.until);
      return true;
    case Event::Kind::kLose: {
      if (slot.told != e.epoch) {
        slot.lost_done = std::max(slot.lost_done, e.epoch);  // never told of it: nothing to undo
        finishRelease();
        return true;
      }
      for (std::size_t j = 0; j < index; ++j) {
        if (slots_[j].lost_done < e.epoch) return false;  // the ones before have not let go yet
      }
      slot.told = Epoch();
      slot.observer->onLost(e.epoch, e.reason,
                            // `strand`, not strand_: a late `done` may come after the bus is gone.
                            [this, strand = &strand_, alive = alive_, index, epoch = e.epoch](Status s) {
                              strand->post([this, alive, index, epoch, s] {
                                if (!*alive) return;
                                if (!s.isOk()) {
                                  kLog->error("epoch {}: {} could not let go of leadership: {}",
                                              epoch.value(), slots_[index].observer->name(), s.toString());
                                  for (auto& r : releases_) {
                                    if (r.epoch == epoch) r.ok = false;
                                  }
                                }
                                slots_[index].lost_done = std::max(slots_[index].lost_done, epoch);
                                finishRelease();
                                pump();
                              });
                            });
      return true;
    }
    case Event::Kind::kChange:
      slot.observer->onLeaderChanged(e.leader, e.epoch);
      return true;
  }
  return true;
}

// A loss is released once every observer let go of it (or never held it), oldest first.
void LeadershipBus::finishRelease() {
  while (!releases_.empty()) {
    const Release& r = releases_.front();
    for (const auto& slot : slots_) {
      if (slot.lost_done < r.epoch) return;
    }
    Release done = std::move(releases_.front());
    releases_.pop_front();
    // Posted: the elector may react (write the vacant record, announce) by calling back in here.
    if (done.released) strand_.post([released = std::move(done.released), ok = done.ok] { released(ok); });
  }
}

}  // namespace hacoord
