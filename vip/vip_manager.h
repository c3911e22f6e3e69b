// VipManager: the VIP on one interface: add/remove, GARP/NA, kernel lifetime, reconcile.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "hacoord/clock.h"
#include "hacoord/config.h"
#include "hacoord/epoch.h"
#include "hacoord/scheduler.h"
#include "hacoord/status.h"
#include "vip/garp.h"
#include "vip/netlink_address.h"

namespace hacoord {

// The election timings the kernel lifetime must fit into (ElectionConfig's values).
struct VipTimings {
  milliseconds lease_ttl{2000};
  milliseconds renew_interval{500};
  milliseconds safety_margin{200};
  // How long the optional duplicate probe listens for another host (acquire blocks this long).
  milliseconds duplicate_probe_wait{100};
};

struct VipMetrics {
  std::uint64_t acquires = 0;             // acquire() calls that put the VIP on
  std::uint64_t releases = 0;             // release() calls that completed (VIP off or already absent)
  std::uint64_t extends = 0;              // extend() calls that renewed the kernel lifetime
  std::uint64_t garps_sent = 0;           // ARP frames (a request and a reply per announcement)
  std::uint64_t nas_sent = 0;             // unsolicited neighbour advertisements
  std::uint64_t duplicate_conflicts = 0;  // probes another MAC answered
  std::uint64_t errors = 0;               // failed netlink operations and sends
  bool held = false;                      // acquired and not released: this node means to hold it
  std::uint64_t epoch = 0;                // epoch of the latest VIP act
};

// Margin between the lifetime handed to the kernel and the lease deadline. The kernel checks
// lifetimes with a timer rounded to whole seconds when the rounding costs < HZ/4 (devinet.c
// check_lifetime, addrconf_verify), so an address outlives its lifetime by up to ~0.25 s:
// measured here 1011-1268 ms for a 1 s lifetime over 30 runs. The 100 ms is not enough
// when the election's safety margin is small, so this is 300 ms.
inline constexpr milliseconds kKernelExpirySlack{300};

// Thread-safe: every method may be called from any thread; one mutex serialises them. The daemon
// calls them all from one strand (the VIP's, driven by the elector's events, never behind the
// application's hooks), and the GARP/NA bursts and the periodic refresh run as timers on that same
// scheduler, so acquire, extend, release and reconcile never interleave. Every socket is opened
// in create(), and a socket keeps the network namespace it was created in, so the manager acts in
// create()'s namespace whichever thread calls it later. Calls take well under a few ms (one
// netlink round trip, a few frames), except that with duplicate_check an add also waits
// VipTimings::duplicate_probe_wait.
//
// Epochs: it never holds an epoch at or below the last one it released (a late acquire or
// reconcile of an old term cannot bring the VIP back), and never lets go of a newer epoch for an
// older one (a late release cannot remove a newer term's VIP).
//
// Order (DESIGN §4), which the caller guarantees: on winning, lease first, then acquire(); on
// losing, release() before the lease is released. At start and stop, removeForcibly() takes away a
// VIP left over from an earlier run (or a failed handover). The manager's thread reconciles every
// garp_refresh by itself: held -> re-add if missing (and announce); not held -> remove if present.
class VipManager {
 public:
  // Checks, in order: the address and prefix (InvalidArgument), the interface exists
  // (InvalidArgument naming it) and is Ethernet (FailedPrecondition), CAP_NET_ADMIN by a no-op
  // RTM_SETLINK (PermissionDenied), CAP_NET_RAW by opening the raw sockets (PermissionDenied).
  // Logs the kernel lifetime it chose, or the warning that none fits the timings.
  // `scheduler` runs the bursts and refreshes; `clock` is the lease clock the deadlines are on.
  static Result<std::unique_ptr<VipManager>> create(const VipConfig& config, VipTimings timings,
                                                    Scheduler& scheduler, const Clock& clock);
  ~VipManager();  // cancels its timers (waits for one running now); does NOT remove the VIP
  VipManager(const VipManager&) = delete;
  VipManager& operator=(const VipManager&) = delete;

