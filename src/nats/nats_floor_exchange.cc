// NatsFloorExchange: the responder, and gather on a blocking lane.
#include "nats/nats_floor_exchange.h"

#include <algorithm>

#include "core/logging.h"
#include "nats/nats_connection.h"
#include "nats/nats_control.h"

namespace hacoord {
namespace {

constinit const ModuleLog kLog("nats");

}  // namespace

std::string floorSubject(const std::string& cluster) { return "hacoord." + cluster + ".floor"; }

PublishedEpochFloor::PublishedEpochFloor(EpochFloor& inner) : inner_(inner) { publish(); }

Status PublishedEpochFloor::raise(Epoch epoch, milliseconds lease) {
  Status s = inner_.raise(epoch, lease);
  publish();  // only what the inner floor holds (durably) is ever told to others
  return s;
}

FloorReply PublishedEpochFloor::snapshot() const {
  std::lock_guard lock(mutex_);
  return snapshot_;
}

void PublishedEpochFloor::publish() {
  FloorReply now{inner_.current(), inner_.longestLease()};
  std::lock_guard lock(mutex_);
  snapshot_ = now;
}

NatsFloorExchange::NatsFloorExchange(NatsConnection& connection, std::string subject, Scheduler& elector,
                                     Scheduler& blocking, milliseconds window)
    : connection_(connection),
      subject_(std::move(subject)),
      elector_(elector),
      blocking_(blocking),
      window_(window),
      alive_(std::make_shared<std::atomic<bool>>(true)) {}

Result<std::unique_ptr<NatsFloorExchange>> NatsFloorExchange::start(NatsConnection& connection,
                                                                    const std::string& cluster,
                                                                    const PublishedEpochFloor& floor,
                                                                    Scheduler& elector, Scheduler& blocking) {
  const milliseconds window = std::min(connection.requestTimeout(), kMaxWindow);
  std::unique_ptr<NatsFloorExchange> exchange(
      new NatsFloorExchange(connection, floorSubject(cluster), elector, blocking, window));
  auto responder = NatsResponder::subscribe(
      connection, exchange->subject_,
      [&floor](std::string, NatsResponder::ReplyFn reply) { reply(encodeFloorReply(floor.snapshot())); });
  if (!responder.isOk()) return responder.status();
  exchange->responder_ = std::move(*responder);
  return exchange;
}

NatsFloorExchange::~NatsFloorExchange() {
  alive_->store(false);
  responder_.reset();  // waits for a reply in progress
}

void NatsFloorExchange::gather(std::function<void(Epoch, milliseconds)> done) {
  // Copies only: the lane may run this after the exchange is gone (then it does nothing).
  blocking_.post([&connection = connection_, &elector = elector_, subject = subject_, window = window_,
                  alive = alive_, done = std::move(done)]() mutable {
    if (!alive->load()) return;
    FloorReply best;
    auto replies = natsGather(connection, subject, "", window);
    if (replies.isOk()) {
      for (const std::string& body : *replies) {
        auto reply = decodeFloorReply(body);
        if (!reply.isOk()) {
          kLog->warn("ignoring a reply on {} that is not a floor: {}", subject, reply.status().message());
          continue;
        }
        best.epoch = std::max(best.epoch, reply->epoch);
        best.lease = std::max(best.lease, reply->lease);
      }
    } else {
      // No responders (nobody runs yet), not connected, refused: nothing learned. The campaign
      // still goes above this node's own floor.
      kLog->info("gathering epoch floors on {}: {}", subject, replies.status().toString());
    }
    if (!alive->load()) return;
    elector.post([alive, done = std::move(done), best] {
      if (alive->load()) done(best.epoch, best.lease);
    });
  });
}

}  // namespace hacoord
