// Epoch: the fencing token. Strictly rising across leaders; one leader per value.
#pragma once

#include <compare>
#include <cstdint>
#include <string>

namespace hacoord {

class Epoch {
 public:
  constexpr Epoch() = default;
  constexpr explicit Epoch(std::uint64_t value) : value_(value) {}
  constexpr std::uint64_t value() const { return value_; }
  // The highest epoch hacoord accepts from a record, a floor reply or a state file (2^62). A value
  // above it is refused as damaged or hostile: an epoch near 2^64 would leave no room to campaign
  // above it. At one election per millisecond it takes 146 million years to reach.
  static constexpr std::uint64_t kMax = std::uint64_t{1} << 62;

  constexpr Epoch next() const { return Epoch(value_ + 1); }
  constexpr bool isZero() const { return value_ == 0; }
  constexpr auto operator<=>(const Epoch&) const = default;
  std::string toString() const { return std::to_string(value_); }

 private:
  std::uint64_t value_ = 0;  // 0 = "no epoch yet"; the first leader gets 1
};

}  // namespace hacoord