  // Puts the VIP on for `epoch` (lease won, valid until `valid_until`): optional duplicate probe
  // (AlreadyExists on a conflict, VIP not added), add with NLM_F_EXCL (if already present, its
  // lifetime is replaced), then a GARP/NA burst on the manager's thread and a refresh every
  // garp_refresh while held. Aborted for an epoch older than the latest one seen, or not above
  // the last one released. If the lease leaves less than a whole second of kernel lifetime,
  // returns DeadlineExceeded without adding: the VIP stays "held" and the next extend() or
  // refresh adds it (the caller treats that as success: it leads, the VIP is pending).
  Status acquire(Epoch epoch, TimePoint valid_until);
  // On every confirmed renewal: kernel lifetime L' = min(L, floor((valid_until - now - slack)/1 s))
  // with NLM_F_REPLACE; nothing when L' < 1. Re-adds (and announces) the VIP if it went missing.
  // FailedPrecondition when not held, Aborted for another epoch.
  Status extend(Epoch epoch, TimePoint valid_until);
  // Stops the refresh and deletes the VIP with the configured prefix; absent is OK. Aborted (VIP
  // untouched) when a newer epoch holds it: a late release must not remove a newer term's VIP.
  Status release(Epoch epoch);
  // should_hold=false: remove the VIP if present (and stop holding). should_hold=true: hold it for
  // `epoch` until `valid_until`, re-adding and announcing it if it is missing.
  Status reconcile(bool should_hold, Epoch epoch, TimePoint valid_until);
  // At start and stop: the VIP goes, whatever epoch held it (a failed handover must not leave it
  // up until its kernel lifetime ends after the daemon is gone).
  Status removeForcibly(const char* why);

  // The VIP is on the interface (any prefix; ifindex and address bytes compared): a netlink dump,
  // which waits for an add or remove in progress.
  Result<bool> present() const;
  // For status and metrics readers that must never wait (the HTTP handler on hc-io, the NATS
  // status responder): what the manager last knew, published after each of its operations. The
  // VIP on the interface as the last add, remove, lookup (extend, reconcile, the periodic refresh)
  // or present() found it. Without a kernel lifetime extend() looks at nothing, so an address
  // someone else removed shows as present until the next refresh (vip.garpRefreshMs).
  bool lastSeenPresent() const;
  VipMetrics metrics() const;
  std::string address() const;  // the address without prefix, e.g. "192.0.2.100"
  // The kernel lifetime cap L chosen at create(), or nullopt when the daemon's deadline is all.
  std::optional<std::chrono::seconds> kernelLifetime() const;

  // Pure lifetime arithmetic (unit-tested).
  // L: the largest whole second with L <= lease_ttl - safety_margin - kKernelExpirySlack and
  // L > renew_interval; nullopt if there is none.
  static std::optional<std::chrono::seconds> chooseKernelLifetime(const VipTimings& timings);
  // L' = min(cap, floor((valid_until - now - kKernelExpirySlack) / 1 s)), never negative.
  static std::chrono::seconds lifetimeFor(std::chrono::seconds cap, TimePoint valid_until, TimePoint now);

 private:
  VipManager(VipConfig config, VipTimings timings, vip::IpPrefix address, vip::LinkInfo link,
             std::unique_ptr<vip::NetlinkAddress> netlink, std::unique_ptr<vip::Announcer> announcer,
             std::optional<std::chrono::seconds> lifetime, Scheduler& scheduler, const Clock& clock);

  class Lock;  // holds mutex_ and publishes view_ when it lets go
  void publishLocked() const;

  // Everything below runs with mutex_ held.
  // Probe (if configured), then add or replace; the caller starts the burst. `why` is for logs.
  Status addLocked(Epoch epoch, TimePoint valid_until, const char* why);
  Status removeLocked(const char* why);
  void startBurstLocked(TimePoint now);
  void announceLocked();
  void refreshLocked(TimePoint now);
  Status failLocked(Status status);
  // (Re)arms the one timer for the next burst frame or refresh.
  void armLocked();
  void onTimer();

  const VipConfig config_;
  const VipTimings timings_;
  const vip::IpPrefix address_;
  const std::optional<std::chrono::seconds> lifetime_;  // L

  Scheduler& scheduler_;
  const Clock& clock_;
  struct TimerGuard;  // shared with the timer callbacks: a callback never runs past ~VipManager
  std::shared_ptr<TimerGuard> guard_;
  Scheduler::TimerId timer_ = 0;
  mutable std::mutex mutex_;
  vip::LinkInfo link_;  // MAC refreshed before every add
  std::unique_ptr<vip::NetlinkAddress> netlink_;
  std::unique_ptr<vip::Announcer> announcer_;
  mutable VipMetrics metrics_;
  bool held_ = false;
  Epoch epoch_;
  Epoch released_epoch_;  // the highest epoch released: never held again
  TimePoint valid_until_{};
  int burst_left_ = 0;
  TimePoint next_announce_{};
  TimePoint next_refresh_{};
  bool expired_warned_ = false;
  mutable bool on_interface_ = false;  // as the last netlink operation found it

  struct View {
    VipMetrics metrics;
    bool on_interface = false;
  };
  mutable std::mutex view_mutex_;  // never held across netlink: guards view_
  mutable View view_;
};

}  // namespace hacoord
