// eventually(): bounded polling for tests that wait on real processes and threads (never a fixed sleep).
#pragma once

#include <chrono>
#include <functional>

namespace hacoord::test {

// Polls `cond` every `poll` until it is true or `timeout` has passed; returns the last answer.
// The condition is always checked once more at the deadline, so a slow machine fails late, not
// wrongly. This is the only place in the tests allowed to sleep between polls.
bool eventually(const std::function<bool()>& cond, std::chrono::milliseconds timeout,
                std::chrono::milliseconds poll = std::chrono::milliseconds(10));

}  // namespace hacoord::test

namespace hacoord {
// Also reachable as hacoord::eventually for tests written inside namespace hacoord.
using test::eventually;
}  // namespace hacoord
