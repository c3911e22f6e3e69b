// Hooks: what an embedding application is told about leadership, on one serialised thread.
#pragma once

#include <string>
#include <string_view>

#include "hacoord/clock.h"
#include "hacoord/epoch.h"
#include "hacoord/status.h"

namespace hacoord {

enum class Role { kFollower, kLeader, kStopped };
std::string_view roleName(Role role);

// Why a node stopped being leader.
enum class LossReason {
  kSteppedDown,   // planned handover: stepDown(), promote of another node, stop()
  kLeaseExpired,  // self-fenced: no renewal was confirmed before the local deadline
  kSuperseded,    // a compare-and-set showed someone else holds the lease
  kHookFailed,    // onBecomeLeader returned an error
  kStopped,       // the node stopped while leading
};
std::string_view lossReasonName(LossReason reason);

// Called in the order the events happened, one at a time, on a thread of hacoord's own (hc-hooks),
// each bounded by election.hookTimeLimitMs counted from the moment the call was queued. While a
// call overruns that limit the node leaves candidacy (a leader hands over), and says so in its
// status and metrics. Overrides must be thread-safe with respect to the application's other
// threads, not with respect to each other. An exception thrown by a hook counts as a failure.
class Hooks {
 public:
  virtual ~Hooks() = default;
  // This node holds the lease under `epoch`. Returning an error makes the node step down at once.
  virtual Status onBecomeLeader(Epoch epoch) {
    (void)epoch;
    return Status::ok();
  }
  // This node must stop acting as leader for `epoch`. On a planned handover the lease is released
  // only after this returns OK within the time limit, so release leader-only resources here and
  // return an error if that failed: the lease is then left to expire (as after a crash) instead
  // of being handed to a successor while this node's service may still be live.
  virtual Status onLoseLeadership(Epoch epoch, LossReason reason) {
    (void)epoch;
    (void)reason;
    return Status::ok();
  }
  // The cluster's leader changed: `leader` is "" while the lease is vacant or expired.
  virtual void onLeaderChange(std::string_view leader, Epoch epoch) {
    (void)leader;
    (void)epoch;
  }
  // A renewal was confirmed: this node may act as leader of `epoch` until `valid_until` on the
  // lease clock (hacoord::leaseClockNow(), CLOCK_BOOTTIME), unless renewed again. Also called once
  // right after onBecomeLeader. Renewals that pile up behind a slow hook are coalesced: only the
  // latest is delivered. Handy for downstream fencing.
  virtual void onLeaseRenewed(Epoch epoch, TimePoint valid_until) {
    (void)epoch;
    (void)valid_until;
  }
};

}  // namespace hacoord
