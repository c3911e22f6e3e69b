// VipManager: the VIP's life on this host, one mutex, GARP bursts on the manager's own thread.
#include "vip/vip_manager.h"

#include <net/if_arp.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

#include "core/logging.h"

namespace hacoord {
namespace {

using std::chrono::seconds;

constinit const ModuleLog kLog("vip");

std::string lifetimeText(std::optional<std::uint32_t> lifetime_s) {
  return lifetime_s ? std::to_string(*lifetime_s) + " s" : std::string("forever");
}

}  // namespace

std::optional<seconds> VipManager::chooseKernelLifetime(const VipTimings& timings) {
  // Longest lifetime that, set at the moment a renewal is sent, still ends (with the kernel's
  // rounding) before the leader's own deadline TTL - margin, hence before any follower may take
  // over at TTL after it observed that write.
  const Duration budget = timings.lease_ttl - timings.safety_margin - kKernelExpirySlack;
  if (budget < seconds(1)) return std::nullopt;
  const seconds lifetime = std::chrono::floor<seconds>(budget);
  // A healthy leader extends every renew interval; a lifetime no longer than that would let the
  // kernel drop the VIP between two renewals.
  if (lifetime <= timings.renew_interval) return std::nullopt;
  return lifetime;
}

seconds VipManager::lifetimeFor(seconds cap, TimePoint valid_until, TimePoint now) {
  const Duration remaining = valid_until - now - kKernelExpirySlack;
  if (remaining < seconds(1)) return seconds(0);
  return std::min(cap, std::chrono::floor<seconds>(remaining));
}

Result<std::unique_ptr<VipManager>> VipManager::create(const VipConfig& config, VipTimings timings,
                                                       Scheduler& scheduler, const Clock& clock) {
  if (!config.enabled()) return invalidArgument("vip.address is empty: there is no VIP to manage");
  auto address = vip::parseIpPrefix(config.address, config.netmask);
  if (!address.isOk()) return address.status();
  if (address->prefix_len == 0) {
    // The kernel would add an on-link route for 0.0.0.0/0 (or ::/0) beside the default route.
    return invalidArgument("vip.netmask 0 would make the VIP's subnet route a default route");
  }
  if (config.interface.empty()) return invalidArgument("vip.interface is required");
  if (config.garp_count < 0 || config.garp_interval.count() <= 0 || config.garp_refresh.count() <= 0) {
    return invalidArgument("vip.garpCount must be >= 0 and vip.garpIntervalMs, vip.garpRefreshMs > 0");
  }
  if (timings.lease_ttl.count() <= 0 || timings.renew_interval.count() <= 0 ||
      timings.safety_margin.count() < 0 || timings.duplicate_probe_wait.count() <= 0) {
    return invalidArgument("VIP timings must be positive");
  }

  auto netlink = vip::NetlinkAddress::open();
  if (!netlink.isOk()) return netlink.status();
  auto link = (*netlink)->link(config.interface);
  if (!link.isOk()) {
    if (link.status().code() == StatusCode::kNotFound) {
      return invalidArgument("vip.interface '" + config.interface +
                             "': no such interface in this network namespace");
    }
    return link.status();
  }
  if (link->arp_type != ARPHRD_ETHER) {
    return failedPrecondition("vip.interface '" + config.interface +
                              "' is not an Ethernet interface (ARPHRD " + std::to_string(link->arp_type) +
                              "): gratuitous ARP and NA need one");
  }
  // Permissions now, so a missing capability fails the start and not the first failover.
  if (Status s = (*netlink)->checkAdminPermission(link->ifindex); !s.isOk()) {
    if (s.code() == StatusCode::kPermissionDenied) {
      return Status(StatusCode::kPermissionDenied, "CAP_NET_ADMIN missing: cannot change addresses on " +
                                                       config.interface + " (" + s.message() + ")");
    }
    return s;
  }
  auto announcer = vip::Announcer::open(*link, address->family);
  if (!announcer.isOk()) {
    if (announcer.status().code() == StatusCode::kPermissionDenied) {
      return Status(StatusCode::kPermissionDenied, "CAP_NET_RAW missing: cannot open raw sockets on " +
                                                       config.interface + " (" +
                                                       announcer.status().message() + ")");
    }
    return announcer.status();
  }

  const auto lifetime = chooseKernelLifetime(timings);
  if (lifetime) {
    kLog->info(
        "VIP {} on {}: kernel lifetime {} s, extended on every renewal (lease TTL {} ms, "
        "renew {} ms, margin {} ms): the kernel removes the VIP if this daemon freezes or dies",
        address->toString(), config.interface, lifetime->count(), timings.lease_ttl.count(),
        timings.renew_interval.count(), timings.safety_margin.count());
  } else {
    kLog->warn(
        "VIP {} on {}: no whole-second kernel lifetime fits (need renew {} ms < L <= TTL {} ms "
        "- margin {} ms - {} ms kernel slack); the VIP is added without one and only this "
        "daemon's own deadline removes it (a frozen or killed daemon leaves it in place)",
        address->toString(), config.interface, timings.renew_interval.count(), timings.lease_ttl.count(),
        timings.safety_margin.count(), kKernelExpirySlack.count());
  }
  if (address->family == AF_INET && address->prefix_len < 32) {
    kLog->warn(
        "VIP {}: shorter than /32 it becomes a secondary address when {} already has an "
        "address in that subnet, and deleting that primary deletes the VIP too unless "
        "net.ipv4.conf.{}.promote_secondaries=1",
        address->toString(), config.interface, config.interface);
  }
  if (!link->up) {
    kLog->warn("interface {} is down: the VIP can be added, but announcements fail until it is up",
               config.interface);
  }
  if (config.duplicate_check) {
    kLog->info("VIP {}: duplicate check on ({} probe, {} ms) before every add", address->addressText(),
               address->family == AF_INET ? "ARP" : "DAD neighbour solicitation",
               timings.duplicate_probe_wait.count());
  }
  return std::unique_ptr<VipManager>(new VipManager(config, timings, *address, *link, std::move(*netlink),
                                                    std::move(*announcer), lifetime, scheduler, clock));
}

struct VipManager::TimerGuard {
  std::mutex mutex;
  bool alive = true;
};

class VipManager::Lock {
 public:
  explicit Lock(const VipManager& manager) : manager_(manager), lock_(manager.mutex_) {}
  ~Lock() { manager_.publishLocked(); }  // before lock_ lets go
  Lock(const Lock&) = delete;
  Lock& operator=(const Lock&) = delete;

