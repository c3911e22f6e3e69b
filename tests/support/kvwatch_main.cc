// hacoord_test_kvwatch URL BUCKET KEY: prints every revision of one KV key, one flushed line each,
// for the system test's ordering checks (scripts/lab_tools.py `handover` and `order`).
// hacoord_test_kvwatch --delete-bucket URL BUCKET: deletes the bucket once, as `nats kv del` would.
//
//
//   <created_ns> <revision> <op> <src> <value>
//
// created_ns is kvEntry_Created: the server's stamp (ns since the Unix epoch) of the write, taken
// when the server stored it; op is PUT, DEL or PURGE; src is w (watcher) or p (poll); value is the
// raw value ("-" when empty; newlines would be replaced by spaces). Lines starting with '#' are
// notes (connection events, a watcher replaced), stamped with this host's CLOCK_REALTIME in ns.
//
// A watcher thread (kvStore_Watch + kvWatcher_Next: nats.c 3.4.1 has no callback watcher) gives
// every revision in order. It has no heartbeat, so after a nats-server restart, or when the bucket
// is deleted and re-created, it may go silent: a poll thread doing kvStore_Get every kPoll is the
// backstop (a thread of its own, so a read stuck until its timeout never holds up the watcher). A
// revision the poll finds first is printed at once (with the server's stamp, so its time is exact)
// and a watcher that has not delivered it kStaleAfter later is replaced. Each (revision, created)
// pair is printed once. A record overwritten between two polls while the watcher is broken is
// missed; the checks in lab_tools.py see that as a gap in the revisions (the bucket holds only this
// key).
//
// Runs until killed. Test tool only (built with HACOORD_BUILD_TESTS).
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>

#include <nats/nats.h>

namespace {

constexpr std::chrono::milliseconds kPoll{20};
constexpr std::chrono::milliseconds kStaleAfter{300};
constexpr std::int64_t kWatchWaitMs = 100;  // kvWatcher_Next timeout: how often a replace is checked

using Clock = std::chrono::steady_clock;
using EntryId = std::pair<std::uint64_t, std::int64_t>;  // revision, created

std::int64_t wallNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::mutex g_mutex;                  // guards stdout and everything below
std::set<EntryId> g_printed;         // printed once each, whichever thread saw it first
std::set<EntryId> g_watched;         // delivered by the current watcher
std::atomic<bool> g_replace{false};  // the poll thread asks the watch thread for a new watcher

void noteLocked(const std::string& text) {
  std::printf("# %lld %s\n", static_cast<long long>(wallNs()), text.c_str());
  std::fflush(stdout);
}

void note(const std::string& text) {
  std::lock_guard lock(g_mutex);
  noteLocked(text);
}

// Notes a problem once until `ok()` is called (retries every kPoll would flood the log).
class ProblemNote {
 public:
  void problem(const std::string& what) {
    if (what != last_) note(what);
    last_ = what;
  }
  void ok() { last_.clear(); }

