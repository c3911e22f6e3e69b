// NATS request/reply: responder lifetime across nats.c's delivery thread, requests with clear errors.
#include "nats/nats_control.h"

#include <atomic>
#include <condition_variable>
#include <mutex>

#include <nats/nats.h>

#include "core/logging.h"
#include "nats/nats_connection.h"

namespace hacoord {

// Shared by the responder, nats.c's callbacks (through a heap-held shared_ptr that the
// subscription's completion callback frees) and every outstanding reply function.
struct NatsResponder::Shared {
  std::string subject;
  Handler handler;
  std::mutex mutex;
  natsConnection* nc = nullptr;  // null once the responder is gone: late replies are dropped
  std::condition_variable cv;
  bool completed = false;  // nats.c will call the message handler no more
};

namespace {

constinit const ModuleLog kLog("nats");

std::string errorText(natsStatus s) { return natsErrorText(s); }

using Shared = NatsResponder::Shared;
using SharedHolder = std::shared_ptr<Shared>;

// The responder whose handler this thread is running, so that ~NatsResponder called from inside
// the handler does not wait for itself.
thread_local const Shared* t_in_handler = nullptr;

void onRequest(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
  SharedHolder shared = *static_cast<SharedHolder*>(closure);
  const char* reply_to = natsMsg_GetReply(msg);
  std::string reply_subject = reply_to != nullptr ? reply_to : "";
  std::string body(natsMsg_GetData(msg) != nullptr ? natsMsg_GetData(msg) : "",
                   static_cast<std::size_t>(natsMsg_GetDataLength(msg)));
  natsMsg_Destroy(msg);

  auto used = std::make_shared<std::atomic<bool>>(false);
  NatsResponder::ReplyFn reply = [shared, reply_subject, used](std::string answer) {
    if (reply_subject.empty() || used->exchange(true)) return;
    // Held while publishing, so ~NatsResponder cannot finish under a publish in progress.
    std::lock_guard lock(shared->mutex);
    if (shared->nc == nullptr) return;
    natsStatus s = natsConnection_Publish(shared->nc, reply_subject.c_str(), answer.data(),
                                          static_cast<int>(answer.size()));
    if (s != NATS_OK) {
      kLog->warn("reply on {} not sent: {}", shared->subject, errorText(s));
    }
  };
  t_in_handler = shared.get();
  try {
    shared->handler(std::move(body), std::move(reply));
  } catch (const std::exception& e) {
    kLog->error("handler for {} threw: {}", shared->subject, e.what());
  } catch (...) {
    kLog->error("handler for {} threw", shared->subject);
  }
  t_in_handler = nullptr;
}

void onComplete(void* closure) {
  auto* holder = static_cast<SharedHolder*>(closure);
  {
    std::lock_guard lock((*holder)->mutex);
    (*holder)->completed = true;
  }
  (*holder)->cv.notify_all();
  delete holder;
}

}  // namespace

std::string controlSubject(const std::string& cluster, const std::string& node, const std::string& verb) {
  return "hacoord." + cluster + ".control." + node + "." + verb;
}

std::string healthSubject(const std::string& cluster, const std::string& node) {
  return "hacoord." + cluster + ".health." + node;
}

std::string meshPingSubject(const std::string& cluster, const std::string& node) {
  return healthSubject(cluster, node) + ".meshping";
}

std::string statusSubject(const std::string& cluster) { return "hacoord." + cluster + ".status"; }

NatsResponder::NatsResponder(NatsConnection& connection, std::shared_ptr<Shared> shared,
                             natsSubscription* sub)
    : connection_(connection), shared_(std::move(shared)), sub_(sub) {}

Result<std::unique_ptr<NatsResponder>> NatsResponder::subscribe(NatsConnection& connection,
                                                                const std::string& subject, Handler handler) {
  auto shared = std::make_shared<Shared>();
  shared->subject = subject;
  shared->handler = std::move(handler);
  shared->nc = connection.raw();

  auto* holder = new SharedHolder(shared);
  natsSubscription* sub = nullptr;
  natsStatus s = natsConnection_Subscribe(&sub, connection.raw(), subject.c_str(), onRequest, holder);
  if (s != NATS_OK) {
    delete holder;  // no subscription: nats.c will never call back
    return unavailable("cannot subscribe to " + subject + ": " + errorText(s));
  }
  s = natsSubscription_SetOnCompleteCB(sub, onComplete, holder);
  if (s != NATS_OK) {
    // Without the completion callback nobody would free the holder: undo the subscription.
    Status err = internalError("cannot set completion callback on " + subject + ": " + errorText(s));
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    return err;  // the holder is leaked on purpose: a message callback may still use it
  }
  // The server knows the subscription once this returns: a request sent next finds a responder.
  s = natsConnection_FlushTimeout(connection.raw(), connection.requestTimeout().count());
  if (s != NATS_OK) {
    kLog->warn("subscription to {} not confirmed by the server yet: {}", subject, errorText(s));
  }
  return std::unique_ptr<NatsResponder>(new NatsResponder(connection, std::move(shared), sub));
}

NatsResponder::~NatsResponder() {
  {
    std::lock_guard lock(shared_->mutex);
    shared_->nc = nullptr;
  }
  natsSubscription_Unsubscribe(sub_);
  if (t_in_handler != shared_.get()) {
    std::unique_lock lock(shared_->mutex);
    if (!shared_->cv.wait_for(lock, std::chrono::seconds(5), [&] { return shared_->completed; })) {
      kLog->error("responder on {}: handler still running 5 s after unsubscribe", shared_->subject);
    }
  }
  connection_.destroyLater([sub = sub_] { natsSubscription_Destroy(sub); });
}

const std::string& NatsResponder::subject() const { return shared_->subject; }

Result<std::string> natsRequest(NatsConnection& connection, const std::string& subject,
                                const std::string& body, milliseconds timeout) {
  // NatsConnection::request tells the server's refusal of the subject from a silent responder.
  return connection.request(subject, body, timeout);
}

Result<std::vector<std::string>> natsGather(NatsConnection& connection, const std::string& subject,
                                            const std::string& body, milliseconds window) {
  if (!connection.connected()) {
    return unavailable("request on " + subject + ": not connected to NATS");
  }
  const std::uint64_t refusal_mark = connection.refusalMark();
  natsInbox* inbox = nullptr;
  natsStatus s = natsInbox_Create(&inbox);
  if (s != NATS_OK) return internalError("natsInbox_Create: " + errorText(s));
  natsSubscription* sub = nullptr;
  s = natsConnection_SubscribeSync(&sub, connection.raw(), inbox);
  if (s == NATS_OK) {
    s = natsConnection_PublishRequest(connection.raw(), subject.c_str(), inbox, body.data(),
                                      static_cast<int>(body.size()));
  }
  if (s != NATS_OK) {
    Status err = unavailable("request on " + subject + ": " + errorText(s));
    if (sub != nullptr) natsSubscription_Destroy(sub);
    natsInbox_Destroy(inbox);
    return err;
  }
  std::vector<std::string> replies;
  bool no_responders = false;
  const auto deadline = std::chrono::steady_clock::now() + window;
  for (;;) {
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    natsMsg* msg = nullptr;
    s = natsSubscription_NextMsg(&msg, sub, left.count());
    if (s == NATS_NO_RESPONDERS) {  // how nats.c hands a sync subscriber the server's 503
      no_responders = true;
      break;
    }
    if (s != NATS_OK) break;  // NATS_TIMEOUT: the window is over
    if (natsMsg_IsNoResponders(msg)) {
      no_responders = true;
      natsMsg_Destroy(msg);
      break;
    }
    replies.emplace_back(natsMsg_GetData(msg) != nullptr ? natsMsg_GetData(msg) : "",
                         static_cast<std::size_t>(natsMsg_GetDataLength(msg)));
    natsMsg_Destroy(msg);
  }
  natsSubscription_Unsubscribe(sub);
  connection.destroyLater([sub] { natsSubscription_Destroy(sub); });  // late replies may arrive
  natsInbox_Destroy(inbox);
  if (no_responders && replies.empty()) return notFound("no responders on " + subject);
  if (replies.empty()) {
    // Silence because the server refused the request, not because nobody answered.
    if (Status refused = connection.publishRefused(subject, refusal_mark); !refused.isOk()) {
      return refused;
    }
  }
  return replies;
}

}  // namespace hacoord
