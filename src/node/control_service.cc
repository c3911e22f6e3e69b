// ControlService: decode, log, rate-limit and dispatch the control verbs; reply with the code.
#include "node/control_service.h"

#include "core/logging.h"
#include "nats/nats_connection.h"
#include "nats/nats_control.h"
#include "node/control_codec.h"

namespace hacoord {
namespace {

constinit const ModuleLog kLog("control");

}  // namespace

// Shared with the handlers and the posted tasks, so nothing they touch dies under them.
struct ControlService::State {
  std::string cluster;
  std::string node;
  milliseconds cooldown{};
  Clock* clock = nullptr;
  Scheduler* strand = nullptr;
  Scheduler* blocking = nullptr;
  ControlActions actions;
  // On the strand: when the last rate-limited handover succeeded.
  std::optional<TimePoint> last_handover;
  bool handover_in_flight = false;  // a rate-limited stepdown not answered yet (on the strand)
};

Result<std::unique_ptr<ControlService>> ControlService::start(NatsConnection& connection,
                                                              const std::string& cluster,
                                                              const std::string& node, milliseconds cooldown,
                                                              Clock& clock, Scheduler& strand,
                                                              Scheduler& blocking, ControlActions actions) {
  std::unique_ptr<ControlService> service(new ControlService());
  auto state = std::make_shared<State>();
  state->cluster = cluster;
  state->node = node;
  state->cooldown = cooldown;
  state->clock = &clock;
  state->strand = &strand;
  state->blocking = &blocking;
  state->actions = std::move(actions);
  service->state_ = state;

  for (std::string_view verb : {kVerbStepDown, kVerbForceStepDown, kVerbPromote, kVerbJoin, kVerbLeave}) {
    const std::string subject = controlSubject(cluster, node, std::string(verb));
    auto responder = NatsResponder::subscribe(
        connection, subject,
        [state, verb = std::string(verb), subject, node](std::string body, NatsResponder::ReplyFn reply) {
          auto request = decodeControlRequest(verb, body);
          if (!request.isOk()) {
            kLog->warn("control: refused a malformed {} on {}: {}", verb, subject,
                       request.status().message());
            reply(encodeControlReply(request.status()));
            return;
          }
          if (request->successor == node) {
            // The leader handing over to itself would skip its own cooldown and re-win at once.
            kLog->warn("control: refused a {} on {} naming this node as its own successor", verb, subject);
            reply(encodeControlReply(
                invalidArgument("successor " + node + " is this node, the one handing over")));
            return;
          }
          const std::string requester = request->requester.empty() ? "(not given)" : request->requester;
          kLog->info("control: {}{} requested by '{}' on {}", verb,
                     request->successor.empty() ? "" : " to " + request->successor, requester, subject);
          auto answer = [reply, verb](Status s) {
            if (!s.isOk()) kLog->info("control: {} refused: {}", verb, s.toString());
            reply(encodeControlReply(s));
          };
          if (verb == kVerbStepDown || verb == kVerbForceStepDown) {
            const bool force = verb == kVerbForceStepDown;
            state->strand->post([state, force, successor = request->successor, answer] {
              const TimePoint now = state->clock->now();
              if (!force && state->handover_in_flight) {
                answer(failedPrecondition(
                    "a handover is in progress; at most one per election.cooldownMs unless forced "
                    "by the operator (hacoord demote/promote --force)"));
                return;
              }
              const TimePoint since =
                  state->actions.handed_over_at ? state->actions.handed_over_at() : TimePoint{};
              if (!force && since != TimePoint{} && now < since + state->cooldown) {
                answer(failedPrecondition(
                    "this node took over in a handover " + std::to_string(toMillis(now - since)) +
                    " ms ago; at most one handover per election.cooldownMs (" +
                    std::to_string(state->cooldown.count()) +
                    " ms) unless forced by the operator (hacoord demote/promote --force)"));
                return;
              }
              if (!force && state->last_handover && now < *state->last_handover + state->cooldown) {
                answer(failedPrecondition(
                    "the last handover took place " + std::to_string(toMillis(now - *state->last_handover)) +
                    " ms ago; at most one per election.cooldownMs (" +
                    std::to_string(state->cooldown.count()) +
                    " ms) unless forced by the operator (hacoord demote/promote --force)"));
                return;
              }
              if (!force) state->handover_in_flight = true;
              state->actions.step_down(successor, [state, force, answer](Status s) {
                if (!force) state->handover_in_flight = false;
                if (s.isOk() && !force) state->last_handover = state->clock->now();
                answer(std::move(s));
              });
            });
          } else if (verb == kVerbPromote) {
            state->blocking->post([state, answer, requester] { answer(state->actions.promote(requester)); });
          } else {
            const bool join = verb == kVerbJoin;
            state->strand->post([state, join, answer] {
              state->actions.set_candidate(join, [answer] { answer(Status::ok()); });
            });
          }
        });
    if (!responder.isOk()) return responder.status();
    service->responders_.push_back(std::move(responder).value());
  }
  return service;
}

ControlService::~ControlService() { responders_.clear(); }

}  // namespace hacoord