 private:
  const VipManager& manager_;
  std::lock_guard<std::mutex> lock_;
};

void VipManager::publishLocked() const {
  std::lock_guard lock(view_mutex_);
  view_.metrics = metrics_;
  view_.metrics.held = held_;
  view_.on_interface = on_interface_;
}

bool VipManager::lastSeenPresent() const {
  std::lock_guard lock(view_mutex_);
  return view_.on_interface;
}

VipManager::VipManager(VipConfig config, VipTimings timings, vip::IpPrefix address, vip::LinkInfo link,
                       std::unique_ptr<vip::NetlinkAddress> netlink,
                       std::unique_ptr<vip::Announcer> announcer, std::optional<seconds> lifetime,
                       Scheduler& scheduler, const Clock& clock)
    : config_(std::move(config)),
      timings_(timings),
      address_(address),
      lifetime_(lifetime),
      scheduler_(scheduler),
      clock_(clock),
      guard_(std::make_shared<TimerGuard>()),
      link_(std::move(link)),
      netlink_(std::move(netlink)),
      announcer_(std::move(announcer)) {
  // The first reconcile is the owner's removeForcibly() at start; the timer's follow.
  Lock lock(*this);
  next_refresh_ = clock_.now() + config_.garp_refresh;
  armLocked();
}

VipManager::~VipManager() {
  {
    std::lock_guard guard(guard_->mutex);  // waits for a timer callback running now
    guard_->alive = false;
  }
  scheduler_.cancel(timer_);
}

void VipManager::armLocked() {
  scheduler_.cancel(timer_);
  const bool bursting = held_ && burst_left_ > 0;
  const TimePoint at = bursting ? next_announce_ : next_refresh_;
  const Duration delay = std::max(Duration::zero(), at - clock_.now());
  timer_ = scheduler_.runAfter(delay, [this, guard = guard_] {
    std::lock_guard alive(guard->mutex);
    if (guard->alive) onTimer();
  });
}

Status VipManager::failLocked(Status status) {
  ++metrics_.errors;
  kLog->error("VIP {} on {}: {} (epoch {})", address_.toString(), config_.interface, status.toString(),
              epoch_.value());
  return status;
}

Status VipManager::addLocked(Epoch epoch, TimePoint valid_until, const char* why) {
  if (clock_.now() >= valid_until) {
    return failedPrecondition("the lease has already ended: VIP " + address_.addressText() + " not added");
  }
  // The MAC may have changed and the interface may be gone or recreated since create().
  auto link = netlink_->link(config_.interface);
  if (!link.isOk())
    return failLocked(failedPrecondition("interface " + config_.interface + ": " + link.status().message()));
  if (link->ifindex != link_.ifindex) {
    return failLocked(failedPrecondition("interface " + config_.interface + " was recreated (ifindex " +
                                         std::to_string(link_.ifindex) + " -> " +
                                         std::to_string(link->ifindex) + "): restart to use it"));
  }
  link_ = *link;

  if (config_.duplicate_check) {
    auto conflict = announcer_->probe(link_.mac, address_, timings_.duplicate_probe_wait);
    if (!conflict.isOk()) return failLocked(conflict.status());
    if (*conflict) {
      ++metrics_.duplicate_conflicts;
      ++metrics_.errors;
      std::string message = "VIP " + address_.addressText() + " is answered by " +
                            vip::formatMac(**conflict) + " on " + config_.interface +
                            ": another host holds it; not added (epoch " + epoch.toString() + ")";
      kLog->error("{}", message);
      return Status(StatusCode::kAlreadyExists, message);
    }
  }

  // After the probe: the lifetime counts from the moment the kernel gets it.
  const TimePoint now = clock_.now();
  std::optional<std::uint32_t> lifetime_s;
  if (lifetime_) {
    const seconds lifetime = lifetimeFor(*lifetime_, valid_until, now);
    if (lifetime < seconds(1)) {
      // A lifetime of 1 s would outlive the lease; adding without one would let a frozen daemon
      // keep the VIP. The next extend() (after the next renewal) adds it.
      std::string message = "lease valid for only " + std::to_string(toMillis(valid_until - now)) +
                            " ms: less than 1 s of kernel lifetime + " +
                            std::to_string(kKernelExpirySlack.count()) + " ms; VIP " +
                            address_.addressText() + " not added yet (epoch " + epoch.toString() + ")";
      kLog->warn("{}", message);
      return deadlineExceeded(message);
    }
    lifetime_s = static_cast<std::uint32_t>(lifetime.count());
  }
  Status s = netlink_->add(link_.ifindex, address_, lifetime_s);
  if (s.code() == StatusCode::kAlreadyExists) {
    // Already here (left over, or re-acquired): take it over with a lifetime for this lease.
    s = netlink_->replace(link_.ifindex, address_, lifetime_s);
  }
  if (!s.isOk()) return failLocked(s);
  on_interface_ = true;
  kLog->info("VIP {} on {} {} (epoch {}, kernel lifetime {})", address_.toString(), config_.interface, why,
             epoch.value(), lifetimeText(lifetime_s));
  return Status::ok();
}

Status VipManager::removeLocked(const char* why) {
  // The delete must name the prefix the address has. The configured one is the normal case; an
  // address left with another prefix (an earlier config, an operator) is found and deleted too.
  vip::IpPrefix target = address_;
  bool removed = false;
  for (int attempt = 0; attempt < 4; ++attempt) {
    Status s = netlink_->remove(link_.ifindex, target);
    if (s.isOk()) {
      removed = true;
    } else if (s.code() != StatusCode::kNotFound) {
      return failLocked(s);
    }
    auto found = netlink_->find(link_.ifindex, address_);
    if (!found.isOk()) return failLocked(found.status());
    if (!*found) {
      on_interface_ = false;
      if (removed) {
        kLog->info("VIP {} on {} {} (epoch {})", address_.toString(), config_.interface, why, epoch_.value());
      }
      return Status::ok();
    }
    kLog->warn("VIP {} on {} is present as /{} (configured /{}): deleting it with that prefix",
               address_.addressText(), config_.interface, (*found)->prefix_len, address_.prefix_len);
    target.prefix_len = (*found)->prefix_len;
  }
  return failLocked(internalError("VIP " + address_.addressText() + " still present after 4 deletes"));
}

void VipManager::startBurstLocked(TimePoint now) {
  burst_left_ = config_.garp_count;
  next_announce_ = now;
  if (burst_left_ == 0) next_refresh_ = now + config_.garp_refresh;
  expired_warned_ = false;
  armLocked();
}

void VipManager::announceLocked() {
  Status failed;
  if (address_.family == AF_INET) {
    // Both forms: some stacks only learn from requests, others from replies (notes §6).
    for (std::uint16_t op : {vip::kArpRequest, vip::kArpReply}) {
      Status s = announcer_->sendGratuitousArp(link_.mac, address_.v4(), op);
      if (s.isOk()) {
        ++metrics_.garps_sent;
      } else {
        failed = s;
      }
    }
  } else {
    vip::Ipv6Bytes ip;
    std::memcpy(ip.data(), address_.bytes.data(), ip.size());
    Status s = announcer_->sendUnsolicitedNa(link_.mac, ip);
    if (s.isOk()) {
      ++metrics_.nas_sent;
    } else {
      failed = s;
    }
  }
  if (!failed.isOk()) {
    ++metrics_.errors;
    kLog->warn("VIP {} on {}: announcement failed: {} (epoch {})", address_.addressText(), config_.interface,
               failed.toString(), epoch_.value());
  }
}

void VipManager::refreshLocked(TimePoint now) {
  if (!held_) {
    // Reconcile for a node that does not lead: a VIP here (an operator, an earlier run, a failed
    // release) would answer beside the leader's.
    auto found = netlink_->find(link_.ifindex, address_);
    if (!found.isOk()) {
      (void)failLocked(found.status());  // logged and counted; the next refresh tries again
      return;
    }
    on_interface_ = found->has_value();
    if (*found) {
      kLog->warn("VIP {} is on {} but not held here (epoch {}): removing", address_.addressText(),
                 config_.interface, epoch_.value());
      (void)removeLocked("removed by refresh");  // a failure is logged and counted inside
    }
    return;
  }
  if (now >= valid_until_) {
    // The owner neither extended nor released: announcing or re-adding now could claim a VIP
    // that another node may already hold. The owner's deadline (and the kernel lifetime) decide.
    if (!expired_warned_) {
      kLog->warn("VIP {}: lease deadline passed without extend() or release(); not announcing (epoch {})",
                 address_.addressText(), epoch_.value());
      expired_warned_ = true;
    }
    return;
  }
  auto found = netlink_->find(link_.ifindex, address_);
  if (!found.isOk()) {
    (void)failLocked(found.status());  // logged and counted; the next refresh tries again
    return;
  }
  on_interface_ = found->has_value();
  if (!*found) {
    kLog->warn("VIP {} went missing while held (epoch {}): re-adding", address_.addressText(),
               epoch_.value());
    if (addLocked(epoch_, valid_until_, "re-added by refresh").isOk()) startBurstLocked(now);
    return;
  }
  announceLocked();
}

// The one timer: a burst frame when one is due, else the periodic refresh (the reconcile).
void VipManager::onTimer() {
  Lock lock(*this);
  const TimePoint now = clock_.now();
  const bool bursting = held_ && burst_left_ > 0;
  if (bursting && now >= next_announce_) {
    if (now < valid_until_) announceLocked();
    --burst_left_;
    next_announce_ = now + config_.garp_interval;
    if (burst_left_ == 0) next_refresh_ = now + config_.garp_refresh;
  } else if (!bursting && now >= next_refresh_) {
    // No refresh during a burst: the burst already announces, and it ends with a fresh schedule.
    next_refresh_ = now + config_.garp_refresh;  // a re-add below restarts the burst instead
    refreshLocked(now);
  }
  armLocked();
}

Status VipManager::acquire(Epoch epoch, TimePoint valid_until) {
  Lock lock(*this);
  if (epoch < epoch_ || epoch <= released_epoch_) {
    return aborted("acquire for epoch " + epoch.toString() + " after epoch " +
                   std::max(epoch_, released_epoch_).toString() + ": stale");
  }
  epoch_ = epoch;
  metrics_.epoch = epoch.value();
  Status s = addLocked(epoch, valid_until, "acquired");
  // DeadlineExceeded: not added yet, but this node leads; extend() or the refresh adds it.
  held_ = s.isOk() || s.code() == StatusCode::kDeadlineExceeded;
  metrics_.held = held_;
  if (held_) valid_until_ = valid_until;
  if (s.isOk()) {
    ++metrics_.acquires;
    startBurstLocked(clock_.now());
  } else if (held_) {
    burst_left_ = 0;  // nothing to announce yet; extend() adds the VIP and starts the burst
  }
  return s;
}

Status VipManager::extend(Epoch epoch, TimePoint valid_until) {
  Lock lock(*this);
  if (!held_) return failedPrecondition("extend: VIP " + address_.addressText() + " is not held");
  if (epoch != epoch_) {
    return aborted("extend for epoch " + epoch.toString() + " but the VIP is held for epoch " +
                   epoch_.toString());
  }
  valid_until_ = std::max(valid_until_, valid_until);
  expired_warned_ = false;
  if (!lifetime_) return Status::ok();  // no kernel lifetime: nothing in the kernel to renew
  if (lifetimeFor(*lifetime_, valid_until_, clock_.now()) < seconds(1)) {
    // Nothing to do, and still safe: the lifetime now in the kernel was set at an earlier t0 as
    // L0 <= valid_until0 - t0 - slack, so the kernel removes the VIP by valid_until0 (the slack
    // covers its rounding), and valid_until0 <= valid_until, which is the leader's own deadline
    // TTL - margin after its last committed write was sent. A follower may take over only a
    // whole TTL after it observed that write, so the VIP is gone first. Setting a whole second
    // now would end after valid_until instead.
    return Status::ok();
  }
  auto found = netlink_->find(link_.ifindex, address_);
  if (!found.isOk()) return failLocked(found.status());
  on_interface_ = found->has_value();
  if (!*found) {
    // Expired (a renewal came late) or deleted by someone: this node still leads, so put it back.
    kLog->warn("VIP {} missing at renewal (epoch {}): re-adding", address_.addressText(), epoch.value());
    Status s = addLocked(epoch, valid_until_, "re-added at renewal");
    if (s.isOk()) startBurstLocked(clock_.now());
    return s;
  }
  // The lifetime counts from the moment the kernel gets it: read the clock after the dump.
  const seconds lifetime = lifetimeFor(*lifetime_, valid_until_, clock_.now());
  if (lifetime < seconds(1)) return Status::ok();
  Status s = netlink_->replace(link_.ifindex, address_, static_cast<std::uint32_t>(lifetime.count()));
  if (!s.isOk()) return failLocked(s);
  ++metrics_.extends;
  kLog->debug("VIP {} lifetime extended to {} s (epoch {})", address_.addressText(), lifetime.count(),
              epoch.value());
  return Status::ok();
}

Status VipManager::release(Epoch epoch) {
  Lock lock(*this);
  if (held_ && epoch < epoch_) {
    return aborted("release for epoch " + epoch.toString() + " but the VIP is held for epoch " +
                   epoch_.toString() + ": left in place");
  }
  held_ = false;
  metrics_.held = false;
  burst_left_ = 0;
  if (epoch > epoch_) epoch_ = epoch;
  released_epoch_ = std::max(released_epoch_, epoch);
  metrics_.epoch = epoch.value();
  Status s = removeLocked("released");
  if (s.isOk()) ++metrics_.releases;
  return s;
}

Status VipManager::removeForcibly(const char* why) {
  Lock lock(*this);
  held_ = false;
  metrics_.held = false;
  burst_left_ = 0;
  released_epoch_ = std::max(released_epoch_, epoch_);
  return removeLocked(why);
}

Status VipManager::reconcile(bool should_hold, Epoch epoch, TimePoint valid_until) {
  Lock lock(*this);
  const TimePoint now = clock_.now();
  if (held_ && epoch < epoch_) {
    return aborted("reconcile for epoch " + epoch.toString() + " but the VIP is held for epoch " +
                   epoch_.toString());
  }
  auto found = netlink_->find(link_.ifindex, address_);
  if (!found.isOk()) return failLocked(found.status());
  on_interface_ = found->has_value();

  if (!should_hold) {
    held_ = false;
    metrics_.held = false;
    burst_left_ = 0;
    if (epoch > epoch_) epoch_ = epoch;
    if (!*found) return Status::ok();
    metrics_.epoch = epoch.value();
    kLog->warn("VIP {} is on {} but this node does not lead (epoch {}): removing", address_.addressText(),
               config_.interface, epoch.value());
    return removeLocked("removed by reconcile");
  }

  if (now >= valid_until) return failedPrecondition("reconcile: the lease has already ended");
  if (epoch <= released_epoch_) {
    return aborted("reconcile for epoch " + epoch.toString() + ", which was already released");
  }
  const bool same_term = held_ && epoch == epoch_;
  epoch_ = epoch;
  metrics_.epoch = epoch.value();
  valid_until_ = same_term ? std::max(valid_until_, valid_until) : valid_until;
  if (!*found) {
    if (same_term) {
      kLog->warn("VIP {} went missing while held (epoch {}): re-adding", address_.addressText(),
                 epoch.value());
    }
    Status s = addLocked(epoch, valid_until_, same_term ? "re-added by reconcile" : "added by reconcile");
    held_ = s.isOk() || s.code() == StatusCode::kDeadlineExceeded;
    metrics_.held = held_;
    if (s.isOk()) startBurstLocked(now);
    return s;
  }
  if (!same_term) {
    // Present but not (or no longer) ours in this process: adopt it with this lease's lifetime and
    // announce, since neighbours may still point at the host that had it before.
    std::optional<std::uint32_t> lifetime_s;
    if (lifetime_) {
      const seconds lifetime = lifetimeFor(*lifetime_, valid_until_, now);
      if (lifetime >= seconds(1)) lifetime_s = static_cast<std::uint32_t>(lifetime.count());
    }
    // With too little lease left for a whole second, leave the lifetime to the next extend().
    if (!lifetime_ || lifetime_s) {
      if (Status s = netlink_->replace(link_.ifindex, address_, lifetime_s); !s.isOk()) {
        return failLocked(s);
      }
    }
    held_ = true;
    metrics_.held = true;
    kLog->info("VIP {} on {} adopted by reconcile (epoch {}, kernel lifetime {})", address_.toString(),
               config_.interface, epoch.value(), lifetimeText(lifetime_s));
    startBurstLocked(now);
  }
  return Status::ok();
}

Result<bool> VipManager::present() const {
  Lock lock(*this);
  auto found = netlink_->find(link_.ifindex, address_);
  if (!found.isOk()) {
    ++metrics_.errors;
    return found.status();
  }
  on_interface_ = found->has_value();
  return found->has_value();
}

VipMetrics VipManager::metrics() const {
  std::lock_guard lock(view_mutex_);
  return view_.metrics;
}

std::string VipManager::address() const { return address_.addressText(); }

std::optional<seconds> VipManager::kernelLifetime() const { return lifetime_; }

}  // namespace hacoord
