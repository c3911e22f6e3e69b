// ControlService: a node's control verbs over NATS, served from one place (DESIGN §5).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "hacoord/clock.h"
#include "hacoord/scheduler.h"
#include "hacoord/status.h"

namespace hacoord {

class NatsConnection;
class NatsResponder;

// What the verbs do; the node supplies them.
struct ControlActions {
  // On `strand`: the planned handover, naming `successor` ("" = anyone).
  std::function<void(const std::string& successor, std::function<void(Status)> done)> step_down;
  // On the blocking lane (it waits for the leader's answer): ask the leader to hand over to us.
  // `requester` is who asked this node (passed on to the leader's log).
  std::function<Status(const std::string& requester)> promote;
  // On `strand`: enter (true) or leave candidacy; `applied` runs once the election took it in.
  std::function<void(bool candidate, std::function<void()> applied)> set_candidate;
  // On `strand`: when a handover gave this node its current term (on `clock`); TimePoint{} when
  // it does not lead, or its term began otherwise (ElectorSnapshot::handed_over_at).
  std::function<TimePoint()> handed_over_at;
};

// Serves hacoord.<cluster>.control.<node>.{stepdown, stepdown.force, promote, join, leave}.
// Every request is decoded strictly (decodeControlRequest: unknown keys, a bad successor id, an
// oversized requester are refused with InvalidArgument) and logged with its verb, subject and
// self-declared requester; replies keep the Status code (encodeControlReply).
//
// Handover rate limit: at most one `stepdown` per `cooldown` (the election's cooldownMs) across the
// cluster: a leader whose term began with a handover (wherever that was asked) refuses another
// until that is a cooldown old, and so does a node for the last handover it made itself. `stepdown.force`,
// which only the operator's NATS user may publish (config/nats-server-auth.conf), is exempt. A flapping
// script or a confused peer thus cannot bounce leadership from node to node, and an operator can still move
// it at once.
class ControlService {
 public:
  static Result<std::unique_ptr<ControlService>> start(NatsConnection& connection, const std::string& cluster,
                                                       const std::string& node, milliseconds cooldown,
                                                       Clock& clock, Scheduler& strand, Scheduler& blocking,
                                                       ControlActions actions);
  ~ControlService();  // unsubscribes; waits for a handler running now
  ControlService(const ControlService&) = delete;
  ControlService& operator=(const ControlService&) = delete;

 private:
  struct State;
  ControlService() = default;

  std::shared_ptr<State> state_;
  std::vector<std::unique_ptr<NatsResponder>> responders_;
};

}  // namespace hacoord
