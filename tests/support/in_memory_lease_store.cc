// LeaseServer and InMemoryLeaseStore: a CAS register on virtual time with partitions, delays and loss.
#include "support/in_memory_lease_store.h"

#include <algorithm>
#include <utility>

namespace hacoord::test {

// ---------------------------------------------------------------------------------------------
// LeaseServer

LeaseServer::LeaseServer(SimLoop& loop, std::uint64_t seed) : loop_(loop), rng_(seed) {
  history_.push_back(HistoryItem{loop.now(), LeaseEntry{}});
}

const LeaseEntry& LeaseServer::stateAt(TimePoint at) const {
  // Last item applied at or before `at`; history_[0] predates every read.
  auto it = std::upper_bound(history_.begin(), history_.end(), at,
                             [](TimePoint t, const HistoryItem& item) { return t < item.at; });
  if (it == history_.begin()) return history_.front().entry;
  return std::prev(it)->entry;
}

std::uint64_t LeaseServer::put(const LeaseRecord& record) { return apply(LeaseEntryKind::kRecord, record); }

std::uint64_t LeaseServer::putMarker() { return apply(LeaseEntryKind::kMarker, {}); }

std::uint64_t LeaseServer::putUndecodable() { return apply(LeaseEntryKind::kUndecodable, {}); }

void LeaseServer::resetBucket() {
  ++resets_;
  last_reset_at_ = loop_.now();
  LeaseEntry empty;
  empty.generation = static_cast<std::uint64_t>(resets_);
  history_.push_back(HistoryItem{loop_.now(), empty});
}

void LeaseServer::doubleAcceptNext(const std::string& node) { ++double_accept_next_[node]; }

std::uint64_t LeaseServer::apply(LeaseEntryKind kind, const LeaseRecord& record) {
  LeaseEntry entry{current().revision + 1, kind == LeaseEntryKind::kRecord ? record : LeaseRecord{}, kind,
                   static_cast<std::uint64_t>(resets_)};
  history_.push_back(HistoryItem{loop_.now(), entry});
  // Copy: a watch callback never runs inline, but attach/detach could in principle happen here.
  const std::vector<InMemoryLeaseStore*> clients = clients_;
  for (InMemoryLeaseStore* client : clients) client->onApplied(entry, loop_.now());
  return entry.revision;
}

void LeaseServer::partition(const std::string& node, bool partitioned) {
  if (partitioned) {
    partitioned_.insert(node);
  } else {
    partitioned_.erase(node);
  }
}

void LeaseServer::failNext(const std::string& node, Status status) {
  fail_next_[node].push_back(std::move(status));
}

void LeaseServer::dropNextWriteResponse(const std::string& node) { ++drop_next_write_[node]; }

void LeaseServer::healAll() {
  partitioned_.clear();
  fail_next_.clear();
  drop_next_write_.clear();
  double_accept_next_.clear();
  request_delay_ = {};
  response_delay_ = {};
  watch_delay_ = {};
  drop_responses_ = 0.0;
  stale_reads_ = Duration::zero();
}

Duration LeaseServer::draw(const DelayRange& range) {
  if (range.max <= range.min) return range.min;
  std::uniform_int_distribution<std::int64_t> dist(range.min.count(), range.max.count());
  return Duration(dist(rng_));
}

bool LeaseServer::chance(double probability) {
  if (probability <= 0.0) return false;
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng_) < probability;
}

void LeaseServer::attach(InMemoryLeaseStore* client) { clients_.push_back(client); }

void LeaseServer::detach(InMemoryLeaseStore* client) {
  clients_.erase(std::remove(clients_.begin(), clients_.end(), client), clients_.end());
}

// ---------------------------------------------------------------------------------------------
// InMemoryLeaseStore

InMemoryLeaseStore::InMemoryLeaseStore(LeaseServer& server, FakeScheduler& scheduler, std::string node)
    : server_(server), scheduler_(scheduler), node_(std::move(node)), state_(std::make_shared<State>()) {
  server_.attach(this);
}

