// An in-memory lease key with compare-and-set, and per-node clients with network faults on demand.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "hacoord/clock.h"
#include "hacoord/lease.h"
#include "hacoord/status.h"
#include "support/fake_scheduler.h"

namespace hacoord::test {

class InMemoryLeaseStore;

// The shared register every node's client talks to: the stand-in for the NATS KV key `leader`.
// Revision 0 = absent; every successful write raises it by exactly one, except that resetBucket()
// starts over at 0 (the bucket deleted and re-created) and doubleAcceptNext() lets one stale
// compare-and-set land anyway (nats-server 2.9 after a stream-leader change). Operator faults put
// a delete marker or an undecodable value on the key. All times are global (SimLoop) times.
//
// Network model of one operation sent by a client at time s (per-client FIFO, like one TCP
// connection):
//   - partitioned at s: the request never leaves; Unavailable at s + opTimeout.
//   - otherwise it reaches the server at a = s + request delay; partitioned at a: lost, Unavailable
//     at s + opTimeout.
//   - at a a write is applied as a CAS against the state at that moment; a read answers with the
//     state as of up to staleReads ago (a replica that lags).
//   - the reply arrives at a + response delay. Partitioned then, dropped (dropResponses), or later
//     than s + opTimeout: the client gets DeadlineExceeded at s + opTimeout, though a write HAS
//     been applied: the dangerous "did my write land?" case.
// Watches: each applied revision reaches each watching client after the watch delay, in order,
// unless that client is partitioned when it is applied (then it never does: the poll must cover).
// Delays are drawn from a seeded std::mt19937_64, so a seed replays exactly.
class LeaseServer {
 public:
  struct HistoryItem {
    TimePoint at;      // global time applied
    LeaseEntry entry;  // the state from then on
  };
  // Every write any client sent, in send order, with its fate (for invariant checks).
  struct WriteLogItem {
    std::string node;
    TimePoint sent_at;
    std::uint64_t expected_revision = 0;
    LeaseRecord record;
    bool reached_server = false;
    TimePoint applied_at{};      // when it reached the server (if it did)
    std::uint64_t revision = 0;  // revision it created; 0 if not applied (CAS lost, lost, failed)
    StatusCode client_saw = StatusCode::kOk;  // what the client was told (kCancelled: not yet)
    bool double_accepted = false;             // a stale compare-and-set applied anyway (doubleAcceptNext)
  };

  explicit LeaseServer(SimLoop& loop, std::uint64_t seed = 1);
  LeaseServer(const LeaseServer&) = delete;
  LeaseServer& operator=(const LeaseServer&) = delete;

  // --- State ---
  const LeaseEntry& current() const { return history_.back().entry; }
  // history()[0] is the absent key at construction.
  const std::vector<HistoryItem>& history() const { return history_; }
  // The state as it was at global time `at`.
  const LeaseEntry& stateAt(TimePoint at) const;
  const std::vector<WriteLogItem>& writeLog() const { return write_log_; }
  // An operator's unconditional write (e.g. a test's starting record). Notifies watchers.
  std::uint64_t put(const LeaseRecord& record);
  // Operator faults on the key itself. Markers and garbage notify watchers like any write.
  std::uint64_t putMarker();
  std::uint64_t putUndecodable();
  // The bucket is deleted and re-created: the key is absent and revisions restart at 1. Watchers
  // hear nothing (a deleted stream's consumers just stop); polls find the empty key.
  void resetBucket();
  // How many times resetBucket() ran (the "generation" of the bucket).
  int resets() const { return resets_; }

