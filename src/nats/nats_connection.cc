// NatsConnection: nats.c options, connect with a clear failure, reconnect backoff, orderly close.
#include "nats/nats_connection.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <random>
#include <vector>

#include "core/logging.h"

namespace hacoord {

// Lives as long as nats.c may call back into it: ~NatsConnection waits for the closed callback,
// the last one nats.c sends for a connection, before freeing it.
struct NatsConnection::CallbackState {
  ConnectionEvents events;
  std::string name;
  milliseconds reconnect_wait{};
  milliseconds reconnect_wait_max{};
  std::atomic<bool> closing{false};  // our own close: the owner is not told about it
  std::mutex mutex;
  std::condition_variable cv;
  bool closed_fired = false;
};

namespace {

std::shared_ptr<spdlog::logger> logger() {
  static auto log = moduleLogger("nats");
  return log;
}

std::string joinServers(const std::vector<std::string>& servers) {
  std::string out;
  for (const auto& s : servers) {
    if (!out.empty()) out += ",";
    out += s;
  }
  return out;
}

using State = NatsConnection::CallbackState;

void onDisconnected(natsConnection*, void* closure) {
  auto* state = static_cast<State*>(closure);
  if (state->closing) return;
  logger()->warn("{}: disconnected from NATS, reconnecting", state->name);
  if (state->events.onDisconnected) state->events.onDisconnected();
}

void onReconnected(natsConnection* nc, void* closure) {
  auto* state = static_cast<State*>(closure);
  if (state->closing) return;
  char url[256] = {0};
  natsConnection_GetConnectedUrl(nc, url, sizeof(url));
  logger()->info("{}: reconnected to NATS at {}", state->name, url);
  if (state->events.onReconnected) state->events.onReconnected();
}

void onClosed(natsConnection*, void* closure) {
  auto* state = static_cast<State*>(closure);
  if (!state->closing) {
    logger()->error("{}: NATS connection closed for good", state->name);
    if (state->events.onClosed) state->events.onClosed();
  }
  std::lock_guard lock(state->mutex);
  state->closed_fired = true;
  state->cv.notify_all();
}

void onAsyncError(natsConnection*, natsSubscription* sub, natsStatus err, void* closure) {
  auto* state = static_cast<State*>(closure);
  const char* subject = sub != nullptr ? natsSubscription_GetSubject(sub) : nullptr;
  logger()->warn("{}: NATS async error on {}: {}", state->name, subject ? subject : "connection",
                 natsStatus_GetText(err));
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

std::string natsErrorText(natsStatus status) {
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
        return invalidArgument("nats.tls.ca: cannot load '" + config.tls.ca +
                               "': " + natsErrorText(s));
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
    if (s == NATS_PROTOCOL_ERROR && config.tls.enabled()) {
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
  logger()->info("{}: connected to NATS at {}", client_name, url);
  return std::unique_ptr<NatsConnection>(new NatsConnection(
      nc, js, std::move(state), servers_text, config.request_timeout));
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
  // Closed: no message can arrive any more, so what waited for its grace period goes now.
  for (auto& [at, destroy] : retired_) destroy();
  natsConnection_Destroy(nc_);
  if (!fired) {
    // Freeing it now could let a late callback touch freed memory: keep it, and say so.
    logger()->error("{}: NATS closed callback did not arrive within 5 s; leaking its state",
                    state_->name);
    (void)state_.release();
  }
}

void NatsConnection::destroyLater(std::function<void()> destroy) {
  // Far longer than the few instructions of the race, short enough to keep the list small.
  constexpr auto kGrace = std::chrono::seconds(2);
  const auto now = std::chrono::steady_clock::now();
  std::vector<std::function<void()>> due;
  {
    std::lock_guard lock(retired_mutex_);
    while (!retired_.empty() && now - retired_.front().first >= kGrace) {
      due.push_back(std::move(retired_.front().second));
      retired_.pop_front();
    }
    retired_.emplace_back(now, std::move(destroy));
  }
  for (auto& d : due) d();
}

bool NatsConnection::connected() const {
  return natsConnection_Status(nc_) == NATS_CONN_STATUS_CONNECTED;
}

std::string NatsConnection::connectedUrl() const {
  char url[256] = {0};
  if (natsConnection_GetConnectedUrl(nc_, url, sizeof(url)) != NATS_OK) return "";
  return url;
}

}  // namespace hacoord
