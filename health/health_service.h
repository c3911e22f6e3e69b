// HealthService: answers hacoord.<cluster>.health.<node> and .status over NATS; queries for the CLI.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "hacoord/clock.h"
#include "hacoord/status.h"
#include "hacoord/node_status.h"

namespace hacoord {

class NatsConnection;
class NatsResponder;

// Subscribes this node's responders (DESIGN §5):
//   hacoord.<cluster>.health.<node>  -> this node's status JSON
//   hacoord.<cluster>.status         -> the same; every node answers, the asker gathers
// Each request is answered at once from the handler with provider().toJson(); the connection
// sends it without the flusher's ~1 ms batching delay because NatsConnection sets SendAsap.
//
// The provider runs on nats.c's delivery threads (one per subscription, so two calls may overlap):
// it must be thread-safe and quick, e.g. copy a snapshot kept under a mutex. It must not wait on
// the thread that destroys this service (the destructor waits for a provider call in progress).
// If it throws, the reply is {"error": "..."} and queryNode reports it.
class HealthService {
 public:
  using StatusProvider = std::function<NodeStatus()>;

  // Unavailable when a subscription cannot be made (not connected); InvalidArgument for an id
  // outside [A-Za-z0-9_-]+. The connection must outlive the service.
  static Result<std::unique_ptr<HealthService>> start(NatsConnection& connection, const std::string& cluster,
                                                      const std::string& node_id, StatusProvider provider);
  ~HealthService();  // unsubscribes both; waits for a provider call in progress
  HealthService(const HealthService&) = delete;
  HealthService& operator=(const HealthService&) = delete;

 private:
  HealthService() = default;

  std::unique_ptr<NatsResponder> health_;
  std::unique_ptr<NatsResponder> status_;
};

// Asks one node for its status on hacoord.<cluster>.health.<node>.
//   no responder (NATS_NO_RESPONDERS)  -> Unavailable("node X is down: no responders ...") at once,
//                                         without waiting for `timeout`
//   not connected to NATS              -> Unavailable (not about the node)
//   no reply within `timeout`          -> DeadlineExceeded (the node is subscribed but stuck)
//   unreadable reply / another node id -> DataLoss; provider error -> Internal
//   cluster or node not [A-Za-z0-9_-]+ -> InvalidArgument (ids become subject tokens)
Result<NodeStatus> queryNode(NatsConnection& connection, const std::string& cluster, const std::string& node,
                             milliseconds timeout);

// Asks every node on hacoord.<cluster>.status and collects the replies that arrive within
// `window` (it always waits the whole window: the number of nodes is not known). Sorted by
// nodeId. Replies that cannot be read are logged and left out. No node at all -> Unavailable
// at once.
Result<std::vector<NodeStatus>> gatherStatus(NatsConnection& connection, const std::string& cluster,
                                             milliseconds window);

}  // namespace hacoord
