// Test support for the VIP system tests: namespaces, commands, captures (see netns_fixture.h).
#include "vip/tests/netns_fixture.h"

#include "core/runtime.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <sstream>
#include <stdexcept>

extern char** environ;

namespace hacoord::vip::test {
namespace {

constexpr const char* kPrefix = "hacoord-vt-";
std::atomic<int> g_namespace_counter{0};

std::string joined(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) {
    if (!out.empty()) out += ' ';
    out += a;
  }
  return out;
}

// Namespaces named by a test process that no longer exists (killed mid-test) are leftovers of
// ours: remove them so a crashed run does not leak into the next. Live pids are left alone.
void removeStaleNamespaces() {
  DIR* dir = opendir("/var/run/netns");
  if (!dir) return;
  std::vector<std::string> stale;
  while (dirent* entry = readdir(dir)) {
    std::string name = entry->d_name;
    if (name.rfind(kPrefix, 0) != 0) continue;
    const std::string rest = name.substr(std::strlen(kPrefix));
    const long pid = std::strtol(rest.c_str(), nullptr, 10);
    if (pid <= 0) continue;
    if (kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) stale.push_back(name);
  }
  closedir(dir);
  for (const auto& name : stale) run({"ip", "netns", "del", name});
}

}  // namespace

CommandResult run(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) {
  CommandResult result;
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) return result;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDERR_FILENO);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  int err = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(pipe_fds[1]);
  if (err != 0) {
    close(pipe_fds[0]);
    result.output = std::string("spawn failed: ") + std::strerror(err);
    return result;
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  bool timed_out = false;
  char buffer[4096];
  for (;;) {
    auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd pfd{pipe_fds[0], POLLIN, 0};
    int ready = poll(&pfd, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) continue;
    ssize_t n = read(pipe_fds[0], buffer, sizeof buffer);
    if (n <= 0) break;  // EOF: the child closed its output
    result.output.append(buffer, static_cast<std::size_t>(n));
  }
  close(pipe_fds[0]);
  if (timed_out) kill(pid, SIGKILL);  // our own child, by its pid
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!timed_out && WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  return result;
}

std::string runOk(const std::vector<std::string>& argv) {
  CommandResult r = run(argv);
  if (r.exit_code != 0) {
    throw std::runtime_error("command failed (" + std::to_string(r.exit_code) + "): " + joined(argv) + ": " +
                             r.output);
  }
  return r.output;
}

std::string systemTestSkipReason() {
  static std::once_flag once;
  static std::string reason;
  std::call_once(once, [] {
    if (geteuid() != 0) {
      reason = "VIP system tests need root (network namespaces, CAP_NET_ADMIN, CAP_NET_RAW): skipped";
      return;
    }
    removeStaleNamespaces();
    const std::string probe = kPrefix + std::to_string(getpid()) + "-probe";
    CommandResult added = run({"ip", "netns", "add", probe});
    if (added.exit_code != 0) {
      reason = "`ip netns add` is unavailable here (" + added.output + "): VIP system tests skipped";
      return;
    }
    CommandResult veth =
        run({"ip", "-n", probe, "link", "add", "name", "vt0", "type", "veth", "peer", "name", "vt1"});
    run({"ip", "netns", "del", probe});
    if (veth.exit_code != 0)
      reason = "veth links are unavailable (" + veth.output + "): VIP system tests skipped";
  });
  return reason;
}

void enterNetns(const std::string& ns) {
  const std::string path = "/var/run/netns/" + ns;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("open " + path + ": " + std::strerror(errno));
  int rc = setns(fd, CLONE_NEWNET);
  int err = errno;
  close(fd);
  if (rc != 0) throw std::runtime_error("setns " + path + ": " + std::strerror(err));
}

void dropCapabilityOnThisThread(int cap) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};  // pid 0: the calling thread
  __user_cap_data_struct data[2] = {};
  if (syscall(SYS_capget, &header, data) != 0)
    throw std::runtime_error(std::string("capget: ") + std::strerror(errno));
  const std::uint32_t bit = 1u << (cap % 32);
  auto& word = data[cap / 32];
  word.effective &= ~bit;
  word.permitted &= ~bit;
  word.inheritable &= ~bit;
  if (syscall(SYS_capset, &header, data) != 0)
    throw std::runtime_error(std::string("capset: ") + std::strerror(errno));
}

TestNetwork::TestNetwork() = default;

TestNetwork::~TestNetwork() {
  // Deleting a namespace deletes its veth ends, and the peers with them.
  for (auto it = namespaces_.rbegin(); it != namespaces_.rend(); ++it) run({"ip", "netns", "del", *it});
}

std::string TestNetwork::addNamespace() {
  std::string name = kPrefix + std::to_string(getpid()) + "-" + std::to_string(g_namespace_counter++);
  runOk({"ip", "netns", "add", name});
  namespaces_.push_back(name);
  ip(name, {"link", "set", "lo", "up"});
  return name;
}

std::vector<std::string> TestNetwork::addLan(int hosts) {
  const std::string bridge = addNamespace();
  // No multicast snooping: neighbour solicitations to solicited-node groups are simply flooded.
  ip(bridge, {"link", "add", "name", "br0", "type", "bridge", "mcast_snooping", "0"});
  ip(bridge, {"link", "set", "br0", "up"});
  std::vector<std::string> names;
  for (int i = 0; i < hosts; ++i) {
    const std::string host = addNamespace();
    const std::string port = "p" + std::to_string(i);
    ip(bridge, {"link", "add", "name", port, "type", "veth", "peer", "name", "eth0", "netns", host});
    ip(bridge, {"link", "set", port, "master", "br0"});
    ip(bridge, {"link", "set", port, "up"});
    ip(host, {"link", "set", "eth0", "up"});
    ip(host, {"addr", "add", "192.0.2." + std::to_string(10 + i) + "/24", "dev", "eth0"});
    ip(host, {"addr", "add", "2001:db8::" + std::to_string(10 + i) + "/64", "dev", "eth0", "nodad"});
    names.push_back(host);
  }
  return names;
}

