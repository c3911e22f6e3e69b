// HooksObserver: hook calls queued on the HookRunner, renewals coalesced.
#include "node/hooks_observer.h"

namespace hacoord {

HooksObserver::HooksObserver(std::shared_ptr<Hooks> hooks, HookRunner& runner)
    : hooks_(std::move(hooks)), runner_(runner) {}

void HooksObserver::onGained(Epoch epoch, TimePoint valid_until, std::function<void(Status)> done) {
  runner_.run(
      "onBecomeLeader", [hooks = hooks_, epoch] { return hooks->onBecomeLeader(epoch); }, std::move(done));
  queueRenewal(epoch, valid_until);
}

void HooksObserver::onRenewed(Epoch epoch, TimePoint valid_until) { queueRenewal(epoch, valid_until); }

void HooksObserver::onLost(Epoch epoch, LossReason reason, std::function<void(Status)> done) {
  runner_.run(
      "onLoseLeadership", [hooks = hooks_, epoch, reason] { return hooks->onLoseLeadership(epoch, reason); },
      std::move(done));
}

void HooksObserver::onLeaderChanged(const std::string& leader, Epoch epoch) {
  runner_.run("onLeaderChange", [hooks = hooks_, leader, epoch] {
    hooks->onLeaderChange(leader, epoch);
    return Status::ok();
  });
}

void HooksObserver::queueRenewal(Epoch epoch, TimePoint valid_until) {
  std::shared_ptr<Renewal> slot;
  {
    std::lock_guard lock(mutex_);
    if (pending_ && pending_->epoch == epoch) {
      pending_->valid_until = valid_until;  // the call already queued delivers this one
      return;
    }
    // Another epoch: a call of its own, queued after whatever came between (a loss, a gain), so
    // a renewal never reaches the application before the term it belongs to.
    slot = std::make_shared<Renewal>(Renewal{epoch, valid_until});
    pending_ = slot;
  }
  runner_.run("onLeaseRenewed", [this, slot] {
    Renewal r;
    {
      std::lock_guard lock(mutex_);
      r = *slot;
      if (pending_ == slot) pending_.reset();
    }
    hooks_->onLeaseRenewed(r.epoch, r.valid_until);
    return Status::ok();
  });
}

}  // namespace hacoord