  // --- Faults ---
  void partition(const std::string& node, bool partitioned);
  bool isPartitioned(const std::string& node) const { return partitioned_.count(node) != 0; }
  void setRequestDelay(Duration min, Duration max) { request_delay_ = {min, max}; }
  void setResponseDelay(Duration min, Duration max) { response_delay_ = {min, max}; }
  void setWatchDelay(Duration min, Duration max) { watch_delay_ = {min, max}; }
  // How long a client waits for a reply before reporting Unavailable / DeadlineExceeded.
  void setOpTimeout(Duration timeout) { op_timeout_ = timeout; }
  Duration opTimeout() const { return op_timeout_; }
  // Probability that a reply is lost after the operation was applied.
  void setDropResponses(double probability) { drop_responses_ = probability; }
  // Half the reads answer with the state as of a uniformly drawn moment up to `max_staleness` ago
  // (a lagging replica), the other half with the current state.
  void setStaleReads(Duration max_staleness) { stale_reads_ = max_staleness; }
  // The next operation (read or write) of `node` fails with `status` without reaching the server;
  // queued per node, so several calls fail several operations.
  void failNext(const std::string& node, Status status);
  // The next write of `node` is applied but its reply is lost: DeadlineExceeded after opTimeout.
  void dropNextWriteResponse(const std::string& node);
  // The next compare-and-set of `node` that races with the write that just landed on the same base
  // revision is applied anyway (it lands at expected + 2), as nats-server 2.9 can do right after
  // a stream-leader change; the client is told Aborted, as the LeaseStore contract demands.
  void doubleAcceptNext(const std::string& node);
  // Back to a perfect network (zero delays, no loss, no staleness, no partitions, no failNext).
  void healAll();

  std::mt19937_64& rng() { return rng_; }
  SimLoop& loop() const { return loop_; }

 private:
  friend class InMemoryLeaseStore;
  struct DelayRange {
    Duration min{0};
    Duration max{0};
  };

  Duration draw(const DelayRange& range);
  bool chance(double probability);
  // Unconditional; records history, notifies watchers.
  std::uint64_t apply(LeaseEntryKind kind, const LeaseRecord& record);
  void attach(InMemoryLeaseStore* client);
  void detach(InMemoryLeaseStore* client);

  SimLoop& loop_;
  std::mt19937_64 rng_;
  std::vector<HistoryItem> history_;
  std::vector<WriteLogItem> write_log_;
  std::set<std::string> partitioned_;
  std::map<std::string, std::vector<Status>> fail_next_;
  std::map<std::string, int> drop_next_write_;
  std::map<std::string, int> double_accept_next_;
  int resets_ = 0;
  TimePoint last_reset_at_{};
  DelayRange request_delay_;
  DelayRange response_delay_;
  DelayRange watch_delay_;
  Duration op_timeout_ = milliseconds(500);
  double drop_responses_ = 0.0;
  Duration stale_reads_{0};
  std::vector<InMemoryLeaseStore*> clients_;  // attached clients, in attach order
};

// One node's client of the LeaseServer. Every callback runs on the node's FakeScheduler (so a paused
// node gets nothing until it resumes and a crashed one nothing ever), never inline.
// With the server's defaults (zero delays, no faults) a call completes at the same virtual time,
// after the events already queued: simple for unit tests.
class InMemoryLeaseStore : public LeaseStore {
 public:
  InMemoryLeaseStore(LeaseServer& server, FakeScheduler& scheduler, std::string node);
  ~InMemoryLeaseStore() override;
  InMemoryLeaseStore(const InMemoryLeaseStore&) = delete;
  InMemoryLeaseStore& operator=(const InMemoryLeaseStore&) = delete;

  void read(ReadDone done) override;
  void write(const LeaseRecord& record, std::uint64_t expected_revision,
             std::optional<std::uint64_t> expected_generation, WriteDone done) override;
  void watch(WatchFn on_change) override;
  void close() override;

  const std::string& node() const { return node_; }
  bool closed() const { return state_->closed; }
  std::size_t readCount() const { return reads_; }
  std::size_t writeCount() const { return writes_; }

 private:
  friend class LeaseServer;
  // Shared with in-flight deliveries, so a reply that outlives the client finds `closed`.
  struct State {
    bool closed = false;
    LeaseStore::WatchFn on_change;
    bool watching = false;
  };

  // Arrival times, kept rising so one connection stays FIFO.
  TimePoint nextRequestArrival(TimePoint at);
  TimePoint nextResponseArrival(TimePoint at);
  void deliver(TimePoint at, std::function<void()> fn);
  void onApplied(const LeaseEntry& entry, TimePoint at);  // from the server: maybe a watch event

  LeaseServer& server_;
  FakeScheduler& scheduler_;
  std::string node_;
  std::shared_ptr<State> state_;
  TimePoint last_request_arrival_{};
  TimePoint last_response_arrival_{};
  TimePoint last_watch_delivery_{};
  std::size_t reads_ = 0;
  std::size_t writes_ = 0;
};

}  // namespace hacoord::test