std::string TestNetwork::ip(const std::string& ns, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"ip", "-n", ns};
  argv.insert(argv.end(), args.begin(), args.end());
  return runOk(argv);
}

std::string TestNetwork::addHostAddress(const std::string& ns, const std::string& address) {
  const bool v6 = address.find(':') != std::string::npos;
  const std::string with_prefix = address + (v6 ? "/128" : "/32");
  std::vector<std::string> add = {"addr", "add", with_prefix, "dev", "eth0"};
  if (v6) add.push_back("nodad");
  ip(ns, add);
  return with_prefix;
}

namespace {
std::optional<MacAddress> parseMacAfter(const std::string& text, const std::string& key) {
  auto at = text.find(key);
  if (at == std::string::npos) return std::nullopt;
  unsigned b[6];
  if (std::sscanf(text.c_str() + at + key.size(), "%x:%x:%x:%x:%x:%x", &b[0], &b[1], &b[2], &b[3], &b[4],
                  &b[5]) != 6) {
    return std::nullopt;
  }
  MacAddress mac;
  for (int i = 0; i < 6; ++i) mac[i] = static_cast<std::uint8_t>(b[i]);
  return mac;
}
}  // namespace

MacAddress macOf(const std::string& ns, const std::string& ifname) {
  auto mac = parseMacAfter(runOk({"ip", "-n", ns, "-o", "link", "show", "dev", ifname}), "link/ether ");
  if (!mac) throw std::runtime_error("no MAC on " + ns + ":" + ifname);
  return *mac;
}

std::optional<std::string> addressLine(const std::string& ns, const std::string& ifname,
                                       const std::string& address) {
  std::istringstream lines(runOk({"ip", "-n", ns, "-o", "addr", "show", "dev", ifname}));
  std::string line;
  const std::string needle = " " + address + "/";
  while (std::getline(lines, line)) {
    if (line.find(needle) != std::string::npos) return line;
  }
  return std::nullopt;
}

bool hasAddress(const std::string& ns, const std::string& ifname, const std::string& address) {
  return addressLine(ns, ifname, address).has_value();
}

std::optional<MacAddress> neighbourMac(const std::string& ns, const std::string& ifname,
                                       const std::string& address) {
  return parseMacAfter(runOk({"ip", "-n", ns, "neigh", "show", "to", address, "dev", ifname}), "lladdr ");
}

void nudge(const std::string& ns, const std::string& address) {
  inNetns(ns, [&] {
    const bool v6 = address.find(':') != std::string::npos;
    int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
    const char byte = 0;
    ssize_t sent;
    if (v6) {
      sockaddr_in6 to{};
      to.sin6_family = AF_INET6;
      to.sin6_port = htons(9);
      inet_pton(AF_INET6, address.c_str(), &to.sin6_addr);
      sent = sendto(fd, &byte, 1, 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
    } else {
      sockaddr_in to{};
      to.sin_family = AF_INET;
      to.sin_port = htons(9);
      inet_pton(AF_INET, address.c_str(), &to.sin_addr);
      sent = sendto(fd, &byte, 1, 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
    }
    int err = errno;
    close(fd);
    if (sent < 0) throw std::runtime_error("sendto " + address + ": " + std::strerror(err));
  });
}

Capture::Capture(const std::string& ns, const std::string& ifname) {
  fd_ = inNetns(ns, [&] {
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
    if (fd < 0) throw std::runtime_error(std::string("AF_PACKET socket: ") + std::strerror(errno));
    sockaddr_ll bound{};
    bound.sll_family = AF_PACKET;
    bound.sll_protocol = htons(ETH_P_ALL);
    bound.sll_ifindex = static_cast<int>(if_nametoindex(ifname.c_str()));  // in ns: this thread joined it
    if (bound.sll_ifindex == 0 || bind(fd, reinterpret_cast<sockaddr*>(&bound), sizeof bound) != 0) {
      int err = errno;
      close(fd);
      throw std::runtime_error("bind capture to " + ifname + ": " + std::strerror(err));
    }
    ifindex_ = bound.sll_ifindex;
    return fd;
  });
}

Capture::~Capture() {
  if (fd_ >= 0) close(fd_);
}

std::vector<Frame> Capture::collect(const std::function<bool(const std::vector<Frame>&)>& done,
                                    std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done(frames_)) {
    auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd pfd{fd_, POLLIN, 0};
    if (poll(&pfd, 1, static_cast<int>(left.count())) <= 0) continue;
    std::uint8_t buffer[4096];
    sockaddr_ll from{};
    socklen_t from_len = sizeof from;
    ssize_t n =
        recvfrom(fd_, buffer, sizeof buffer, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from), &from_len);
    // Skip our own sends, and frames from other interfaces queued before bind().
    if (n <= 0 || from.sll_pkttype == PACKET_OUTGOING || from.sll_ifindex != ifindex_) continue;
    frames_.push_back(Frame{std::vector<std::uint8_t>(buffer, buffer + n), std::chrono::steady_clock::now()});
  }
  return frames_;
}

Scheduler& vipScheduler() {
  static Runtime runtime;
  static std::unique_ptr<StrandScheduler> strand = runtime.makeStrand();
  return *strand;
}

const Clock& vipClock() {
  static LeaseClock clock;
  return clock;
}

}  // namespace hacoord::vip::test
