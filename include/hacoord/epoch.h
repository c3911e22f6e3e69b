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
  constexpr Epoch next() const { return Epoch(value_ + 1); }
  constexpr bool isZero() const { return value_ == 0; }
  constexpr auto operator<=>(const Epoch&) const = default;
  std::string toString() const { return std::to_string(value_); }

 private:
  std::uint64_t value_ = 0;  // 0 = "no epoch yet"; the first leader gets 1
};

}  // namespace hacoord
