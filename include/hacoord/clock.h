// Clock: the steady (monotonic) time source every timer and lease deadline is measured on.
#pragma once

#include <chrono>

namespace hacoord {

using Duration = std::chrono::nanoseconds;
using TimePoint = std::chrono::time_point<std::chrono::steady_clock, Duration>;
using std::chrono::milliseconds;

// Never a wall clock: lease deadlines must not move when NTP steps the time.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual TimePoint now() const = 0;
};

// The process's std::chrono::steady_clock.
class SteadyClock final : public Clock {
 public:
  TimePoint now() const override { return std::chrono::steady_clock::now(); }
};

inline long long toMillis(Duration d) { return std::chrono::duration_cast<milliseconds>(d).count(); }

}  // namespace hacoord
