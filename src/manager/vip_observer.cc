// VipObserver: acquire / extend / release on the VIP strand; "added, announcement pending" is OK.
#include "manager/vip_observer.h"

#include "core/logging.h"

namespace hacoord {
namespace {

constinit const ModuleLog kLog("vip");

}  // namespace

void VipObserver::onGained(Epoch epoch, TimePoint valid_until, std::function<void(Status)> done) {
  strand_.post([this, epoch, valid_until, done = std::move(done)] {
    Status s = vip_.acquire(epoch, valid_until);
    if (s.code() == StatusCode::kDeadlineExceeded) {
      // The lease left less than a whole second of kernel lifetime: the VIP is held and goes on
      // at the next renewal. This node leads; stepping down for it would only cost a failover.
      s = Status::ok();
    }
    done(std::move(s));
  });
}

void VipObserver::onRenewed(Epoch epoch, TimePoint valid_until) {
  strand_.post([this, epoch, valid_until] {
    if (Status s = vip_.extend(epoch, valid_until); !s.isOk()) {
      kLog->warn("epoch {}: cannot extend the VIP: {}", epoch.value(), s.toString());
    }
  });
}

void VipObserver::onLost(Epoch epoch, LossReason reason, std::function<void(Status)> done) {
  (void)reason;
  strand_.post([this, epoch, done = std::move(done)] { done(vip_.release(epoch)); });
}

}  // namespace hacoord