 private:
  std::string last_;
};

const char* opName(kvOperation op) {
  switch (op) {
    case kvOp_Put:
      return "PUT";
    case kvOp_Delete:
      return "DEL";
    case kvOp_Purge:
      return "PURGE";
    default:
      return "UNKNOWN";
  }
}

EntryId idOf(kvEntry* e) { return {kvEntry_Revision(e), kvEntry_Created(e)}; }

// Prints `e` unless printed before. Caller holds g_mutex.
void printLocked(kvEntry* e, char src) {
  if (!g_printed.insert(idOf(e)).second) return;
  const char* data = static_cast<const char*>(kvEntry_Value(e));
  std::string value = data == nullptr ? std::string() : std::string(data, kvEntry_ValueLen(e));
  for (char& c : value) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  if (value.empty()) value = "-";
  std::printf("%lld %llu %s %c %s\n", static_cast<long long>(kvEntry_Created(e)),
              static_cast<unsigned long long>(kvEntry_Revision(e)), opName(kvEntry_Operation(e)), src,
              value.c_str());
  std::fflush(stdout);
}

std::string statusText(natsStatus s) {
  const char* last = nats_GetLastError(nullptr);
  return std::string(natsStatus_GetText(s)) +
         (last != nullptr && *last != '\0' ? ": " + std::string(last) : "");
}

void onDisconnected(natsConnection*, void*) { note("disconnected"); }
void onReconnected(natsConnection*, void*) { note("reconnected"); }

// Binds `kv` to the bucket if it is not yet; false (noted) while the bucket is missing.
bool bind(jsCtx* js, const std::string& bucket, kvStore*& kv, ProblemNote& notes) {
  if (kv != nullptr) return true;
  const natsStatus s = js_KeyValue(&kv, js, bucket.c_str());
  if (s != NATS_OK) {
    kv = nullptr;
    notes.problem("bucket " + bucket + ": " + statusText(s));
    return false;
  }
  return true;
}

void watchLoop(jsCtx* js, const std::string& bucket, const std::string& key) {
  kvStore* kv = nullptr;
  kvWatcher* w = nullptr;
  ProblemNote notes;
  for (;;) {
    if (w == nullptr) {
      natsStatus s = NATS_ERR;
      if (bind(js, bucket, kv, notes)) s = kvStore_Watch(&w, kv, key.c_str(), nullptr);
      if (s != NATS_OK) {
        w = nullptr;
        if (kv != nullptr) notes.problem("watch " + bucket + "/" + key + ": " + statusText(s));
        std::this_thread::sleep_for(kPoll);  // retry pace, not a wait for a condition
        continue;
      }
      notes.ok();
      std::lock_guard lock(g_mutex);
      g_watched.clear();
      g_replace = false;
      noteLocked("watching " + bucket + "/" + key);
    }
    kvEntry* e = nullptr;
    const natsStatus s = kvWatcher_Next(&e, w, kWatchWaitMs);
    std::string why;
    if (s == NATS_OK && e != nullptr) {
      std::lock_guard lock(g_mutex);
      g_watched.insert(idOf(e));
      printLocked(e, 'w');
      kvEntry_Destroy(e);
    } else if (s != NATS_OK && s != NATS_TIMEOUT) {
      why = "next: " + statusText(s);
    }
    if (why.empty() && g_replace) {
      why = "it missed a revision the poll read " + std::to_string(kStaleAfter.count()) + " ms before";
    }
    if (!why.empty()) {
      note("watcher replaced: " + why);
      // Never stopped nor freed: nats.c 3.4.1 re-creates an ordered consumer on a thread of its
      // own after a reconnect, and a stop racing that is a use-after-free (the daemon waits for
      // the connection to settle, NatsConnection::retire). This tool lives for one system test
      // and is killed at its end: abandoned watchers cost only their pending messages.
      w = nullptr;
    }
  }
}

void pollLoop(jsCtx* js, const std::string& bucket, const std::string& key) {
  kvStore* kv = nullptr;
  ProblemNote notes;
  // Since when the poll has read revisions the watcher has not delivered (epoch: none).
  Clock::time_point undelivered_since{};
  for (auto next = Clock::now();; next += kPoll) {
    std::this_thread::sleep_until(next);  // the poll's pace
    if (Clock::now() > next + kPoll) next = Clock::now();
    if (!bind(js, bucket, kv, notes)) continue;
    kvEntry* e = nullptr;
    const natsStatus s = kvStore_Get(&e, kv, key.c_str());
    if (s == NATS_NOT_FOUND) {
      notes.ok();
      continue;
    }
    if (s != NATS_OK || e == nullptr) {
      notes.problem("get " + bucket + "/" + key + ": " + statusText(s));
      kvStore_Destroy(kv);  // bind again: the bucket may have been deleted and re-created
      kv = nullptr;
      continue;
    }
    notes.ok();
    const EntryId id = idOf(e);
    std::lock_guard lock(g_mutex);
    printLocked(e, 'p');
    kvEntry_Destroy(e);
    if (g_watched.count(id) != 0) {
      undelivered_since = {};
      continue;
    }
    const auto now = Clock::now();
    if (undelivered_since == Clock::time_point{}) {
      undelivered_since = now;
    } else if (now - undelivered_since >= kStaleAfter) {
      g_replace = true;
      undelivered_since = now;  // ask again only after another kStaleAfter
    }
  }
}

}  // namespace

// `--delete-bucket URL BUCKET`: what an operator's `nats kv del BUCKET` does, once; exit 0 when the
// server deleted it.
int deleteBucket(const char* url, const char* bucket) {
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  natsStatus s = natsConnection_ConnectTo(&nc, url);
  if (s == NATS_OK) s = natsConnection_JetStream(&js, nc, nullptr);
  if (s == NATS_OK) s = js_DeleteKeyValue(js, bucket);
  if (s != NATS_OK) std::fprintf(stderr, "delete bucket %s on %s: %s\n", bucket, url, statusText(s).c_str());
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  return s == NATS_OK ? 0 : 1;
}

int main(int argc, char** argv) {
  if (argc == 4 && std::string(argv[1]) == "--delete-bucket") return deleteBucket(argv[2], argv[3]);
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s URL BUCKET KEY | --delete-bucket URL BUCKET\n", argv[0]);
    return 2;
  }
  const char* url = argv[1];
  const std::string bucket = argv[2];
  const std::string key = argv[3];

  natsOptions* opts = nullptr;
  natsConnection* nc = nullptr;
  natsStatus s = natsOptions_Create(&opts);
  if (s == NATS_OK) s = natsOptions_SetURL(opts, url);
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(opts, -1);
  if (s == NATS_OK) s = natsOptions_SetReconnectWait(opts, 20);
  if (s == NATS_OK) s = natsOptions_SetReconnectJitter(opts, 10, 10);
  if (s == NATS_OK) s = natsOptions_SetTimeout(opts, 1000);
  if (s == NATS_OK) s = natsOptions_SetPingInterval(opts, 1000);
  if (s == NATS_OK) s = natsOptions_SetMaxPingsOut(opts, 2);
  if (s == NATS_OK) s = natsOptions_SetDisconnectedCB(opts, onDisconnected, nullptr);
  if (s == NATS_OK) s = natsOptions_SetReconnectedCB(opts, onReconnected, nullptr);
  // No callback: Connect blocks until a server answers.
  if (s == NATS_OK) s = natsOptions_SetRetryOnFailedConnect(opts, true, nullptr, nullptr);
  if (s == NATS_OK) s = natsConnection_Connect(&nc, opts);
  if (s != NATS_OK) {
    std::fprintf(stderr, "connect %s: %s\n", url, statusText(s).c_str());
    return 1;
  }
  note("connected");

  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = 250;  // a read stuck on a restarting server gives up soon and the poll goes on
  jsCtx* js = nullptr;
  s = natsConnection_JetStream(&js, nc, &jo);
  if (s != NATS_OK) {
    std::fprintf(stderr, "JetStream context: %s\n", statusText(s).c_str());
    return 1;
  }
  std::thread poller([&] { pollLoop(js, bucket, key); });
  watchLoop(js, bucket, key);  // never returns: the process runs until killed
  poller.join();
}
