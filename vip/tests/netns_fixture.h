// Test support for the VIP system tests: throwaway namespaces, LANs, captures, code inside.
#pragma once

#include "hacoord/clock.h"
#include "hacoord/scheduler.h"
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <future>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <vector>

#include <gtest/gtest.h>

#include "vip/netlink_address.h"

namespace hacoord::vip::test {

using namespace std::chrono_literals;

// "" when this machine can run the system tests (root, and `ip netns add` works); else the reason.
std::string systemTestSkipReason();

// True under HACOORD_REQUIRE_SYSTEM_TESTS=1 (CI sets it): a system test that cannot run is then
// a failure, because a skipped test leaves the suite green without having checked anything.
inline bool systemTestsRequired() {
  const char* value = std::getenv("HACOORD_REQUIRE_SYSTEM_TESTS");
  return value != nullptr && std::string_view(value) == "1";
}

// A binary's exit code when it skipped as a whole (ctest's SKIP_RETURN_CODE, like Automake's).
inline constexpr int kSkippedExitCode = 77;

#define HACOORD_REQUIRE_NETNS()                                                           \
  do {                                                                                    \
    const std::string hacoord_skip_reason = ::hacoord::vip::test::systemTestSkipReason(); \
    if (!hacoord_skip_reason.empty()) {                                                   \
      if (::hacoord::vip::test::systemTestsRequired()) {                                  \
        GTEST_FAIL() << "HACOORD_REQUIRE_SYSTEM_TESTS=1 but " << hacoord_skip_reason;     \
      }                                                                                   \
      GTEST_SKIP() << hacoord_skip_reason;                                                \
    }                                                                                     \
  } while (0)

// Decides for the whole binary before any test runs, so that ctest sees the outcome in the exit
// code alone and never has to read the output (matching "[  SKIPPED ]" there once turned a binary
// with one failed and one skipped test into "skipped"). Missing environment: exit 77 (skipped),
// or a failure under HACOORD_REQUIRE_SYSTEM_TESTS=1. Under that switch, any test that still
// skipped for another reason also fails the binary.
class SystemTestGate : public ::testing::Environment {
 public:
  void SetUp() override {
    const std::string reason = systemTestSkipReason();
    if (reason.empty()) return;
    missing_ = true;
    if (systemTestsRequired()) GTEST_FAIL() << "HACOORD_REQUIRE_SYSTEM_TESTS=1 but " << reason;
    std::printf("%s (the whole binary: exit %d)\n", reason.c_str(), kSkippedExitCode);
    std::fflush(stdout);
    std::exit(kSkippedExitCode);
  }
  void TearDown() override {
    const int skipped = ::testing::UnitTest::GetInstance()->skipped_test_count();
    // missing_: SetUp already failed the binary; gtest then counts every test as skipped.
    if (systemTestsRequired() && !missing_ && skipped > 0) {
      ADD_FAILURE() << "HACOORD_REQUIRE_SYSTEM_TESTS=1 but " << skipped << " test(s) skipped";
    }
  }

 private:
  bool missing_ = false;
};
// Every binary that includes this header registers the gate once (an inline variable).
inline ::testing::Environment* const kSystemTestGate =
    ::testing::AddGlobalTestEnvironment(new SystemTestGate);

struct CommandResult {
  int exit_code = -1;  // -1: did not run or was killed at the timeout
  std::string output;  // stdout and stderr
};
// Runs argv without a shell; kills the child (its own pid, nothing else) after `timeout`.
CommandResult run(const std::vector<std::string>& argv, std::chrono::milliseconds timeout = 10s);
// run(), throwing std::runtime_error with the command and its output when it fails.
std::string runOk(const std::vector<std::string>& argv);

// Moves the calling thread (only it: setns is per thread) into /var/run/netns/<ns>; throws on
// error.
void enterNetns(const std::string& ns);

// The scheduler and clock every VipManager of a test binary runs its timers on (a strand of one
// process-wide runtime, as in the daemon).
Scheduler& vipScheduler();
const Clock& vipClock();

// Runs fn on a fresh thread that first joined the network namespace `ns`, and returns its result
// (exceptions are rethrown here). Why a thread and not a child process: every socket VipManager
// uses is opened in create() and keeps the namespace it was created in, so a manager created on
// that thread can then be driven and inspected from the test thread with ordinary gtest
// assertions; the manager's own thread also starts in that namespace.
template <typename F>
auto inNetns(const std::string& ns, F&& fn) -> std::invoke_result_t<F&> {
  using R = std::invoke_result_t<F&>;
  std::packaged_task<R()> task([&ns, &fn]() -> R {
    enterNetns(ns);
    return fn();
  });
  auto result = task.get_future();
  std::thread thread(std::move(task));
  thread.join();
  return result.get();
}

// Removes `cap` (CAP_*) from the calling thread's effective, permitted and inheritable sets.
// capset is per thread, so only a thread made for it (inNetns) should call this.
void dropCapabilityOnThisThread(int cap);

// Namespaces this test made; all deleted when it goes, also when an assertion failed.
class TestNetwork {
 public:
  TestNetwork();
  ~TestNetwork();
  TestNetwork(const TestNetwork&) = delete;
  TestNetwork& operator=(const TestNetwork&) = delete;

  // "hacoord-vt-<pid>-<n>", with lo up.
  std::string addNamespace();
  // A bridge (own namespace, multicast snooping off) and `hosts` host namespaces with eth0 on it,
  // up, with 192.0.2.(10+i)/24 and 2001:db8::(10+i)/64 (no DAD). Returns the host namespaces.
  std::vector<std::string> addLan(int hosts);
  // `ip -n ns args...`; throws on failure.
  std::string ip(const std::string& ns, const std::vector<std::string>& args);
  // Puts `address` on ns:eth0 as a host address (/32, or /128 without DAD), the way another
  // owner of the VIP would hold it; returns it with that prefix (for a later `addr del`).
  std::string addHostAddress(const std::string& ns, const std::string& address);

 private:
  std::vector<std::string> namespaces_;
};

MacAddress macOf(const std::string& ns, const std::string& ifname);
// The `ip -o addr show dev ifname` line holding address (any prefix), or nullopt.
std::optional<std::string> addressLine(const std::string& ns, const std::string& ifname,
                                       const std::string& address);
bool hasAddress(const std::string& ns, const std::string& ifname, const std::string& address);
// The MAC `ip neigh` has for address on ifname, or nullopt.
std::optional<MacAddress> neighbourMac(const std::string& ns, const std::string& ifname,
                                       const std::string& address);
// Sends one UDP datagram from ns to address:9, which makes the kernel resolve address first.
void nudge(const std::string& ns, const std::string& address);

struct Frame {
  std::vector<std::uint8_t> bytes;
  std::chrono::steady_clock::time_point at;
};

// An AF_PACKET capture of every frame arriving on ns:ifname (outgoing ones are skipped).
class Capture {
 public:
  Capture(const std::string& ns, const std::string& ifname);
  ~Capture();
  Capture(const Capture&) = delete;
  Capture& operator=(const Capture&) = delete;
  // Receives until done(frames so far) is true or timeout; returns everything received.
  std::vector<Frame> collect(const std::function<bool(const std::vector<Frame>&)>& done,
                             std::chrono::milliseconds timeout);

 private:
  int fd_ = -1;
  int ifindex_ = 0;
  std::vector<Frame> frames_;
};

}  // namespace hacoord::vip::test
