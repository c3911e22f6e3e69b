// Clock: the lease clock every timer and lease deadline is measured on, and the wall clock.
#pragma once

#include <chrono>
#include <cstdint>

namespace hacoord {

using Duration = std::chrono::nanoseconds;
// A point on hacoord's lease clock (see leaseClockNow()). The type says steady_clock because the
// lease clock is steady too (it never jumps when NTP steps the time); its zero is the boot.
using TimePoint = std::chrono::time_point<std::chrono::steady_clock, Duration>;
using std::chrono::milliseconds;

// Never a wall clock: lease deadlines must not move when NTP steps the time.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual TimePoint now() const = 0;
};

// Now on the lease clock: CLOCK_BOOTTIME, which keeps counting while the host is suspended.
// CLOCK_MONOTONIC (std::chrono::steady_clock) stops during a suspend, so a leader suspended for an
// hour would wake up believing its lease still valid. Every deadline hacoord hands out
// (Node::leaseDeadline(), Hooks::onLeaseRenewed) is on this clock: compare with this function,
// never with std::chrono::steady_clock::now().
TimePoint leaseClockNow();

// The production Clock: leaseClockNow().
class LeaseClock final : public Clock {
 public:
  TimePoint now() const override { return leaseClockNow(); }
};

// A wall clock (Unix time). Never used for lease safety; for hybrid logical clocks, logs, ages.
class WallClock {
 public:
  virtual ~WallClock() = default;
  // Milliseconds since the Unix epoch, UTC.
  virtual std::int64_t nowUnixMs() const = 0;
};

// The system's CLOCK_REALTIME.
class SystemWallClock final : public WallClock {
 public:
  std::int64_t nowUnixMs() const override;
};

inline long long toMillis(Duration d) { return std::chrono::duration_cast<milliseconds>(d).count(); }

}  // namespace hacoord