InMemoryLeaseStore::~InMemoryLeaseStore() {
  close();
  server_.detach(this);
}

void InMemoryLeaseStore::close() {
  state_->closed = true;
  state_->watching = false;
  state_->on_change = nullptr;
}

TimePoint InMemoryLeaseStore::nextRequestArrival(TimePoint at) {
  last_request_arrival_ = std::max(at, last_request_arrival_);
  return last_request_arrival_;
}

TimePoint InMemoryLeaseStore::nextResponseArrival(TimePoint at) {
  last_response_arrival_ = std::max(at, last_response_arrival_);
  return last_response_arrival_;
}

void InMemoryLeaseStore::deliver(TimePoint at, std::function<void()> fn) {
  std::shared_ptr<State> state = state_;
  scheduler_.runAtGlobal(at, [state, fn = std::move(fn)] {
    if (!state->closed) fn();
  });
}

void InMemoryLeaseStore::read(ReadDone done) {
  ++reads_;
  if (state_->closed) return;
  SimLoop& loop = server_.loop();
  const TimePoint sent = loop.now();
  const TimePoint give_up = sent + server_.opTimeout();
  auto& failures = server_.fail_next_[node_];
  if (!failures.empty()) {
    Status status = std::move(failures.front());
    failures.erase(failures.begin());
    deliver(sent, [done, status] { done(status); });
    return;
  }
  if (server_.isPartitioned(node_)) {
    deliver(give_up, [done] { done(unavailable("partitioned: no connection to the server")); });
    return;
  }
  const TimePoint arrival = nextRequestArrival(sent + server_.draw(server_.request_delay_));
  std::shared_ptr<State> state = state_;
  LeaseServer* server = &server_;
  // The client may be destroyed while the request travels: the server side keeps only `state`.
  loop.schedule(arrival, [this, state, server, done, give_up] {
    if (state->closed) return;
    if (server->isPartitioned(node_)) {
      deliver(give_up, [done] { done(unavailable("partitioned: request lost")); });
      return;
    }
    LeaseEntry entry = server->current();
    // Half the reads hit an up-to-date replica; the rest one lagging by up to stale_reads_.
    if (server->stale_reads_ > Duration::zero() && server->chance(0.5)) {
      const Duration lag = server->draw(LeaseServer::DelayRange{Duration::zero(), server->stale_reads_});
      // A lagging replica of the current stream: a deleted stream's replicas serve nothing, so
      // the lag never reaches back past the last re-creation of the bucket.
      entry = server->stateAt(std::max(server->loop().now() - lag, server->last_reset_at_));
    }
    const TimePoint reply_at =
        nextResponseArrival(server->loop().now() + server->draw(server->response_delay_));
    if (reply_at > give_up || server->chance(server->drop_responses_)) {
      deliver(give_up, [done] { done(deadlineExceeded("read reply lost")); });
      return;
    }
    server->loop().schedule(reply_at, [this, state, server, done, give_up, entry] {
      if (state->closed) return;
      if (server->isPartitioned(node_)) {
        deliver(give_up, [done] { done(deadlineExceeded("partitioned: read reply lost")); });
        return;
      }
      deliver(server->loop().now(), [done, entry] { done(entry); });
    });
  });
}

