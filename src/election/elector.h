// Elector: the lease state machine of DESIGN §3. Pure logic: no I/O, no threads, no wall clock.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "election/epoch_floor.h"
#include "hacoord/clock.h"
#include "hacoord/epoch.h"
#include "hacoord/hooks.h"
#include "hacoord/lease.h"
#include "hacoord/scheduler.h"

namespace hacoord {

struct ElectorConfig {
  std::string node_id;
  std::string incarnation;
  milliseconds lease_ttl{2000};
  milliseconds renew_interval{500};
  milliseconds cooldown{2000};
  milliseconds safety_margin{200};
  bool candidate = true;
  // Seeds the takeover jitter (see Elector::takeoverJitter); the Node derives it from the
  // incarnation, tests pass a fixed value so that runs replay.
  std::uint64_t jitter_seed = 0;
};

// A consistent view for accessors and tests.
struct ElectorSnapshot {
  Role role = Role::kFollower;
  std::string leader;          // "" when vacant / unknown
  Epoch epoch;                 // of the latest record seen (the highest seen when none is there)
  std::uint64_t revision = 0;  // of the latest record seen
  TimePoint valid_until{};     // leader only: local self-fencing deadline
  // Leader only: when a handover gave this node its term (it took over a released lease), on the
  // elector's clock; TimePoint{} when the term began otherwise (an expiry, an empty bucket).
  TimePoint handed_over_at{};
  bool candidate = true;
};

// What the elector tells its owner. Called on the scheduler, in event order.
class ElectorListener {
 public:
  virtual ~ElectorListener() = default;
  // This node leads `epoch` until `valid_until` (on the elector's clock) unless renewed.
  virtual void onBecomeLeader(Epoch epoch, TimePoint valid_until) = 0;
  // `released` must be called once leader-only resources are gone (for a planned handover the lease
  // is released only then; pass false if that could not be confirmed in time: the lease then
  // expires instead). It may be called later, from the scheduler.
  virtual void onLoseLeadership(Epoch epoch, LossReason reason,
                                std::function<void(bool released)> released) = 0;
  virtual void onLeaderChange(const std::string& leader, Epoch epoch) = 0;
  // The snapshot changed (role, leader, epoch, deadline, candidacy): for thread-safe accessors.
  virtual void onSnapshot(const ElectorSnapshot& snapshot) { (void)snapshot; }
  // A renewal was confirmed `latency` after it was sent: the lease now runs until `valid_until`.
  virtual void onRenewed(Epoch epoch, TimePoint valid_until, Duration latency) {
    (void)epoch;
    (void)valid_until;
    (void)latency;
  }
};

// Threading: every method must be called on `scheduler`; the store's callbacks arrive there too.
// Dependencies are injected (clock, scheduler, store, floor, listener), so a test or a simulation
// drives the elector on virtual time. The safety argument is at the top of elector.cc.
class Elector {
 public:
  // A node remembers at most this many compare-and-sets of unknown outcome (see noteInDoubt).
  static constexpr std::size_t kMaxInDoubt = 32;

  // `exchange` may be null (a single node, or a test that does not exercise bucket loss).
  Elector(ElectorConfig config, Clock& clock, Scheduler& scheduler, LeaseStore& store, EpochFloor& floor,
          FloorExchange* exchange, ElectorListener& listener);
  ~Elector();
  Elector(const Elector&) = delete;
  Elector& operator=(const Elector&) = delete;

  // Starts watching and polling the record, and campaigning if a candidate.
  void start();
  // Planned handover if leader, then stops every timer. `done` runs when finished.
  void stop(std::function<void()> done);
  // Planned handover. `done` gets FailedPrecondition if not leader, OK once the record is released
  // (or once release was attempted: a failed release leaves the lease to expire, which is safe).
  // `reason` is what onLoseLeadership is told (kHookFailed when onBecomeLeader failed).
  void stepDown(std::string successor, std::function<void(Status)> done,
                LossReason reason = LossReason::kSteppedDown);
  // Join (true) or leave (false) candidacy. Leaving while leader hands over first.
  void setCandidate(bool candidate);

  ElectorSnapshot snapshot() const;
  // Leader and inside the local deadline, checked against the clock now.
  bool isLeader() const;
  const ElectorConfig& config() const { return config_; }
  // Compare-and-sets of unknown outcome remembered now (tests, metrics).
  std::size_t inDoubtCount() const { return in_doubt_.size(); }

 private:
  enum class State { kIdle, kFollower, kLeader, kReleasing, kStopped };
  struct InDoubtWrite {  // a write whose outcome is unknown (timeout / unavailable)
    Epoch epoch;
    TimePoint sent_at;
    std::uint64_t base_revision;  // the compare-and-set was on this; it can only create base + 1
  };

