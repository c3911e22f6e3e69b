// NATS request/reply for health and control (DESIGN §5): subjects, a responder, and request helpers.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "hacoord/clock.h"
#include "hacoord/status.h"

// nats.c's opaque handles, declared exactly as nats.h declares them: only src/nats/*.cc include
// nats.h, so its names and macros stay out of every other translation unit.
typedef struct __natsSubscription natsSubscription;

namespace hacoord {

class NatsConnection;

// hacoord.<cluster>.control.<node>.<verb> (verb: stepdown, promote).
std::string controlSubject(const std::string& cluster, const std::string& node, const std::string& verb);
// hacoord.<cluster>.health.<node>: one node's status JSON.
std::string healthSubject(const std::string& cluster, const std::string& node);
// hacoord.<cluster>.health.<node>.meshping: the node pings a mesh peer for the asker (hacoord ping).
std::string meshPingSubject(const std::string& cluster, const std::string& node);
// hacoord.<cluster>.status: every node answers; gather the replies with natsGather().
std::string statusSubject(const std::string& cluster);

// Answers requests on one subject. The handler runs on the subscription's own nats.c delivery
// thread (messages one at a time): keep it short or hand the work to a scheduler. The connection
// must outlive the responder.
class NatsResponder {
 public:
  // Sends the reply; callable later, from any thread, exactly once (extra calls are ignored, and
  // so are calls after the responder is gone or when the request wanted no reply).
  using ReplyFn = std::function<void(std::string reply)>;
  using Handler = std::function<void(std::string body, ReplyFn reply)>;

  // Subscribes now (the subscription is registered with the server before this returns).
  static Result<std::unique_ptr<NatsResponder>> subscribe(NatsConnection& connection,
                                                          const std::string& subject, Handler handler);
  // Unsubscribes and waits until a handler call in progress has returned (unless called from
  // inside the handler itself), so nothing the handler captured is used afterwards.
  ~NatsResponder();
  NatsResponder(const NatsResponder&) = delete;
  NatsResponder& operator=(const NatsResponder&) = delete;

  const std::string& subject() const;

  struct Shared;  // opaque: shared with nats.c's callbacks and the reply functions

 private:
  NatsResponder(NatsConnection& connection, std::shared_ptr<Shared> shared, natsSubscription* sub);

  NatsConnection& connection_;
  std::shared_ptr<Shared> shared_;
  natsSubscription* sub_;
};

// One request, one reply. NATS_NO_RESPONDERS → NotFound("no responders on <subject>") at once
// (nobody subscribes: an answer, not a transient error);
// no reply in time → DeadlineExceeded; not connected → Unavailable without waiting; the server
// refuses the user's publish to `subject` → PermissionDenied at once (NatsConnection::request).
Result<std::string> natsRequest(NatsConnection& connection, const std::string& subject,
                                const std::string& body, milliseconds timeout);

// One request, every reply that arrives within `window` (e.g. all nodes on statusSubject()).
// No responder at all → NotFound at once; no reply in the window → an empty list, or
// PermissionDenied when the server refused the user's publish to `subject`.
Result<std::vector<std::string>> natsGather(NatsConnection& connection, const std::string& subject,
                                            const std::string& body, milliseconds window);

}  // namespace hacoord
