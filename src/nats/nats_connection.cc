// NatsConnection: nats.c options, connect with a clear failure, reconnect backoff, orderly close.
#include "nats/nats_connection.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <vector>

#include <nats/nats.h>

#include "core/logging.h"

namespace hacoord {

// Lives as long as nats.c may call back into it: ~NatsConnection waits for the closed callback,
// the last one nats.c sends for a connection, before freeing it.
struct NatsConnection::CallbackState {
  // One request() waiting for its reply: the reply callback, the server's refusals and link
  // drops all land here. Shared with the subscription's callbacks, which may outlive the call.
  struct Waiter {
    std::string subject;
    std::string inbox;  // where the reply goes
    std::mutex mutex;
    std::condition_variable cv;
    bool replied = false;
    bool no_responders = false;
    bool refused = false;        // the server refused to let us publish the request
    bool inbox_refused = false;  // the server refused our subscription to the reply inbox
    bool dropped = false;
    std::string data;
  };
  struct Refusal {
    std::uint64_t seq = 0;
    std::string subject;
  };

  ConnectionEvents events;
  std::string name;
  std::string user;  // for messages: who the server refused
  milliseconds reconnect_wait{};
  milliseconds reconnect_wait_max{};
  std::atomic<bool> closing{false};  // our own close: the owner is not told about it
  // Steady-clock time of the last reconnect (ns since the clock's epoch; 0: none yet).
  std::atomic<std::int64_t> reconnected_at_ns{0};
  std::mutex mutex;
  std::condition_variable cv;
  bool closed_fired = false;