  // Observation
  void poll();
  void onObserved(const LeaseEntry& entry);
  void raiseFloor(Epoch epoch, milliseconds lease);
  Duration unknownHolderLease() const;
  Duration waitFor(const LeaseEntry& entry) const;
  // Follower
  void evaluate();
  void scheduleEvaluate(TimePoint at);
  void gatherFloors();
  void campaign();
  void onAcquireDone(const LeaseRecord& sent, TimePoint sent_at, std::uint64_t base,
                     Result<std::uint64_t> result);
  void noteInDoubt(Epoch epoch, TimePoint sent_at, std::uint64_t base);
  void clearInDoubt();
  bool mayAdopt(const LeaseEntry& entry) const;
  // Send time of the unanswered write of `epoch` that could have created `revision`, if any.
  std::optional<TimePoint> inDoubtSentAt(Epoch epoch, std::uint64_t revision) const;
  void adopt();
  // Leader
  void becomeLeader(std::uint64_t revision, const LeaseRecord& record, TimePoint sent_at,
                    std::uint64_t generation);
  void scheduleRenew(TimePoint at);
  void renew();
  void onRenewDone(TimePoint sent_at, std::uint64_t base, Result<std::uint64_t> result);
  void reconcileAfterConflict();
  void armDeadline();
  void onDeadline();
  bool deadlinePassed();  // fences (and returns true) when the leader's deadline has passed
  void loseLeadership(LossReason reason);
  void release(LossReason reason, std::string successor, std::function<void(Status)> done);
  void writeRelease(Epoch epoch, std::string successor, std::function<void(Status)> done);
  void finishRelease(const std::function<void(Status)>& done, Status status);
  // The record a release or hand-back writes: no holder, this epoch, optional successor.
  LeaseRecord vacantRecord(Epoch epoch, std::string successor) const;
  // Our own write of `record` was answered with `revision`.
  void noteOwnWrite(std::uint64_t revision, const LeaseRecord& record);
  void runAfterWrite();
  void disown(std::uint64_t revision, Epoch epoch);
  // Helpers
  bool isMine(const LeaseRecord& record) const;
  Epoch recordEpoch() const;
  LeaseRecord recordFor(Epoch epoch) const;
  void announce(const std::string& leader, Epoch epoch);
  void publish();
  Duration retryBackoff() const;
  Duration drawTakeoverJitter();
  // (Re)arms the one-shot timer `id` to run `action` at `at` (at once if that has passed).
  void arm(Scheduler::TimerId& id, TimePoint at, void (Elector::*action)());
  void cancel(Scheduler::TimerId& id);
  void cancelAllTimers();

  ElectorConfig config_;
  Clock& clock_;
  Scheduler& scheduler_;
  LeaseStore& store_;
  EpochFloor& floor_;
  FloorExchange* exchange_;
  ElectorListener& listener_;

  State state_ = State::kIdle;
  bool candidate_;
  LeaseEntry known_;            // latest revision observed
  TimePoint observed_at_{};     // when known_.revision was first observed (local clock)
  TimePoint carried_expiry_{};  // a replaced holder's lease still being waited out
  bool have_observation_ = false;
  std::uint64_t newest_generation_ = 0;  // the newest entry observed (stale reads go back)
  std::uint64_t newest_revision_ = 0;
  Epoch highest_epoch_;           // highest epoch ever seen (or floored): acquires go above it
  Epoch last_led_epoch_;          // epochs this process led only rise
  std::string announced_leader_;  // last leader passed to onLeaderChange
  Epoch announced_epoch_;
  bool read_in_flight_ = false;
  bool gather_in_flight_ = false;
  // True only while evaluate() runs right after a gather: a campaign on a record-less key uses
  // floors gathered a moment before its write, never ones that a wait, a pause or a spell out of
  // candidacy has made old (a node that knew a higher epoch may have come back meanwhile).
  bool just_gathered_ = false;
  bool write_in_flight_ = false;           // at most one write at a time
  TimePoint handed_over_at_{};             // see ElectorSnapshot::handed_over_at
  bool campaign_on_release_ = false;       // the last campaign took over a released (vacant) lease
  std::uint64_t base_generation_ = 0;      // generation of the entry the write in flight is based on
  std::function<void()> after_write_;      // runs once the write in flight completes
  std::function<void()> after_release_;    // stop() requested during a handover
  std::vector<InDoubtWrite> in_doubt_;     // one per (epoch, base); see noteInDoubt
  bool in_doubt_overflow_ = false;         // too many to track: adopt nothing until an answer
  std::uint64_t last_acked_revision_ = 0;  // revision our last answered write created
  TimePoint retry_not_before_{};
  std::mt19937_64 rng_;
  Duration takeover_jitter_{0};  // drawn anew for every observed revision
  TimePoint cooldown_until_{};
  // Leader state
  Epoch leader_epoch_;
  std::uint64_t leader_revision_ = 0;
  TimePoint valid_until_{};  // self-fencing deadline
  ElectorSnapshot published_;
  bool have_published_ = false;
  Scheduler::TimerId poll_timer_ = 0;
  Scheduler::TimerId evaluate_timer_ = 0;
  Scheduler::TimerId renew_timer_ = 0;
  Scheduler::TimerId deadline_timer_ = 0;
  std::shared_ptr<bool> alive_;  // callbacks that outlive the elector see false
};

}  // namespace hacoord
