// NatsFloorExchange: the FloorExchange over NATS request/gather on hacoord.<cluster>.floor.
//
// Threading: the responder answers on nats.c's delivery thread from a PublishedEpochFloor
// snapshot (thread-safe); gather() runs natsGather on the blocking lane it was given (never on the
// elector's strand: it waits for the whole window) and posts the result to the elector's
// scheduler. After the exchange is destroyed no callback runs.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

#include "election/epoch_floor.h"
#include "nats/floor_reply.h"
#include "hacoord/clock.h"
#include "hacoord/epoch.h"
#include "hacoord/scheduler.h"
#include "hacoord/status.h"

namespace hacoord {

class NatsConnection;
class NatsResponder;

// hacoord.<cluster>.floor: every node answers with its epoch floor.
std::string floorSubject(const std::string& cluster);

// An EpochFloor that forwards to another one (the state file) and keeps a copy of what it holds
// that any thread may read. The elector uses it on its strand like any floor; the responder reads
// snapshot() from nats.c's thread.
class PublishedEpochFloor final : public EpochFloor {
 public:
  explicit PublishedEpochFloor(EpochFloor& inner);
  Epoch current() const override { return inner_.current(); }
  milliseconds longestLease() const override { return inner_.longestLease(); }
  Status raise(Epoch epoch, milliseconds lease = milliseconds(0)) override;
  FloorReply snapshot() const;

 private:
  void publish();

  EpochFloor& inner_;
  mutable std::mutex mutex_;  // guards snapshot_
  FloorReply snapshot_;
};

class NatsFloorExchange final : public FloorExchange {
 public:
  // The gather window: short, a campaign waits for it.
  static constexpr milliseconds kMaxWindow{250};

  // Starts answering on floorSubject(cluster) (subscribed before this returns). `elector` is the
  // scheduler gather()'s callbacks run on, `blocking` a lane that may block for the window
  // (min(request timeout, kMaxWindow)). The connection, the floor and both schedulers must outlive
  // the exchange.
  static Result<std::unique_ptr<NatsFloorExchange>> start(NatsConnection& connection,
                                                          const std::string& cluster,
                                                          const PublishedEpochFloor& floor,
                                                          Scheduler& elector, Scheduler& blocking);
  ~NatsFloorExchange() override;  // unsubscribes; callbacks not yet delivered are dropped
  NatsFloorExchange(const NatsFloorExchange&) = delete;
  NatsFloorExchange& operator=(const NatsFloorExchange&) = delete;

  // The highest epoch and longest lease among the replies that arrived within the window (this
  // node's own included); zero when none did (no responders, not connected, a refused publish).
  // Replies that are not floor replies are ignored with one log line each.
  void gather(std::function<void(Epoch, milliseconds)> done) override;

  milliseconds window() const { return window_; }

 private:
  NatsFloorExchange(NatsConnection& connection, std::string subject, Scheduler& elector, Scheduler& blocking,
                    milliseconds window);

  NatsConnection& connection_;
  const std::string subject_;
  Scheduler& elector_;
  Scheduler& blocking_;
  const milliseconds window_;
  std::shared_ptr<std::atomic<bool>> alive_;
  std::unique_ptr<NatsResponder> responder_;
};

}  // namespace hacoord
