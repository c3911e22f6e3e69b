// NatsConnection: one nats.c connection (servers, reconnect forever, TLS, credentials) and its JetStream
// context.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "hacoord/clock.h"
#include "hacoord/config.h"
#include "hacoord/status.h"

// nats.c's opaque handles, declared exactly as nats.h declares them: only src/nats/*.cc include
// nats.h, so its names and macros stay out of every other translation unit.
typedef struct __natsConnection natsConnection;
typedef struct __jsCtx jsCtx;

namespace hacoord {

// "<status text>: <nats.c's last error on this thread>" without nats.c's "(file.c:line): " prefix
// and without saying the same thing twice. Call it on the thread whose nats.c call failed.
std::string natsErrorText(int status);  // a natsStatus

// The nats.c version string (for `hacoord version`).
std::string natsLibraryVersion();
// nats.c's library-wide teardown (nats_CloseAndWait): once, at the end of main(), after every
// connection is gone. Waits at most `wait` for nats.c's threads.
void natsLibraryClose(milliseconds wait);

// A server URL safe to print: the password of nats://user:password@host:port becomes "***"
// (nats://user:***@host:port), and so does a token (nats://***@host:port).
std::string redactUrl(const std::string& url);

// Connection state changes. nats.c calls these on its single library-wide async-callback thread,
// which every connection of the process shares: keep them cheap (copy, post to your own
// scheduler) and never block or call back into this connection's close from them.
// They are not called for the close done by ~NatsConnection (the owner knows about that one).
struct ConnectionEvents {
  std::function<void()> onDisconnected;
  std::function<void()> onReconnected;  // e.g. NatsLeaseStore::restartWatch()
  std::function<void()> onClosed;       // only after reconnecting was given up (never, by default)
};

// Library teardown (nats_Close / nats_CloseAndWait) is left to main(): nats.c's threads are
// library-wide, and other connections may still be in use when one NatsConnection goes away.
class NatsConnection {
 public:
  // Connects once to the configured servers (each tried once, with `connect_timeout`). A failure is
  // Unavailable with one line naming the servers and nats.c's reason; it never blocks forever.
  // Once connected, it reconnects forever with a doubling, jittered delay (reconnect_wait up to
  // reconnect_wait_max). Bad TLS or credential files are InvalidArgument naming the file.
  // With nats.user, the password is the first line of nats.passwordFile (trailing newline
  // stripped); the file must be readable by its owner only (as ssh demands of keys): a file group
  // or others may access, an unreadable or an empty one is InvalidArgument naming it. Credentials
  // the server refuses are Unavailable saying "authorization violation" and whose.
  static Result<std::unique_ptr<NatsConnection>> connect(const NatsConfig& config,
                                                         const std::string& client_name,
                                                         ConnectionEvents events = {});
  // Closes and destroys. Everything built on this connection (lease stores, responders) must be
  // gone first.
  ~NatsConnection();
  NatsConnection(const NatsConnection&) = delete;
  NatsConnection& operator=(const NatsConnection&) = delete;

  natsConnection* raw() const { return nc_; }
  // JetStream context whose API calls (and KV writes) wait `request_timeout` for an answer.
  jsCtx* js() const { return js_; }
  // True while the link to a server is up (false while reconnecting).
  bool connected() const;
  // The URL of the server currently connected to (password redacted), or "" when none.
  std::string connectedUrl() const;
  // The configured servers, comma separated, passwords redacted, for error messages.
  const std::string& serversText() const { return servers_text_; }
  // Who this connection authenticates as, for messages: nats.user, the user of a
  // nats://user:password@ URL, the credentials file, or "(anonymous)".
  const std::string& userName() const;

  // One request, one reply, that tells a refusal from silence. The server drops a message whose
  // subject the user may not publish to and says so only asynchronously (-ERR "Permissions
  // Violation for Publish to ..."), so a plain request would wait for its whole timeout:
  // here that refusal ends the wait at once with PermissionDenied "permission denied: user X may
  // not publish to <subject>". Otherwise as a plain request: no responder → NotFound("no
  // responders on <subject>") at once (nobody serves it: an answer, not a transient error); no reply in time
  // → DeadlineExceeded("no reply on <subject> within N ms"); the link drops meanwhile → Unavailable; not
  // connected → Unavailable without waiting.
  Result<std::string> request(const std::string& subject, const std::string& body, milliseconds timeout);

  // For callers that publish by other means (a gather): take a mark before publishing, then ask
  // whether the server refused `subject` since. OK, or PermissionDenied as in request().
  std::uint64_t refusalMark() const;
  Status publishRefused(const std::string& subject, std::uint64_t since_mark) const;
  milliseconds requestTimeout() const { return request_timeout_; }

  // Runs `destroy` (natsSubscription_Destroy of an unsubscribed subscription, kvWatcher_Destroy
  // of a stopped watcher) a grace period from now, or when this connection closes. nats.c 3.4.1
  // has a read-loop race (fixed in nats.c 3.6, pull request 638): it looks a subscription up for
  // an arriving message and locks it without holding a reference, so one freed right after its
  // unsubscribe can crash the process. Kept alive a little longer, it is only seen as closed.
  void destroyLater(std::function<void()> destroy);

  // True while connected and no reconnect happened within the settle window (two request
  // timeouts + 1 s): by then nats.c has re-created every ordered consumer after the reconnect.
  bool settled() const;
  // Retires a subscription nats.c manages on its own (a KV watcher: an ordered consumer). `stop`
  // (kvWatcher_Stop: unsubscribes and deletes the consumer) runs once the connection is settled,
  // `destroy` a grace period after that, as destroyLater. nats.c 3.4.1 re-creates an ordered
  // consumer after a reconnect on a thread of its own, which frees the consumer's name while an
  // unsubscribe running at the same moment still reads it (heap-use-after-free in
  // jsSub_deleteConsumer, seen under ASan when a watcher was replaced right at a reconnect to a
  // server that had lost the stream). Stopping only when settled keeps the two apart. Retired
  // work runs on later calls of retire(), destroyLater() and collectRetired(), and at close.
  // Not covered (nats.c 3.4.1): an ordered consumer is also reset on a detected sequence gap, on
  // the subscription's delivery thread; a stop racing that reset has the same window, far rarer
  // (a gap needs a lost message on a live link). Watchers retired while a connection reconnects
  // again and again within the settle window wait, each with its unread consumer, until it settles
  // or closes.
  void retire(std::function<void()> stop, std::function<void()> destroy);
  // Runs the retired work that is due. Cheap; the lease store's watch thread calls it each round.
  void collectRetired();

  struct CallbackState;  // opaque: what nats.c's callbacks see (defined in the .cc)

 private:
  NatsConnection(natsConnection* nc, jsCtx* js, std::unique_ptr<CallbackState> state,
                 std::string servers_text, milliseconds request_timeout);
  // The refusal of `subject` recorded after `since_mark`; needs state_->requests_mutex held.
  Status refusalLocked(const std::string& subject, std::uint64_t since_mark) const;

  natsConnection* nc_;
  jsCtx* js_;
  std::unique_ptr<CallbackState> state_;  // the closure nats.c's callbacks see
  std::string servers_text_;
  milliseconds request_timeout_;
  std::mutex retired_mutex_;
  std::deque<std::pair<std::chrono::steady_clock::time_point, std::function<void()>>> retired_;
  std::vector<std::pair<std::function<void()>, std::function<void()>>> unstopped_;  // stop, destroy
};

}  // namespace hacoord
