// EpochFloor: the highest epoch a node has seen, kept where it survives the node and the bucket.
#pragma once

#include <functional>

#include "hacoord/clock.h"
#include "hacoord/epoch.h"
#include "hacoord/status.h"

namespace hacoord {

// The elector never acts on an epoch (campaigns above it) before the floor holds it durably, and
// raises the floor to every epoch it observes. So epochs never repeat, even when the KV bucket is
// deleted and re-created while nodes run, or after every node restarts: each acquires above the
// highest epoch any of them ever saw. Only losing the bucket *and* every node's floor together can
// make an epoch repeat.
//
// It also keeps the longest lease any record announced: when the holder is unknown (the key went
// away), a restarted node still waits as long as the longest lease it has ever seen.
//
// Called on the elector's scheduler only; raise() may block briefly (a file write and fsync).
class EpochFloor {
 public:
  virtual ~EpochFloor() = default;
  // The highest epoch recorded.
  virtual Epoch current() const = 0;
  // The longest lease recorded (0 if none).
  virtual milliseconds longestLease() const = 0;
  // Records `epoch` and `lease` where they are above what is recorded, durably, before returning.
  // An error means they are not recorded: the caller must not act on the epoch (it retries later).
  virtual Status raise(Epoch epoch, milliseconds lease = milliseconds(0)) = 0;
};

// Asks the other nodes for their floors. A node's own floor covers only what it saw: a node that
// was down while epochs 5..9 were handed out, finding the bucket re-created, would campaign for 5
// again. So before campaigning on a key that holds no record, the elector gathers the floors of
// every node that answers and goes above them all. Only if every node that saw the latest epoch is
// down or cut off from NATS at that moment can an epoch repeat (README: safety).
class FloorExchange {
 public:
  virtual ~FloorExchange() = default;
  // Calls `done` on the elector's scheduler, once, with the highest epoch and the longest lease
  // among the floors that arrived within a short window (zero when none did).
  virtual void gather(std::function<void(Epoch, milliseconds)> done) = 0;
};

// A floor that lives only as long as the object: for tests and simulations (a simulated host keeps
// one across process restarts). `fail_next` makes raises fail, like a full disk.
class InMemoryEpochFloor final : public EpochFloor {
 public:
  Epoch current() const override { return floor_; }
  milliseconds longestLease() const override { return lease_; }
  Status raise(Epoch epoch, milliseconds lease = milliseconds(0)) override {
    if (failing_) return unavailable("epoch floor: simulated write failure");
    if (epoch > floor_) floor_ = epoch;
    if (lease > lease_) lease_ = lease;
    ++raises_;
    return Status::ok();
  }
  void setFailing(bool failing) { failing_ = failing; }
  int raises() const { return raises_; }

 private:
  Epoch floor_;
  milliseconds lease_{0};
  bool failing_ = false;
  int raises_ = 0;
};

}  // namespace hacoord
