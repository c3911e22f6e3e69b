// Elector: acquire, renew, self-fence, take over and hand over the lease (DESIGN §3).
//
// Safety rests on two clocks never being compared across hosts:
//  - the leader's deadline is `send time of its last write known committed + TTL - margin`;
//  - a follower's takeover timer starts when it *observed* a change of the key, which is later.
// Every write is a compare-and-set on the revision last seen, so stale reads only delay takeover.
//
// The key can also go away or go back (an operator deletes or purges it, the bucket is deleted and
// re-created, a replica lags): any change of the observed entry, a lower revision included, is an
// observation that restarts the takeover timer, and a key that holds no lease record (absent, a
// marker, an undecodable value) means "holder unknown": a full TTL from that observation before
// campaigning, exactly like a record held by someone. A leader that cannot see its record any
// more stops at its own deadline, which comes before that TTL ends.
//
// Epochs only rise: every epoch observed is recorded in the EpochFloor (durably) before the node
// acts on it, and an acquire goes above both the highest epoch seen and the floor, so a re-created
// bucket or a restart of every node never hands out an epoch twice.
#include "election/elector.h"

#include <algorithm>
#include <utility>

#include "core/invariant.h"
#include "core/logging.h"

namespace hacoord {
namespace {

constinit const ModuleLog kLog("election");

bool outcomeUnknown(const Status& s) {
  return s.code() == StatusCode::kDeadlineExceeded || s.code() == StatusCode::kUnavailable;
}

}  // namespace

Elector::Elector(ElectorConfig config, Clock& clock, Scheduler& scheduler, LeaseStore& store,
                 EpochFloor& floor, FloorExchange* exchange, ElectorListener& listener)
    : config_(std::move(config)),
      clock_(clock),
      scheduler_(scheduler),
      store_(store),
      floor_(floor),
      exchange_(exchange),
      listener_(listener),
      candidate_(config_.candidate),
      highest_epoch_(floor.current()),
      rng_(config_.jitter_seed),
      alive_(std::make_shared<bool>(true)) {}

Elector::~Elector() {
  *alive_ = false;
  cancelAllTimers();
}

// ---------------------------------------------------------------------------------------------
// Lifecycle

void Elector::start() {
  if (state_ != State::kIdle) return;
  state_ = State::kFollower;
  kLog->info("node {} starting election (ttl {} ms, renew {} ms, candidate {}, epoch floor {})",
             config_.node_id, config_.lease_ttl.count(), config_.renew_interval.count(), candidate_,
             floor_.current().value());
  store_.watch([this, alive = alive_](const LeaseEntry& entry) {
    if (*alive) onObserved(entry);
  });
  poll();
  publish();
}

void Elector::stop(std::function<void()> done) {
  auto finish = [this, done = std::move(done)] {
    state_ = State::kStopped;
    cancelAllTimers();
    publish();
    if (done) done();
  };
  switch (state_) {
    case State::kLeader:
      release(LossReason::kStopped, "", [finish](Status) { finish(); });
      return;
    case State::kReleasing:
      after_release_ = finish;
      return;
    default:
      finish();
  }
}

void Elector::stepDown(std::string successor, std::function<void(Status)> done, LossReason reason) {
  if (state_ != State::kLeader || !isLeader()) {
    done(failedPrecondition("node " + config_.node_id + " is not the leader"));
    return;
  }
  release(reason, std::move(successor), std::move(done));
}

void Elector::setCandidate(bool candidate) {
  if (candidate_ == candidate) return;
  candidate_ = candidate;
  kLog->info("node {} {} candidacy", config_.node_id, candidate ? "joins" : "leaves");
  if (!candidate && state_ == State::kLeader) {
    release(LossReason::kSteppedDown, "", [](Status) {});
  } else {
    evaluate();
  }
  publish();
}

ElectorSnapshot Elector::snapshot() const {
  ElectorSnapshot s;
  s.role = state_ == State::kLeader    ? Role::kLeader
           : state_ == State::kStopped ? Role::kStopped
                                       : Role::kFollower;
  s.leader = announced_leader_;
  s.epoch = state_ == State::kLeader ? leader_epoch_
            : known_.hasRecord()     ? known_.record.epoch
                                     : highest_epoch_;
  s.revision = known_.revision;
  s.valid_until = state_ == State::kLeader ? valid_until_ : TimePoint{};
  s.handed_over_at = state_ == State::kLeader ? handed_over_at_ : TimePoint{};
  s.candidate = candidate_;
  return s;
}

bool Elector::isLeader() const { return state_ == State::kLeader && clock_.now() < valid_until_; }

// ---------------------------------------------------------------------------------------------
// Observation: watch events and the polling backstop both land here.

void Elector::poll() {
  cancel(poll_timer_);
  if (state_ == State::kStopped || read_in_flight_) return;
  read_in_flight_ = true;
  store_.read([this, alive = alive_](Result<LeaseEntry> result) {
    if (!*alive) return;
    read_in_flight_ = false;
    if (state_ == State::kStopped) return;
    if (result.isOk()) {
      onObserved(*result);
    } else {
      kLog->debug("node {} poll failed: {}", config_.node_id, result.status().toString());
    }
    poll_timer_ = scheduler_.runAfter(config_.renew_interval, [this, alive = alive_] {
      if (*alive) poll();
    });
  });
}

void Elector::onObserved(const LeaseEntry& entry) {
  if (state_ == State::kStopped || state_ == State::kIdle) return;
  if ((state_ == State::kLeader || state_ == State::kReleasing) && entry.revision <= leader_revision_) {
    // A stale read of our own term (or of what came before it), or a key that went away: while
    // our lease runs nobody else may have written, and our next compare-and-set tells the truth.
    return;
  }
  const bool fresh = !have_observation_ || entry != known_;
  if (!fresh) {
    evaluate();  // the same entry again: nothing restarts, but a retry may be due
    return;
  }
  if (have_observation_ && entry.generation != known_.generation) {
    kLog->warn(
        "node {} sees a new generation of the lease bucket (rev {} {}): it was deleted "
        "and re-created; waiting a full TTL from now",
        config_.node_id, entry.revision, leaseEntryKindName(entry.kind));
  } else if (have_observation_ && entry.revision < known_.revision) {
    kLog->debug("node {} saw rev {} after rev {}: a lagging replica or a reordered reply", config_.node_id,
                entry.revision, known_.revision);
  } else if (!entry.hasRecord() && entry.exists()) {
    kLog->warn(
        "node {} found a {} at rev {} instead of a lease record: holder unknown, waiting "
        "a full TTL from now",
        config_.node_id, leaseEntryKindName(entry.kind), entry.revision);
  }
  // A holder whose lease we were still waiting out stays a possible holder until then, even if a
  // write that never saw its record replaced it (nats-server 2.9 can accept a stale compare-and-set).
  const TimePoint now = clock_.now();
  if (have_observation_ && !(known_.hasRecord() && known_.record.vacant())) {
    const TimePoint previous_expiry = observed_at_ + waitFor(known_);
    if (previous_expiry > now) carried_expiry_ = std::max(carried_expiry_, previous_expiry);
  }
  if (entry.hasRecord() && entry.record.vacant()) carried_expiry_ = TimePoint{};
  known_ = entry;
  observed_at_ = now;
  have_observation_ = true;
  if (entry.generation != newest_generation_ || entry.revision > newest_revision_) {
    newest_generation_ = entry.generation;
    newest_revision_ = entry.revision;
  }
  retry_not_before_ = TimePoint{};  // the backoff was for the old entry (e.g. a lost race)
  takeover_jitter_ = drawTakeoverJitter();
  if (entry.hasRecord()) raiseFloor(entry.record.epoch, entry.record.lease);
  kLog->debug("node {} observed rev {} {} holder '{}' epoch {}", config_.node_id, entry.revision,
              leaseEntryKindName(entry.kind), entry.record.holder, entry.record.epoch.value());

  if (state_ == State::kLeader && entry.hasRecord() &&
      !(isMine(entry.record) && entry.record.epoch == leader_epoch_)) {
    kLog->warn("node {} superseded: rev {} held by '{}' epoch {}", config_.node_id, entry.revision,
               entry.record.holder, entry.record.epoch.value());
    loseLeadership(LossReason::kSuperseded);
  }
  // Our own acquire, seen by the watch before its answer came: becomeLeader() announces it after
  // onBecomeLeader, so the hooks never hear "the leader is you" before "you are the leader".
  const bool own_acquire = entry.hasRecord() && isMine(entry.record) &&
                           (write_in_flight_ || inDoubtSentAt(entry.record.epoch, entry.revision));
  if (state_ != State::kLeader && !own_acquire) {
    announce(entry.hasRecord() ? entry.record.holder : "", recordEpoch());
  }
  evaluate();
  publish();
}

// Records `epoch` in the floor when it is above everything seen. A failure is logged; campaign()
// checks the floor again before it sends anything.
void Elector::raiseFloor(Epoch epoch, milliseconds lease) {
  highest_epoch_ = std::max(highest_epoch_, epoch);
  if (epoch <= floor_.current() && lease <= floor_.longestLease()) return;
  if (Status s = floor_.raise(epoch, lease); !s.isOk()) {
    kLog->error(
        "node {} cannot record epoch {} in its state file: {}; it will not campaign "
        "until it can",
        config_.node_id, epoch.value(), s.toString());
  }
}

// How long a holder we cannot see might still hold the lease: our own TTL, or a longer one that
// a record announced (remembered in the floor, so across restarts too).
Duration Elector::unknownHolderLease() const {
  return std::max(Duration(config_.lease_ttl), Duration(floor_.longestLease()));
}

// How long to wait out `entry` from its observation. A record says how long its holder's lease
// is. Without a record the holder is unknown. A record of our own that we cannot adopt (it landed
// on a revision we did not expect: a stale compare-and-set accepted anyway) replaced a write we
// never saw, whose holder is unknown too.
Duration Elector::waitFor(const LeaseEntry& entry) const {
  if (!entry.hasRecord()) return unknownHolderLease();
  const LeaseRecord& rec = entry.record;
  if (!rec.vacant() && isMine(rec) && !mayAdopt(entry)) return unknownHolderLease();
  // Never less than our own TTL: a record that replaced a longer lease we never saw (a stale
  // compare-and-set accepted by nats-server 2.9) must not shorten our wait below our own setting.
  return std::max(Duration(rec.lease), Duration(config_.lease_ttl));
}

// ---------------------------------------------------------------------------------------------
// Follower: decide whether and when to campaign.

void Elector::evaluate() {
  cancel(evaluate_timer_);
  if (state_ != State::kFollower || !have_observation_ || write_in_flight_ || gather_in_flight_) {
    return;
  }
  const TimePoint now = clock_.now();
  const LeaseRecord& rec = known_.record;
  const Duration lease = waitFor(known_);

  if (known_.hasRecord() && isMine(rec) && mayAdopt(known_)) {
    // An acquire whose answer was lost did land: the lease is ours since that write was sent.
    if (candidate_) {
      adopt();
    } else {
      clearInDoubt();
      disown(known_.revision, rec.epoch);
    }
    return;
  }
  if (!candidate_) return;

  TimePoint may_campaign_at = now;
  if (known_.hasRecord() && rec.vacant()) {
    if (!rec.successor.empty() && rec.successor != config_.node_id) {
      may_campaign_at = std::max(may_campaign_at, observed_at_ + config_.renew_interval);
    }
    if (rec.successor != config_.node_id && now < cooldown_until_) {
      // In cooldown: wait it out, unless the lease stays vacant for a whole TTL (lone node).
      may_campaign_at = std::max(may_campaign_at, std::min(cooldown_until_, observed_at_ + lease));
    }
  } else {
    // Held by someone, or holder unknown (no record: even a key that was never written may belong
    // to a bucket re-created a moment ago under a live leader): a whole lease from the observation.
    const TimePoint expiry = std::max(observed_at_ + lease, carried_expiry_);
    if (now < expiry) {
      scheduleEvaluate(expiry);
      return;
    }
    announce("", recordEpoch());
    // Followers that saw the same revision would all write at the same instant. nats-server 2.9
    // can accept several such compare-and-sets after a stream-leader change (the store refuses
    // to lead on them, so nobody leads for a TTL): a small per-node jitter keeps them apart.
    may_campaign_at = std::max(may_campaign_at, expiry + takeover_jitter_);
    if (now < cooldown_until_) {
      may_campaign_at = std::max(may_campaign_at, std::min(cooldown_until_, expiry + lease));
    }
  }
  may_campaign_at = std::max(may_campaign_at, retry_not_before_);
  if (now < may_campaign_at) {
    scheduleEvaluate(may_campaign_at);
    return;
  }
  if (!known_.hasRecord() && exchange_ != nullptr && !just_gathered_) {
    // The key remembers no epoch: go above every floor the other nodes can tell us first, asked
    // right before this campaign.
    gatherFloors();
    return;
  }
  campaign();
}

void Elector::gatherFloors() {
  if (gather_in_flight_) return;
  gather_in_flight_ = true;
  exchange_->gather([this, alive = alive_](Epoch epoch, milliseconds lease) {
    if (!*alive) return;
    gather_in_flight_ = false;
    if (epoch > highest_epoch_) {
      kLog->info("node {} learned epoch {} from another node's state: campaigning above it", config_.node_id,
                 epoch.value());
    }
    raiseFloor(epoch, lease);
    just_gathered_ = true;
    evaluate();
    just_gathered_ = false;
  });
}

void Elector::scheduleEvaluate(TimePoint at) { arm(evaluate_timer_, at, &Elector::evaluate); }

void Elector::campaign() {
  const Epoch highest = std::max(highest_epoch_, floor_.current());
  if (highest.value() >= Epoch::kMax) {
    // Decoders refuse anything above kMax, so this takes a hand-edited state file at the limit.
    kLog->error("node {} cannot campaign: epoch {} leaves no room below the limit {}", config_.node_id,
                highest.value(), Epoch::kMax);
    retry_not_before_ = clock_.now() + config_.lease_ttl;
    scheduleEvaluate(retry_not_before_);
    return;
  }
  const Epoch epoch = highest.next();
  HACOORD_INVARIANT(epoch > highest_epoch_ && epoch > floor_.current() && epoch > last_led_epoch_,
                    "node {} would campaign for epoch {} (highest seen {}, floor {}, last led {})",
                    config_.node_id, epoch.value(), highest_epoch_.value(), floor_.current().value(),
                    last_led_epoch_.value());
  // The epoch is on stable storage before it can be on the wire: after a restart of every node
  // and the loss of the bucket, the next acquire still goes above it.
  if (Status s = floor_.raise(epoch, config_.lease_ttl); !s.isOk()) {
    kLog->error("node {} cannot record epoch {} before campaigning: {}; retrying later", config_.node_id,
                epoch.value(), s.toString());
    retry_not_before_ = clock_.now() + config_.renew_interval;
    scheduleEvaluate(retry_not_before_);
    return;
  }
  highest_epoch_ = epoch;
  campaign_on_release_ = known_.hasRecord() && known_.record.vacant();
  const LeaseRecord record = recordFor(epoch);
  const std::uint64_t base = known_.revision;
  const TimePoint sent_at = clock_.now();
  write_in_flight_ = true;
  base_generation_ = known_.generation;
  kLog->debug("node {} campaigns for epoch {} on rev {}", config_.node_id, epoch.value(), base);
  store_.write(record, base, known_.generation,
               [this, alive = alive_, record, sent_at, base](Result<std::uint64_t> r) {
                 if (*alive) onAcquireDone(record, sent_at, base, std::move(r));
               });
}

void Elector::onAcquireDone(const LeaseRecord& sent, TimePoint sent_at, std::uint64_t base,
                            Result<std::uint64_t> result) {
  write_in_flight_ = false;
  if (state_ != State::kFollower) {
    // Stopped while campaigning: a lease won now is left to expire (safe, never used).
    return;
  }
  if (result.isOk()) {
    clearInDoubt();
    last_acked_revision_ = *result;
    if (known_.hasRecord() && known_.revision > *result && !isMine(known_.record)) {
      // The watch already showed someone else's record above ours (nats-server 2.9 can accept a
      // second compare-and-set on the same revision): our win is superseded before we act on it.
      kLog->warn(
          "node {} won epoch {} at rev {} but rev {} (holder '{}') is already newer: "
          "not leading",
          config_.node_id, sent.epoch.value(), *result, known_.revision, known_.record.holder);
      evaluate();
      return;
    }
    if (!candidate_) {
      disown(*result, sent.epoch);  // candidacy was left while the acquire was in flight
      return;
    }
    becomeLeader(*result, sent, sent_at, base_generation_);
    return;
  }
  const Status& s = result.status();
  if (outcomeUnknown(s)) {
    // The write may still land: remember when it was sent, so a later read can adopt it safely.
    noteInDoubt(sent.epoch, sent_at, base);
    retry_not_before_ = clock_.now() + retryBackoff();
    kLog->info("node {} acquire of epoch {} outcome unknown: {}", config_.node_id, sent.epoch.value(),
               s.toString());
  } else if (s.code() == StatusCode::kAborted) {
    // Someone else wrote: the re-read below shows who. Never loop on a stale revision.
    retry_not_before_ = clock_.now() + retryBackoff();
    kLog->debug("node {} lost the race for epoch {}", config_.node_id, sent.epoch.value());
  } else {
    retry_not_before_ = clock_.now() + retryBackoff();
    kLog->warn("node {} acquire failed: {}", config_.node_id, s.toString());
  }
  poll();  // re-read: never retry a compare-and-set blindly
}

// One entry per (epoch, base revision) with the earliest send time: during a long write outage
// every retry has the same epoch and base, so the list stays as long as the distinct attempts.
// Past kMaxInDoubt distinct attempts the oldest entries would have to go, and a later send time
// could then be adopted for an earlier write: instead nothing is adopted until a write is
// answered (the lease simply expires, which is safe).
void Elector::noteInDoubt(Epoch epoch, TimePoint sent_at, std::uint64_t base) {
  for (auto& w : in_doubt_) {
    if (w.epoch == epoch && w.base_revision == base) {
      w.sent_at = std::min(w.sent_at, sent_at);
      return;
    }
  }
  if (in_doubt_.size() >= kMaxInDoubt) {
    if (!in_doubt_overflow_) {
      kLog->warn("node {} has {} writes of unknown outcome: it will not adopt any of them", config_.node_id,
                 in_doubt_.size());
    }
    in_doubt_overflow_ = true;
    return;
  }
  in_doubt_.push_back({epoch, sent_at, base});
}

void Elector::clearInDoubt() {
  in_doubt_.clear();
  in_doubt_overflow_ = false;
}

bool Elector::mayAdopt(const LeaseEntry& entry) const {
  if (in_doubt_overflow_) return false;
  // A stale read of our unanswered write proves nothing once a newer revision was seen.
  if (entry.generation == newest_generation_ && entry.revision < newest_revision_) return false;
  // Only a revision above our last answered write proves that an unanswered one landed.
  if (entry.revision <= last_acked_revision_) return false;
  const auto sent_at = inDoubtSentAt(entry.record.epoch, entry.revision);
  return sent_at && *sent_at + config_.lease_ttl - config_.safety_margin > clock_.now();
}

// The key is alone in its stream, so a write on base revision b >= 1 can only have created b + 1
// (the store refuses any other outcome, see LeaseStore::write). A create (base 0) lands at the
// stream's last sequence + 1, which is above 1 after a purge: an unanswered create that landed
// there is simply not adoptable here, and the node then waits as for an unknown holder (safe).
// Among several unanswered writes that could have, take the earliest send time: the deadline must
// not start later than the real one.
std::optional<TimePoint> Elector::inDoubtSentAt(Epoch epoch, std::uint64_t revision) const {
  std::optional<TimePoint> earliest;
  for (const auto& w : in_doubt_) {
    if (w.epoch == epoch && w.base_revision + 1 == revision && (!earliest || w.sent_at < *earliest)) {
      earliest = w.sent_at;
    }
  }
  return earliest;
}

void Elector::adopt() {
  const TimePoint sent_at = *inDoubtSentAt(known_.record.epoch, known_.revision);
  kLog->info("node {} adopts rev {} epoch {}: its unanswered acquire landed", config_.node_id,
             known_.revision, known_.record.epoch.value());
  clearInDoubt();
  becomeLeader(known_.revision, known_.record, sent_at, known_.generation);
}

// ---------------------------------------------------------------------------------------------
// Leader

void Elector::becomeLeader(std::uint64_t revision, const LeaseRecord& record, TimePoint sent_at,
                           std::uint64_t generation) {
  const TimePoint valid_until = sent_at + config_.lease_ttl - config_.safety_margin;
  known_ = LeaseEntry::ofRecord(revision, record, generation);
  observed_at_ = clock_.now();
  have_observation_ = true;
  highest_epoch_ = std::max(highest_epoch_, record.epoch);
  if (valid_until <= clock_.now()) {
    // The write took longer than the lease: it is already invalid here. Let it expire.
    kLog->warn("node {} won epoch {} too late to use it; letting it expire", config_.node_id,
               record.epoch.value());
    evaluate();
    return;
  }
  cancel(evaluate_timer_);
  HACOORD_INVARIANT(record.epoch > last_led_epoch_, "node {} would lead epoch {} after having led epoch {}",
                    config_.node_id, record.epoch.value(), last_led_epoch_.value());
  last_led_epoch_ = record.epoch;
  state_ = State::kLeader;
  handed_over_at_ = campaign_on_release_ ? clock_.now() : TimePoint{};
  leader_epoch_ = record.epoch;
  leader_revision_ = revision;
  valid_until_ = valid_until;
  armDeadline();
  scheduleRenew(sent_at + config_.renew_interval);
  kLog->info("node {} became leader: epoch {} rev {}", config_.node_id, record.epoch.value(), revision);
  listener_.onBecomeLeader(leader_epoch_, valid_until_);
  announce(config_.node_id, leader_epoch_);
  publish();
}

void Elector::scheduleRenew(TimePoint at) { arm(renew_timer_, at, &Elector::renew); }

void Elector::renew() {
  if (state_ != State::kLeader) return;
  if (deadlinePassed()) return;
  if (write_in_flight_) {
    scheduleRenew(clock_.now() + retryBackoff());
    return;
  }
  const TimePoint sent_at = clock_.now();
  const std::uint64_t base = leader_revision_;
  write_in_flight_ = true;
  base_generation_ = known_.generation;
  store_.write(recordFor(leader_epoch_), base, base_generation_,
               [this, alive = alive_, sent_at, base](Result<std::uint64_t> r) {
                 if (*alive) onRenewDone(sent_at, base, std::move(r));
               });
}

void Elector::onRenewDone(TimePoint sent_at, std::uint64_t base, Result<std::uint64_t> result) {
  write_in_flight_ = false;
  // A late answer never revives a lease whose deadline has passed here: fence first.
  if (state_ == State::kLeader && deadlinePassed()) {
    runAfterWrite();
    return;
  }
  if (result.isOk()) {
    clearInDoubt();
    last_acked_revision_ = *result;
    if (state_ == State::kLeader || state_ == State::kReleasing) {
      // Also while releasing: the release must compare-and-set on this newest revision.
      leader_revision_ = *result;
      known_ = LeaseEntry::ofRecord(*result, recordFor(leader_epoch_), base_generation_);
      observed_at_ = clock_.now();
    }
    if (state_ == State::kLeader) {
      valid_until_ = std::max(valid_until_, sent_at + config_.lease_ttl - config_.safety_margin);
      armDeadline();
      scheduleRenew(sent_at + config_.renew_interval);
      listener_.onRenewed(leader_epoch_, valid_until_, clock_.now() - sent_at);
      publish();
    }
    runAfterWrite();
    return;
  }
  const Status& s = result.status();
  if (state_ == State::kLeader) {
    if (outcomeUnknown(s)) {
      noteInDoubt(leader_epoch_, sent_at, base);
      kLog->warn("node {} renew of epoch {} outcome unknown ({}); retrying until {} ms left", config_.node_id,
                 leader_epoch_.value(), s.toString(), toMillis(valid_until_ - clock_.now()));
      scheduleRenew(clock_.now() + retryBackoff());
    } else if (s.code() == StatusCode::kAborted) {
      if (!in_doubt_.empty()) {
        reconcileAfterConflict();
      } else {
        kLog->warn("node {} renew lost the compare-and-set: superseded", config_.node_id);
        loseLeadership(LossReason::kSuperseded);
        poll();
      }
    } else {
      kLog->warn("node {} renew failed: {}", config_.node_id, s.toString());
      scheduleRenew(clock_.now() + retryBackoff());
    }
  }
  runAfterWrite();
}

// A renew was refused, but an earlier unanswered renew of ours may be what moved the revision.
void Elector::reconcileAfterConflict() {
  write_in_flight_ = true;  // no other write until we know
  store_.read([this, alive = alive_](Result<LeaseEntry> result) {
    if (!*alive) return;
    write_in_flight_ = false;
    if (state_ != State::kLeader || deadlinePassed()) {
      runAfterWrite();
      return;
    }
    if (result.isOk() && result->hasRecord() && isMine(result->record) &&
        result->record.epoch == leader_epoch_ && result->revision > leader_revision_ &&
        inDoubtSentAt(leader_epoch_, result->revision)) {
      // One of our unanswered renewals landed: the deadline runs from when it was sent.
      const TimePoint sent_at = *inDoubtSentAt(leader_epoch_, result->revision);
      clearInDoubt();
      leader_revision_ = result->revision;
      known_ = *result;
      observed_at_ = clock_.now();
      valid_until_ = std::max(valid_until_, sent_at + config_.lease_ttl - config_.safety_margin);
      armDeadline();
      scheduleRenew(clock_.now());
      listener_.onRenewed(leader_epoch_, valid_until_, clock_.now() - sent_at);
      publish();
    } else if (result.isOk()) {
      loseLeadership(LossReason::kSuperseded);
      onObserved(*result);
    } else {
      scheduleRenew(clock_.now() + retryBackoff());
    }
    runAfterWrite();
  });
}

void Elector::armDeadline() { arm(deadline_timer_, valid_until_, &Elector::onDeadline); }

void Elector::onDeadline() {
  if (state_ != State::kLeader) return;
  if (clock_.now() < valid_until_) {
    armDeadline();
    return;
  }
  deadlinePassed();
}

// Timers due at once after a pause (SIGSTOP) run in due order, so the renew timer can come before
// the deadline timer: every leader action checks the deadline first and fences if it has passed.
bool Elector::deadlinePassed() {
  if (state_ != State::kLeader || clock_.now() < valid_until_) return false;
  kLog->warn("node {} lease deadline passed without a confirmed renewal: self-fencing epoch {}",
             config_.node_id, leader_epoch_.value());
  loseLeadership(LossReason::kLeaseExpired);
  return true;
}

void Elector::loseLeadership(LossReason reason) {
  if (state_ != State::kLeader) return;
  // A lease that ran out by our own clock expired, whatever we learn next: after a freeze
  // (SIGSTOP, a stalled VM) the successor's record may be processed before our deadline timer.
  if (reason == LossReason::kSuperseded && clock_.now() >= valid_until_) {
    reason = LossReason::kLeaseExpired;
  }
  state_ = State::kFollower;
  cancel(renew_timer_);
  cancel(deadline_timer_);
  valid_until_ = TimePoint{};
  clearInDoubt();  // never adopt an old-epoch record after fencing: let it expire instead
  kLog->info("node {} lost leadership of epoch {}: {}", config_.node_id, leader_epoch_.value(),
             lossReasonName(reason));
  listener_.onLoseLeadership(leader_epoch_, reason, [](bool) {});
  announce(known_.hasRecord() && !isMine(known_.record) ? known_.record.holder : "", recordEpoch());
  evaluate();
  publish();
}

// Planned handover: stop acting as leader, let the owner drop leader-only resources (the VIP),
// and only then write the vacant record, compare-and-set on our last revision.
void Elector::release(LossReason reason, std::string successor, std::function<void(Status)> done) {
  state_ = State::kReleasing;
  clearInDoubt();  // a handed-over lease is never adopted back
  cancel(renew_timer_);
  cancel(deadline_timer_);
  const TimePoint deadline = valid_until_;
  valid_until_ = TimePoint{};
  cooldown_until_ = clock_.now() + config_.cooldown;
  const Epoch epoch = leader_epoch_;
  kLog->info("node {} hands over epoch {}{}{}", config_.node_id, epoch.value(),
             successor.empty() ? "" : " to ", successor);
  publish();
  listener_.onLoseLeadership(epoch, reason,
                             [this, alive = alive_, epoch, deadline, successor = std::move(successor),
                              done = std::move(done)](bool released) mutable {
                               if (!*alive) return;
                               if (!released || clock_.now() >= deadline) {
                                 // Leader-only resources may still be live, or our lease already ran out: do
                                 // not release; the lease expires on its own, exactly like a crash.
                                 finishRelease(
                                     done, deadlineExceeded("leadership release was not confirmed in time; "
                                                            "the lease is left to expire"));
                                 return;
                               }
                               writeRelease(epoch, std::move(successor), std::move(done));
                             });
}

void Elector::writeRelease(Epoch epoch, std::string successor, std::function<void(Status)> done) {
  if (write_in_flight_) {
    after_write_ = [this, epoch, successor = std::move(successor), done = std::move(done)]() mutable {
      writeRelease(epoch, std::move(successor), std::move(done));
    };
    return;
  }
  const LeaseRecord vacant = vacantRecord(epoch, std::move(successor));
  write_in_flight_ = true;
  base_generation_ = known_.generation;
  store_.write(vacant, leader_revision_, base_generation_,
               [this, alive = alive_, vacant, done = std::move(done)](Result<std::uint64_t> r) {
                 if (!*alive) return;
                 write_in_flight_ = false;
                 if (r.isOk()) {
                   noteOwnWrite(*r, vacant);
                   kLog->info("node {} released epoch {} at rev {}", config_.node_id, vacant.epoch.value(),
                              *r);
                   finishRelease(done, Status::ok());
                 } else {
                   kLog->warn("node {} release failed ({}); the lease will expire", config_.node_id,
                              r.status().toString());
                   finishRelease(done, r.status());
                 }
               });
}

void Elector::finishRelease(const std::function<void(Status)>& done, Status status) {
  if (state_ == State::kReleasing) state_ = State::kFollower;
  announce(
      known_.hasRecord() && !known_.record.vacant() && !isMine(known_.record) ? known_.record.holder : "",
      recordEpoch());
  publish();
  if (done) done(std::move(status));
  if (after_release_) {
    auto next = std::move(after_release_);
    after_release_ = nullptr;
    next();
    return;
  }
  evaluate();
}

// A lease won that this node no longer wants (not a candidate): hand it back at once, without
// ever acting on it. If this write fails the lease simply expires.
void Elector::disown(std::uint64_t revision, Epoch epoch) {
  const LeaseRecord vacant = vacantRecord(epoch, "");
  kLog->info("node {} is not a candidate: hands back epoch {} at once", config_.node_id, epoch.value());
  write_in_flight_ = true;
  base_generation_ = known_.generation;
  store_.write(vacant, revision, base_generation_, [this, alive = alive_, vacant](Result<std::uint64_t> r) {
    if (!*alive) return;
    write_in_flight_ = false;
    if (r.isOk()) noteOwnWrite(*r, vacant);
    runAfterWrite();
    if (state_ == State::kFollower) poll();
  });
}

LeaseRecord Elector::vacantRecord(Epoch epoch, std::string successor) const {
  LeaseRecord vacant;
  vacant.epoch = epoch;
  vacant.lease = config_.lease_ttl;
  vacant.successor = std::move(successor);
  return vacant;
}

void Elector::noteOwnWrite(std::uint64_t revision, const LeaseRecord& record) {
  last_acked_revision_ = revision;
  // The watch may already have shown a successor's newer record: keep that one.
  if (revision > known_.revision) {
    known_ = LeaseEntry::ofRecord(revision, record, base_generation_);
    observed_at_ = clock_.now();
  }
}

void Elector::runAfterWrite() {
  if (!after_write_ || write_in_flight_) return;
  auto next = std::move(after_write_);
  after_write_ = nullptr;
  next();
}

// ---------------------------------------------------------------------------------------------
// Helpers

// The epoch of the record last observed (0 with none: a marker, an undecodable value, no key).
// Never highest_epoch_: that includes our own acquires that may never have landed.
Epoch Elector::recordEpoch() const { return known_.hasRecord() ? known_.record.epoch : Epoch{}; }

bool Elector::isMine(const LeaseRecord& record) const {
  return record.holder == config_.node_id && record.incarnation == config_.incarnation;
}

LeaseRecord Elector::recordFor(Epoch epoch) const {
  LeaseRecord r;
  r.holder = config_.node_id;
  r.incarnation = config_.incarnation;
  r.epoch = epoch;
  r.lease = config_.lease_ttl;
  return r;
}

void Elector::announce(const std::string& leader, Epoch epoch) {
  // Epochs only rise, so a record of a lower epoch than one already announced is old news: a read
  // from a replica that lags (a follower answering a direct get before it applied the latest
  // write, or a stream leader that just changed). It still counts as an observation (the takeover
  // timer restarts), but onLeaderChange never goes back to a leader the cluster has moved past;
  // "vacant or unknown" keeps the epoch last announced.
  if (epoch < announced_epoch_) {
    if (!leader.empty()) return;
    epoch = announced_epoch_;
  }
  if (leader == announced_leader_ && epoch == announced_epoch_) return;
  announced_leader_ = leader;
  announced_epoch_ = epoch;
  listener_.onLeaderChange(leader, epoch);
}

void Elector::publish() {
  ElectorSnapshot s = snapshot();
  if (s.role == published_.role && s.leader == published_.leader && s.epoch == published_.epoch &&
      s.valid_until == published_.valid_until && s.candidate == published_.candidate && have_published_) {
    return;
  }
  have_published_ = true;
  published_ = s;
  listener_.onSnapshot(s);
}

Duration Elector::retryBackoff() const {
  return std::max(Duration(milliseconds(10)), Duration(config_.renew_interval) / 4);
}

// Up to min(renew / 4, 40 ms): well inside the crash-takeover budget of TTL + 50 ms.
Duration Elector::drawTakeoverJitter() {
  const Duration max = std::min(Duration(config_.renew_interval) / 4, Duration(milliseconds(40)));
  if (max <= Duration::zero()) return Duration::zero();
  std::uniform_int_distribution<Duration::rep> dist(0, max.count());
  return Duration(dist(rng_));
}

void Elector::arm(Scheduler::TimerId& id, TimePoint at, void (Elector::*action)()) {
  cancel(id);
  const Duration delay = std::max(Duration::zero(), at - clock_.now());
  id = scheduler_.runAfter(delay, [this, &id, action, alive = alive_] {
    if (!*alive) return;
    id = 0;
    (this->*action)();
  });
}

void Elector::cancel(Scheduler::TimerId& id) {
  if (id != 0) scheduler_.cancel(id);
  id = 0;
}

void Elector::cancelAllTimers() {
  cancel(poll_timer_);
  cancel(evaluate_timer_);
  cancel(renew_timer_);
  cancel(deadline_timer_);
}

}  // namespace hacoord