void InMemoryLeaseStore::write(const LeaseRecord& record, std::uint64_t expected_revision,
                               std::optional<std::uint64_t> expected_generation, WriteDone done) {
  ++writes_;
  if (state_->closed) return;
  SimLoop& loop = server_.loop();
  const TimePoint sent = loop.now();
  const TimePoint give_up = sent + server_.opTimeout();
  const std::size_t log_index = server_.write_log_.size();
  server_.write_log_.push_back(LeaseServer::WriteLogItem{
      node_, sent, expected_revision, record, false, {}, 0, StatusCode::kCancelled});
  LeaseServer* server = &server_;
  // Records what the client is told, then tells it (if it is still there to hear).
  auto answer = [this, server, log_index, done](TimePoint at, Result<std::uint64_t> result) {
    server->write_log_[log_index].client_saw = result.status().code();
    deliver(at, [done, result] { done(result); });
  };

  auto& failures = server_.fail_next_[node_];
  if (!failures.empty()) {
    Status status = std::move(failures.front());
    failures.erase(failures.begin());
    answer(sent, status);
    return;
  }
  if (server_.isPartitioned(node_)) {
    answer(give_up, unavailable("partitioned: no connection to the server"));
    return;
  }
  const TimePoint arrival = nextRequestArrival(sent + server_.draw(server_.request_delay_));
  std::shared_ptr<State> state = state_;
  // The request is on the wire: it lands even if the client crashes or closes meanwhile (kill -9
  // does not recall a packet). Only the reply needs the client.
  loop.schedule(arrival, [this, state, server, log_index, record, expected_revision, expected_generation,
                          give_up, answer] {
    LeaseServer::WriteLogItem& item = server->write_log_[log_index];
    if (server->isPartitioned(item.node)) {
      if (!state->closed) answer(give_up, unavailable("partitioned: request lost"));
      return;
    }
    item.reached_server = true;
    item.applied_at = server->loop().now();
    Result<std::uint64_t> result = aborted("wrong last sequence");
    auto& double_accept = server->double_accept_next_[item.node];
    if (expected_generation && *expected_generation != server->current().generation) {
      result = aborted("the bucket is another generation");
    } else if (server->current().revision == expected_revision) {
      const std::uint64_t revision = server->apply(LeaseEntryKind::kRecord, record);
      server->write_log_[log_index].revision = revision;
      result = revision;
    } else if (double_accept > 0 && server->current().revision == expected_revision + 1) {
      // Only a write that raced with the one that just landed on the same base (what nats-server
      // 2.9 does around a stream-leader change), not any stale write.
      --double_accept;
      const std::uint64_t revision = server->apply(LeaseEntryKind::kRecord, record);
      server->write_log_[log_index].revision = revision;
      server->write_log_[log_index].double_accepted = true;
      result = aborted("landed at revision " + std::to_string(revision) + " instead of " +
                       std::to_string(expected_revision + 1));
    }
    if (state->closed) return;
    const TimePoint reply_at =
        nextResponseArrival(server->loop().now() + server->draw(server->response_delay_));
    auto& drop_next = server->drop_next_write_[node_];
    bool dropped = false;
    if (drop_next > 0) {
      --drop_next;
      dropped = true;
    } else {
      dropped = server->chance(server->drop_responses_);
    }
    if (dropped || reply_at > give_up) {
      answer(give_up, deadlineExceeded("write reply lost"));
      return;
    }
    server->loop().schedule(reply_at, [this, state, server, give_up, answer, result] {
      if (state->closed) return;
      if (server->isPartitioned(node_)) {
        answer(give_up, deadlineExceeded("partitioned: write reply lost"));
        return;
      }
      answer(server->loop().now(), result);
    });
  });
}

void InMemoryLeaseStore::watch(WatchFn on_change) {
  if (state_->closed) return;
  state_->on_change = std::move(on_change);
  state_->watching = true;
  // Like a NATS KV watcher without UpdatesOnly: the current value first, then every update.
  if (server_.current().exists()) onApplied(server_.current(), server_.loop().now());
}

void InMemoryLeaseStore::onApplied(const LeaseEntry& entry, TimePoint at) {
  if (!state_->watching || state_->closed) return;
  if (server_.isPartitioned(node_)) return;  // missed for good: the watch does not replay
  last_watch_delivery_ = std::max(at + server_.draw(server_.watch_delay_), last_watch_delivery_);
  std::shared_ptr<State> state = state_;
  deliver(last_watch_delivery_, [state, entry] {
    if (state->watching && state->on_change) state->on_change(entry);
  });
}

}  // namespace hacoord::test
