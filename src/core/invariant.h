// HACOORD_INVARIANT: a broken invariant is logged with its place and the process aborts.
#pragma once

#include <cstdlib>
#include <string>

#include "core/logging.h"

namespace hacoord::detail {

[[noreturn]] inline void invariantFailed(const char* condition, const char* file, int line,
                                         const std::string& detail) {
  moduleLogger("invariant")
      ->critical("invariant violated at {}:{}: {}{}{}", file, line, condition, detail.empty() ? "" : ": ",
                 detail);
  moduleLogger("invariant")->flush();
  std::abort();
}

}  // namespace hacoord::detail

// HACOORD_INVARIANT(epoch > floor_, "epoch {} floor {}", epoch, floor_): safety conditions that
// must hold whatever the network or the store does. Never compiled out: continuing past a broken
// invariant could give two leaders or a reused fencing token.
#define HACOORD_INVARIANT(condition, ...)                                                                \
  do {                                                                                                   \
    if (!(condition)) {                                                                                  \
      ::hacoord::detail::invariantFailed(#condition, __FILE__, __LINE__, ::fmt::format("" __VA_ARGS__)); \
    }                                                                                                    \
  } while (false)