  // Publish refusals and the requests waiting, guarded by requests_mutex. A waiter's own mutex
  // is only ever taken after requests_mutex has been released, never inside it.
  std::mutex requests_mutex;
  std::uint64_t refusal_seq = 0;
  std::deque<Refusal> refusals;  // the latest few, for publishRefused()
  std::vector<std::weak_ptr<Waiter>> waiters;
  std::map<std::string, std::chrono::steady_clock::time_point> refusal_logged;  // per subject
};

namespace {

constinit const ModuleLog kLog("nats");

std::string joinServers(const std::vector<std::string>& servers) {
  std::string out;
  for (const auto& s : servers) {
    if (!out.empty()) out += ",";
    out += redactUrl(s);
  }
  return out;
}

using State = NatsConnection::CallbackState;
using Waiter = State::Waiter;

// How many refusals publishRefused() can look back on: far more than a caller publishes between
// its mark and its check.
constexpr std::size_t kRefusalsKept = 64;
// A subject refused again and again (a lease write every renew interval) is logged once a minute.
constexpr auto kRefusalLogEvery = std::chrono::seconds(60);
// A password is one line; anything longer is not a password file.
constexpr std::size_t kMaxPasswordFileBytes = 4096;
constexpr const char* kAnonymous = "(anonymous)";

std::string permissionDeniedText(const std::string& user, const std::string& subject) {
  return "permission denied: user " + user + " may not publish to " + subject;
}

// Wakes the requests for which `touch` says something happened; returns how many.
int pokeWaiters(State& state, const std::function<bool(Waiter&)>& touch) {
  std::vector<std::shared_ptr<Waiter>> live;
  {
    std::lock_guard lock(state.requests_mutex);
    for (const auto& weak : state.waiters) {
      if (auto w = weak.lock()) live.push_back(std::move(w));
    }
  }
  int woken = 0;
  for (const auto& w : live) {
    bool woke;
    {
      std::lock_guard lock(w->mutex);
      woke = touch(*w);
    }
    if (woke) {
      w->cv.notify_all();
      ++woken;
    }
  }
  return woken;
}

void onDisconnected(natsConnection*, void* closure) {
  auto* state = static_cast<State*>(closure);
  // A request in flight will not get its reply over this link: fail it now, as nats.c's own
  // request does with FailRequestsOnDisconnect.
  (void)pokeWaiters(*state, [](Waiter& w) { return w.dropped = true; });
  if (state->closing) return;
  kLog->warn("{}: disconnected from NATS, reconnecting", state->name);
  if (state->events.onDisconnected) state->events.onDisconnected();
}

void onReconnected(natsConnection* nc, void* closure) {
  auto* state = static_cast<State*>(closure);
  state->reconnected_at_ns = std::chrono::steady_clock::now().time_since_epoch().count();
  if (state->closing) return;
  char url[256] = {0};
  natsConnection_GetConnectedUrl(nc, url, sizeof(url));
  kLog->info("{}: reconnected to NATS at {}", state->name, redactUrl(url));
  if (state->events.onReconnected) state->events.onReconnected();
}

void onClosed(natsConnection*, void* closure) {
  auto* state = static_cast<State*>(closure);
  (void)pokeWaiters(*state, [](Waiter& w) { return w.dropped = true; });
  if (!state->closing) {
    kLog->error("{}: NATS connection closed for good", state->name);
    if (state->events.onClosed) state->events.onClosed();
  }
  std::lock_guard lock(state->mutex);
  state->closed_fired = true;
  state->cv.notify_all();
}

// The subject of a server refusal such as `Permissions Violation for Publish to "a.b"` (nats.c
// strips the -ERR's single quotes); `verb` is "Publish" or "Subscription".
std::optional<std::string> refusedSubject(const std::string& text, const std::string& verb) {
  const std::string prefix = "Permissions Violation for " + verb + " to ";
  auto at = text.find(prefix);
  if (at == std::string::npos) return std::nullopt;
  std::string subject = text.substr(at + prefix.size());
  if (subject.size() >= 2 && subject.front() == '"' && subject.back() == '"') {
    subject = subject.substr(1, subject.size() - 2);
  }
  return subject;
}

// Logs a refusal at error level, but one subject at most once a minute. A refusal that ended a
// request() is only logged at debug level: its caller reports it (the CLI prints it once).
void logRefusal(State& state, const std::string& what, const std::string& subject, bool reported) {
  if (reported) {
    kLog->debug("{}: permission denied: user {} may not {} {}", state.name, state.user, what, subject);
    return;
  }
  const auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard lock(state.requests_mutex);
    auto [it, fresh] = state.refusal_logged.try_emplace(what + " " + subject, now);
    if (!fresh && now - it->second < kRefusalLogEvery) return;
    it->second = now;
  }
  kLog->error(
      "{}: permission denied: user {} may not {} {} (refused by the NATS server; "
      "see docs/security.md)",
      state.name, state.user, what, subject);
}

void onAsyncError(natsConnection* nc, natsSubscription* sub, natsStatus err, void* closure) {
  auto* state = static_cast<State*>(closure);
  if (err == NATS_NOT_PERMITTED) {
    // nats.c keeps the server's text as the connection's last error; the status alone does not
    // say what was refused.
    const char* raw = nullptr;
    natsConnection_GetLastError(nc, &raw);
    const std::string text = raw != nullptr ? raw : "";
    if (auto subject = refusedSubject(text, "Publish")) {
      {
        std::lock_guard lock(state->requests_mutex);
        state->refusals.push_back({++state->refusal_seq, *subject});
        if (state->refusals.size() > kRefusalsKept) state->refusals.pop_front();
      }
      const int reported =
          pokeWaiters(*state, [&](Waiter& w) { return w.subject == *subject && (w.refused = true); });
      logRefusal(*state, "publish to", *subject, reported > 0);
      return;
    }
    if (auto subject = refusedSubject(text, "Subscription")) {
      const int reported =
          pokeWaiters(*state, [&](Waiter& w) { return w.inbox == *subject && (w.inbox_refused = true); });
      logRefusal(*state, "subscribe to", *subject, reported > 0);
      return;
    }
  }
  const char* subject = sub != nullptr ? natsSubscription_GetSubject(sub) : nullptr;
  kLog->warn("{}: NATS async error on {}: {}", state->name, subject ? subject : "connection",
             natsStatus_GetText(err));
}

// The reply subscription of one request(): the holder keeps the waiter alive until nats.c has
// delivered its last message (onReplyComplete), however early request() returned.
using WaiterHolder = std::shared_ptr<Waiter>;

void onReply(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
  Waiter& w = **static_cast<WaiterHolder*>(closure);
  {
    std::lock_guard lock(w.mutex);
    if (!w.replied) {
      w.replied = true;
      w.no_responders = natsMsg_IsNoResponders(msg);
      if (natsMsg_GetData(msg) != nullptr) {
        w.data.assign(natsMsg_GetData(msg), static_cast<std::size_t>(natsMsg_GetDataLength(msg)));
      }
    }
  }
  w.cv.notify_all();
  natsMsg_Destroy(msg);
}

void onReplyComplete(void* closure) { delete static_cast<WaiterHolder*>(closure); }

// The user part of nats://user:password@host:port ("" when there is none).
std::string urlUser(const std::string& url) {
  const auto scheme = url.find("://");
  const std::size_t start = scheme == std::string::npos ? 0 : scheme + 3;
  const auto at = url.rfind('@');
  if (at == std::string::npos || at < start) return "";
  const std::string info = url.substr(start, at - start);
  const auto colon = info.find(':');
  return colon == std::string::npos ? "" : info.substr(0, colon);
}

// Where the refused credentials came from, for the connect error.
std::string credentialsHint(const NatsConfig& config) {
  if (!config.user.empty()) return " (check nats.user and nats.passwordFile)";
  if (!config.credentials.empty()) return " (check nats.credentials)";
  return " (check the user:password in nats.servers)";
}

std::string userLabel(const NatsConfig& config) {
  if (!config.user.empty()) return config.user;
  for (const auto& server : config.servers) {
    if (std::string user = urlUser(server); !user.empty()) return user;
  }
  if (!config.credentials.empty()) return "in " + config.credentials;
  return kAnonymous;
}

// The first line of nats.passwordFile. Like ssh with a private key, refuses a file that group or
// others may access: a password readable by every local account protects nothing.
Result<std::string> readPasswordFile(const std::string& path) {
  const std::string what = "nats.passwordFile: " + path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return invalidArgument(what + ": cannot read: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    return invalidArgument(what + ": cannot read: " + std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return invalidArgument(what + ": not a regular file");
  }
  if ((st.st_mode & 077) != 0) {
    ::close(fd);
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return invalidArgument(what + ": mode " + mode +
                           " lets group or others access the password; it must be readable by "
                           "its owner only (chmod 600 " +
                           path + ")");
  }
  std::string text(kMaxPasswordFileBytes + 1, '\0');
  std::size_t got = 0;
  while (got < text.size()) {
    const ssize_t n = ::read(fd, text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int e = errno;
      ::close(fd);
      explicit_bzero(text.data(), text.size());
      return invalidArgument(what + ": cannot read: " + std::strerror(e));
    }
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  ::close(fd);
  std::string password = text.substr(0, std::min(got, text.find('\n')));
  explicit_bzero(text.data(), text.size());
  if (!password.empty() && password.back() == '\r') password.pop_back();  // written on Windows
  if (got > kMaxPasswordFileBytes && password.size() == got) {
    explicit_bzero(password.data(), password.size());
    return invalidArgument(what + ": first line longer than " + std::to_string(kMaxPasswordFileBytes) +
                           " bytes: not a password file");
  }
  if (password.empty()) return invalidArgument(what + ": the first line is empty: no password");
  return password;
}

// Called by nats.c's reconnect thread after every server in the list failed once. `attempts`
// counts those rounds from 1. Doubling keeps a dead cluster from being hammered; the jitter (up to
// a fifth off) keeps a fleet of nodes from reconnecting in lockstep.
int64_t reconnectDelay(natsConnection*, int attempts, void* closure) {
  auto* state = static_cast<State*>(closure);
  const int64_t base = std::max<int64_t>(1, state->reconnect_wait.count());
  const int64_t cap = std::max<int64_t>(base, state->reconnect_wait_max.count());
  int64_t delay = base;
  for (int i = 1; i < attempts && delay < cap; ++i) delay *= 2;
  delay = std::min(delay, cap);
  thread_local std::minstd_rand rng{std::random_device{}()};
  const int64_t jitter = std::uniform_int_distribution<int64_t>(0, delay / 5)(rng);
  return delay - jitter;
}

// Frees nats.c objects on the error paths of connect().
struct OptionsGuard {
  natsOptions* opts = nullptr;
  ~OptionsGuard() { natsOptions_Destroy(opts); }
};

}  // namespace

std::string redactUrl(const std::string& url) {
  const auto scheme = url.find("://");
  const std::size_t start = scheme == std::string::npos ? 0 : scheme + 3;
  const auto at = url.rfind('@');
  if (at == std::string::npos || at < start) return url;
  const std::string info = url.substr(start, at - start);
  const auto colon = info.find(':');
  const std::string shown = colon == std::string::npos ? "***" : info.substr(0, colon) + ":***";
  return url.substr(0, start) + shown + url.substr(at);
}

std::string natsLibraryVersion() { return nats_GetVersion(); }

void natsLibraryClose(milliseconds wait) { nats_CloseAndWait(wait.count()); }

std::string natsErrorText(int code) {
  const auto status = static_cast<natsStatus>(code);
  std::string out = natsStatus_GetText(status);
  natsStatus last = NATS_OK;
  const char* raw = nats_GetLastError(&last);
  if (raw == nullptr || *raw == '\0' || last != status) return out;
  std::string detail = raw;
  // nats.c prefixes its text with the source location, e.g. "(conn.c:2088): ".
  if (detail.size() > 1 && detail[0] == '(') {
    auto end = detail.find("): ");
    if (end != std::string::npos) detail = detail.substr(end + 3);
  }
  if (detail.empty() || detail == out) return out;
  // Some texts already repeat the status ("SSL Error: ..."): keep only the detail then.
  if (detail.rfind(out, 0) == 0) return detail;
  return out + ": " + detail;
}

NatsConnection::NatsConnection(natsConnection* nc, jsCtx* js, std::unique_ptr<CallbackState> state,
                               std::string servers_text, milliseconds request_timeout)
    : nc_(nc),
      js_(js),
      state_(std::move(state)),
      servers_text_(std::move(servers_text)),
      request_timeout_(request_timeout) {}

Result<std::unique_ptr<NatsConnection>> NatsConnection::connect(const NatsConfig& config,
                                                                const std::string& client_name,
                                                                ConnectionEvents events) {
  if (config.servers.empty()) return invalidArgument("nats.servers: no NATS server configured");
  const std::string servers_text = joinServers(config.servers);

  auto state = std::make_unique<CallbackState>();
  state->events = std::move(events);
  state->name = client_name;
  state->user = userLabel(config);
  state->reconnect_wait = config.reconnect_wait;
  state->reconnect_wait_max = config.reconnect_wait_max;

  OptionsGuard guard;
  natsStatus s = natsOptions_Create(&guard.opts);
  if (s != NATS_OK) return internalError("natsOptions_Create: " + natsErrorText(s));
  natsOptions* opts = guard.opts;

  std::vector<const char*> urls;
  for (const auto& server : config.servers) urls.push_back(server.c_str());
  s = natsOptions_SetServers(opts, urls.data(), static_cast<int>(urls.size()));
  if (s != NATS_OK) {
    return invalidArgument("nats.servers: cannot use '" + servers_text + "': " + natsErrorText(s));
  }

  // Each setter below only fails on a bad argument or out of memory: a failure is a bug.
  auto must = [](natsStatus st, const char* what) -> Status {
    if (st == NATS_OK) return Status::ok();
    return internalError(std::string(what) + ": " + natsErrorText(st));
  };
  for (const Status& st : {
           must(natsOptions_SetName(opts, client_name.c_str()), "natsOptions_SetName"),
           must(natsOptions_SetTimeout(opts, config.connect_timeout.count()), "SetTimeout"),
           must(natsOptions_SetMaxReconnect(opts, -1), "SetMaxReconnect"),
           must(natsOptions_SetCustomReconnectDelay(opts, reconnectDelay, state.get()),
                "SetCustomReconnectDelay"),
           // Lease renewals and health replies must not sit in the flusher for ~1 ms (notes §1.6).
           must(natsOptions_SetSendAsap(opts, true), "SetSendAsap"),
           // A dead server is noticed within ~2-3 s even when no traffic flows.
           must(natsOptions_SetPingInterval(opts, 1000), "SetPingInterval"),
           must(natsOptions_SetMaxPingsOut(opts, 2), "SetMaxPingsOut"),
           // Requests in flight when the link drops fail at once instead of waiting the timeout.
           must(natsOptions_SetFailRequestsOnDisconnect(opts, true), "SetFailRequestsOnDisconnect"),
           must(natsOptions_SetDisconnectedCB(opts, onDisconnected, state.get()), "SetDisconnectedCB"),
           must(natsOptions_SetReconnectedCB(opts, onReconnected, state.get()), "SetReconnectedCB"),
           must(natsOptions_SetClosedCB(opts, onClosed, state.get()), "SetClosedCB"),
           must(natsOptions_SetErrorHandler(opts, onAsyncError, state.get()), "SetErrorHandler"),
       }) {
    if (!st.isOk()) return st;
  }

  if (!config.user.empty() || !config.password_file.empty()) {
    if (config.user.empty()) {
      return invalidArgument("nats.passwordFile: set nats.user too (the user whose password " +
                             config.password_file + " holds)");
    }
    if (config.password_file.empty()) {
      return invalidArgument(
          "nats.user: set nats.passwordFile too (a file holding the password "
          "of " +
          config.user + ")");
    }
    if (!config.credentials.empty()) {
      return invalidArgument("nats.user and nats.credentials: use one of them, not both");
    }
    auto password = readPasswordFile(config.password_file);
    if (!password.isOk()) return password.status();
    s = natsOptions_SetUserInfo(opts, config.user.c_str(), password->c_str());
    explicit_bzero(password->data(), password->size());  // nats.c keeps its own copy
    if (s != NATS_OK) return internalError("natsOptions_SetUserInfo: " + natsErrorText(s));
  }
  if (!config.credentials.empty()) {
    s = natsOptions_SetUserCredentialsFromFiles(opts, config.credentials.c_str(), nullptr);
    if (s != NATS_OK) {
      return invalidArgument("nats.credentials: cannot use '" + config.credentials +
                             "': " + natsErrorText(s));
    }
  }
  if (config.tls.enabled()) {
    s = natsOptions_SetSecure(opts, true);
    if (s != NATS_OK) return internalError("natsOptions_SetSecure: " + natsErrorText(s));
    if (!config.tls.ca.empty()) {
      s = natsOptions_LoadCATrustedCertificates(opts, config.tls.ca.c_str());
      if (s != NATS_OK) {
        return invalidArgument("nats.tls.ca: cannot load '" + config.tls.ca + "': " + natsErrorText(s));
      }
    }
    if (!config.tls.cert.empty()) {
      s = natsOptions_LoadCertificatesChain(opts, config.tls.cert.c_str(), config.tls.key.c_str());
      if (s != NATS_OK) {
        return invalidArgument("nats.tls.cert/key: cannot load '" + config.tls.cert + "' / '" +
                               config.tls.key + "': " + natsErrorText(s));
      }
    }
  }

  natsConnection* nc = nullptr;
  s = natsConnection_Connect(&nc, opts);
  if (s != NATS_OK) {
    std::string reason = natsErrorText(s);
    if (s == NATS_CONNECTION_AUTH_FAILED || s == NATS_NOT_PERMITTED) {
      // nats.c says "Authentication Violation: Authorization Violation": say what to fix.
      const bool anonymous = state->user == kAnonymous;
      reason = anonymous ? "authorization violation: the server requires credentials and none "
                           "were given (set nats.user and nats.passwordFile)"
                         : "authorization violation: the server refused the credentials of user " +
                               state->user + credentialsHint(config);
    } else if (s == NATS_PROTOCOL_ERROR && config.tls.enabled()) {
      // nats.c reports a TLS handshake the server dropped as "Expected 'PONG', got ''" (notes §3.3).
      reason += " (the server may have rejected the TLS client certificate)";
    } else if (s == NATS_SSL_ERROR) {
      reason += " (is nats.tls.ca the CA that signed the server's certificate?)";
    }
    return unavailable("cannot connect to NATS at " + servers_text + ": " + reason);
  }

  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = config.request_timeout.count();
  jsCtx* js = nullptr;
  s = natsConnection_JetStream(&js, nc, &jo);
  if (s != NATS_OK) {
    Status err = internalError("natsConnection_JetStream: " + natsErrorText(s));
    natsConnection_Close(nc);
    natsConnection_Destroy(nc);
    return err;
  }

  char url[256] = {0};
  natsConnection_GetConnectedUrl(nc, url, sizeof(url));
  kLog->info("{}: connected to NATS at {} as {}", client_name, redactUrl(url), state->user);
  return std::unique_ptr<NatsConnection>(
      new NatsConnection(nc, js, std::move(state), servers_text, config.request_timeout));
}

NatsConnection::~NatsConnection() {
  state_->closing = true;
  jsCtx_Destroy(js_);
  natsConnection_Close(nc_);
  // The closed callback runs later on nats.c's async-callback thread and still uses state_.
  bool fired;
  {
    std::unique_lock lock(state_->mutex);
    fired = state_->cv.wait_for(lock, std::chrono::seconds(5), [&] { return state_->closed_fired; });
  }
  // Closed: no message can arrive any more and no consumer is re-created, so what waited for its
  // grace period or for a settled connection goes now (a destroy stops what was not stopped).
  for (auto& [at, destroy] : retired_) destroy();
  for (auto& [stop, destroy] : unstopped_) destroy();
  natsConnection_Destroy(nc_);
  if (!fired) {
    // Freeing it now could let a late callback touch freed memory: keep it, and say so.
    kLog->error("{}: NATS closed callback did not arrive within 5 s; leaking its state", state_->name);
    (void)state_.release();
  }
}

void NatsConnection::destroyLater(std::function<void()> destroy) {
  {
    std::lock_guard lock(retired_mutex_);
    retired_.emplace_back(std::chrono::steady_clock::now(), std::move(destroy));
  }
  collectRetired();
}

void NatsConnection::retire(std::function<void()> stop, std::function<void()> destroy) {
  {
    std::lock_guard lock(retired_mutex_);
    unstopped_.emplace_back(std::move(stop), std::move(destroy));
  }
  collectRetired();
}

bool NatsConnection::settled() const {
  if (!connected()) return false;
  const std::int64_t at = state_->reconnected_at_ns.load();
  if (at == 0) return true;
  // A re-created ordered consumer costs nats.c at most two API calls (delete, create).
  const auto window = 2 * request_timeout_ + milliseconds(1000);
  const auto since = std::chrono::steady_clock::now().time_since_epoch() - std::chrono::nanoseconds(at);
  return since >= window;
}

void NatsConnection::collectRetired() {
  // Far longer than the few instructions of the read-loop race, short enough to keep lists small.
  constexpr auto kGrace = std::chrono::seconds(2);
  const bool can_stop = settled();
  std::vector<std::pair<std::function<void()>, std::function<void()>>> stop_now;
  std::vector<std::function<void()>> due;
  {
    std::lock_guard lock(retired_mutex_);
    if (can_stop) stop_now.swap(unstopped_);
    const auto now = std::chrono::steady_clock::now();
    while (!retired_.empty() && now - retired_.front().first >= kGrace) {
      due.push_back(std::move(retired_.front().second));
      retired_.pop_front();
    }
  }
  for (auto& destroy : due) destroy();
  if (stop_now.empty()) return;
  for (auto& [stop, destroy] : stop_now) stop();
  const auto stopped_at = std::chrono::steady_clock::now();
  std::lock_guard lock(retired_mutex_);
  for (auto& [stop, destroy] : stop_now) retired_.emplace_back(stopped_at, std::move(destroy));
}

bool NatsConnection::connected() const { return natsConnection_Status(nc_) == NATS_CONN_STATUS_CONNECTED; }

std::string NatsConnection::connectedUrl() const {
  char url[256] = {0};
  if (natsConnection_GetConnectedUrl(nc_, url, sizeof(url)) != NATS_OK) return "";
  return redactUrl(url);
}

const std::string& NatsConnection::userName() const { return state_->user; }

std::uint64_t NatsConnection::refusalMark() const {
  std::lock_guard lock(state_->requests_mutex);
  return state_->refusal_seq;
}

Status NatsConnection::refusalLocked(const std::string& subject, std::uint64_t since_mark) const {
  for (const auto& r : state_->refusals) {
    if (r.seq > since_mark && r.subject == subject) {
      return Status(StatusCode::kPermissionDenied, permissionDeniedText(state_->user, subject));
    }
  }
  return Status::ok();
}

Status NatsConnection::publishRefused(const std::string& subject, std::uint64_t since_mark) const {
  std::lock_guard lock(state_->requests_mutex);
  return refusalLocked(subject, since_mark);
}

Result<std::string> NatsConnection::request(const std::string& subject, const std::string& body,
                                            milliseconds timeout) {
  if (!connected()) return unavailable("request on " + subject + ": not connected to NATS");
  natsInbox* inbox = nullptr;
  natsStatus s = natsInbox_Create(&inbox);
  if (s != NATS_OK) return internalError("natsInbox_Create: " + natsErrorText(s));
  auto waiter = std::make_shared<Waiter>();
  waiter->subject = subject;
  waiter->inbox = inbox;
  auto* holder = new WaiterHolder(waiter);
  natsSubscription* sub = nullptr;
  s = natsConnection_Subscribe(&sub, nc_, inbox, onReply, holder);
  if (s != NATS_OK) {
    delete holder;  // no subscription: nats.c will never call back
    natsInbox_Destroy(inbox);
    return unavailable("request on " + subject + ": " + natsErrorText(s));
  }
  if (natsSubscription_SetOnCompleteCB(sub, onReplyComplete, holder) != NATS_OK) {
    (void)holder;  // leaked on purpose: nothing would free it at the right time
  }
  {
    // Registered before the publish, so that a refusal, which can only follow it, finds it.
    std::lock_guard lock(state_->requests_mutex);
    std::erase_if(state_->waiters, [](const std::weak_ptr<Waiter>& w) { return w.expired(); });
    state_->waiters.push_back(waiter);
  }
  s = natsConnection_PublishRequest(nc_, subject.c_str(), inbox, body.data(), static_cast<int>(body.size()));
  Result<std::string> result = internalError("request on " + subject + ": no outcome");
  if (s != NATS_OK) {
    result = unavailable("request on " + subject + ": " + natsErrorText(s));
  } else {
    std::unique_lock lock(waiter->mutex);
    waiter->cv.wait_for(lock, timeout, [&] {
      return waiter->replied || waiter->refused || waiter->inbox_refused || waiter->dropped;
    });
    if (waiter->replied && waiter->no_responders) {
      result = notFound("no responders on " + subject);
    } else if (waiter->replied) {
      result = std::move(waiter->data);
    } else if (waiter->refused) {
      result = Status(StatusCode::kPermissionDenied, permissionDeniedText(state_->user, subject));
    } else if (waiter->inbox_refused) {
      result = Status(StatusCode::kPermissionDenied, "permission denied: user " + state_->user +
                                                         " may not subscribe to " + waiter->inbox +
                                                         ", so no reply on " + subject + " can reach it");
    } else if (waiter->dropped) {
      result = unavailable("request on " + subject + ": the NATS connection dropped before the reply");
    } else {
      result =
          deadlineExceeded("no reply on " + subject + " within " + std::to_string(timeout.count()) + " ms");
    }
  }
  natsSubscription_Unsubscribe(sub);
  destroyLater([sub] { natsSubscription_Destroy(sub); });  // a late reply may still be arriving
  natsInbox_Destroy(inbox);
  return result;
}

}  // namespace hacoord
