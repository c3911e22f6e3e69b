// Test helpers for real probes: check configs, temp files, process states, loopback servers.
#pragma once

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "hacoord/config.h"
#include "support/nats_server_fixture.h"

namespace hacoord::test {

using namespace std::chrono_literals;

// A temp dir for pid files and plans, removed afterwards.
class TempDir {
 public:
  TempDir() : path_(makeTempDir("hacoord-health")) {}
  ~TempDir() { removeTree(path_); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A pid written by a command; 0 until the file holds a complete line.
inline pid_t pidFrom(const std::string& path) {
  const std::string text = readFile(path);
  if (text.empty() || text.back() != '\n') return 0;
  return static_cast<pid_t>(std::stol(text));
}

// The state letter of /proc/<pid>/stat ('R', 'S', 'Z', ...), or 0 when there is no such process.
inline char processState(pid_t pid, pid_t* parent = nullptr) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return 0;
  std::string line;
  std::getline(stat, line);
  const std::size_t paren = line.rfind(')');
  if (paren == std::string::npos || paren + 2 >= line.size()) return 0;
  if (parent != nullptr) *parent = static_cast<pid_t>(std::atol(line.c_str() + paren + 4));
  return line[paren + 2];
}

// The process no longer exists, or is a zombie (killed, waiting for a parent that is not us).
inline bool processGone(pid_t pid) {
  const char state = processState(pid);
  return state == 0 || state == 'Z';
}

// No entry at all: the process is dead AND its parent (us) has reaped it.
inline bool processReaped(pid_t pid) { return ::kill(pid, 0) != 0 && errno == ESRCH; }

// Children of this test process that died and were never reaped.
inline int zombieChildren() {
  int zombies = 0;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return -1;
  while (dirent* entry = ::readdir(proc)) {
    const pid_t pid = static_cast<pid_t>(std::atol(entry->d_name));
    if (pid <= 0) continue;
    pid_t parent = 0;
    if (processState(pid, &parent) == 'Z' && parent == ::getpid()) ++zombies;
  }
  ::closedir(proc);
  return zombies;
}

inline HealthCheckConfig commandCheck(const std::string& name, const std::string& cmd,
                                      milliseconds timeout = 2000ms, milliseconds interval = 2000ms) {
  HealthCheckConfig c;
  c.name = name;
  c.type = HealthCheckConfig::Type::kCommand;
  c.command = cmd;
  c.timeout = timeout;
  c.interval = interval;
  return c;
}

inline HealthCheckConfig tcpCheck(const std::string& address, milliseconds timeout = 1000ms) {
  HealthCheckConfig c;
  c.name = "tcp";
  c.type = HealthCheckConfig::Type::kTcp;
  c.address = address;
  c.timeout = timeout;
  return c;
}

inline HealthCheckConfig httpCheck(const std::string& url, milliseconds timeout = 1000ms) {
  HealthCheckConfig c;
  c.name = "http";
  c.type = HealthCheckConfig::Type::kHttp;
  c.url = url;
  c.timeout = timeout;
  return c;
}

// A listening socket on 127.0.0.1 and a free port; closed by the caller.
inline int listenLoopback(int backlog, int* port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  EXPECT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  EXPECT_EQ(::listen(fd, backlog), 0);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  *port = ntohs(addr.sin_port);
  return fd;
}

// A loopback HTTP server on a thread of its own: reads one request head per connection and
// answers with `response` verbatim (then closes), or holds the connection open unanswered when
// `response` is "". With `keep_open`, it answers and keeps the connection open (an endless body).
class TinyHttpServer {
 public:
  explicit TinyHttpServer(std::string response, bool keep_open = false)
      : response_(std::move(response)), keep_open_(keep_open), stop_fd_(::eventfd(0, EFD_CLOEXEC)) {
    listen_fd_ = listenLoopback(16, &port_);
    thread_ = std::thread([this] { loop(); });
  }
  ~TinyHttpServer() {
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(stop_fd_, &one, sizeof one);
    thread_.join();
    for (int fd : held_) ::close(fd);
    ::close(listen_fd_);
    ::close(stop_fd_);
  }
  TinyHttpServer(const TinyHttpServer&) = delete;
  TinyHttpServer& operator=(const TinyHttpServer&) = delete;

  int port() const { return port_; }
  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  std::string lastRequest() const {
    std::lock_guard lock(mutex_);
    return last_request_;
  }
  int requests() const { return requests_.load(); }

 private:
  // Waits for `fd` (or the stop event); false when stopping.
  bool waitFor(int fd) {
    pollfd fds[2] = {{fd, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    while (::poll(fds, 2, -1) < 0) {
    }
    return fds[1].revents == 0;
  }
  void loop() {
    while (waitFor(listen_fd_)) {
      int conn = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (conn < 0) continue;
      std::string head;
      char buf[1024];
      while (head.find("\r\n\r\n") == std::string::npos && waitFor(conn)) {
        ssize_t r = ::recv(conn, buf, sizeof buf, 0);
        if (r <= 0) break;
        head.append(buf, static_cast<std::size_t>(r));
      }
      {
        std::lock_guard lock(mutex_);
        last_request_ = head;
      }
      ++requests_;
      if (!response_.empty()) {
        [[maybe_unused]] ssize_t w = ::send(conn, response_.data(), response_.size(), MSG_NOSIGNAL);
      }
      if (response_.empty() || keep_open_) {
        held_.push_back(conn);
      } else {
        ::close(conn);
      }
    }
  }

  std::string response_;
  bool keep_open_;
  int stop_fd_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::vector<int> held_;
  mutable std::mutex mutex_;
  std::string last_request_;
  std::atomic<int> requests_{0};
  std::thread thread_;
};

}  // namespace hacoord::test
