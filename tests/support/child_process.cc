// ChildProcess: fork/exec with piped stdio drained by reader threads; signals only to its own PID.
#include "support/child_process.h"

#include <json/json.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>

#include "support/eventually.h"

namespace hacoord::test {
namespace {

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error(what); }

void closeFd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

int exitCodeOf(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return -1;
}

}  // namespace

ChildProcess::ChildProcess(std::vector<std::string> args) : args_(std::move(args)) {
  if (args_.empty()) fail("ChildProcess: no program");
  // A write to the stdin of a child that just died must fail with EPIPE, not kill the test.
  ::signal(SIGPIPE, SIG_IGN);
  // Everything the child needs is prepared before fork(): between fork and exec only
  // async-signal-safe calls are allowed (the test process has nats.c and gtest threads).
  std::vector<char*> argv;
  for (auto& a : args_) argv.push_back(a.data());
  argv.push_back(nullptr);
  int in_pipe[2];
  int out_pipe[2];
  int err_pipe[2];
  // O_CLOEXEC: no other child (nats-server, a second node) inherits these ends.
  if (::pipe2(in_pipe, O_CLOEXEC) != 0) fail(std::string("pipe2: ") + std::strerror(errno));
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) {
    ::close(in_pipe[0]);
    ::close(in_pipe[1]);
    fail(std::string("pipe2: ") + std::strerror(errno));
  }
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    for (int fd : {in_pipe[0], in_pipe[1], out_pipe[0], out_pipe[1]}) ::close(fd);
    fail(std::string("pipe2: ") + std::strerror(errno));
  }
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    for (int fd : {in_pipe[0], in_pipe[1], out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1]}) {
      ::close(fd);
    }
    fail(std::string("fork: ") + std::strerror(errno));
  }
  if (pid == 0) {
    // A test that crashes must not leave children behind.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(126);
    ::dup2(in_pipe[0], STDIN_FILENO);  // dup2 clears O_CLOEXEC on the copy
    ::dup2(out_pipe[1], STDOUT_FILENO);
    ::dup2(err_pipe[1], STDERR_FILENO);
    ::close_range(3, ~0U, 0);
    ::execvp(argv[0], argv.data());
    ::_exit(127);
  }
  pid_ = pid;
  ::close(in_pipe[0]);
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  stdin_fd_ = in_pipe[1];
  out_reader_ = std::thread([this, fd = out_pipe[0]] { readLoop(fd, true); });
  err_reader_ = std::thread([this, fd = err_pipe[0]] { readLoop(fd, false); });
}

ChildProcess::~ChildProcess() {
  kill9();
  closeStdin();
  // The readers see EOF once the child (the only holder of the write ends) is gone.
  if (out_reader_.joinable()) out_reader_.join();
  if (err_reader_.joinable()) err_reader_.join();
}

void ChildProcess::readLoop(int fd, bool is_stdout) {
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    std::lock_guard lock(mutex_);
    if (!is_stdout) {
      err_.append(buf, static_cast<std::size_t>(n));
      continue;
    }
    out_.append(buf, static_cast<std::size_t>(n));
    partial_.append(buf, static_cast<std::size_t>(n));
    std::size_t start = 0;
    for (std::size_t nl; (nl = partial_.find('\n', start)) != std::string::npos; start = nl + 1) {
      lines_.push_back(partial_.substr(start, nl - start));
    }
    partial_.erase(0, start);
    out_cv_.notify_all();
  }
  ::close(fd);
  std::lock_guard lock(mutex_);
  (is_stdout ? out_eof_ : err_eof_) = true;
  out_cv_.notify_all();
}

bool ChildProcess::waitOutputClosed(milliseconds timeout) const {
  std::unique_lock lock(mutex_);
  return out_cv_.wait_for(lock, timeout, [this] { return out_eof_ && err_eof_; });
}

bool ChildProcess::signal(int sig) {
  std::lock_guard lock(mutex_);
  if (reaped_ || pid_ <= 0) return false;
  return ::kill(pid_, sig) == 0;
}

bool ChildProcess::writeLine(const std::string& line) {
  if (stdin_fd_ < 0) return false;
  const std::string data = line + "\n";
  std::size_t done = 0;
  while (done < data.size()) {
    if (exited()) return false;
    const ssize_t n = ::write(stdin_fd_, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

void ChildProcess::closeStdin() { closeFd(stdin_fd_); }

std::vector<std::string> ChildProcess::lines() const {
  std::lock_guard lock(mutex_);
  return lines_;
}

std::string ChildProcess::stdoutText() const {
  std::lock_guard lock(mutex_);
  return out_;
}

std::string ChildProcess::stderrText() const {
  std::lock_guard lock(mutex_);
  return err_;
}

bool ChildProcess::exited() {
  std::lock_guard lock(mutex_);
  if (reaped_) return true;
  int status = 0;
  const pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    reaped_ = true;
    wait_status_ = status;
  }
  return reaped_;
}

bool ChildProcess::waitExit(milliseconds timeout) {
  return eventually([this] { return exited(); }, timeout, milliseconds(5));
}

std::optional<int> ChildProcess::exitCode() {
  if (!exited()) return std::nullopt;
  std::lock_guard lock(mutex_);
  return exitCodeOf(wait_status_);
}

void ChildProcess::kill9() {
  if (exited()) return;
  signal(SIGKILL);
  std::lock_guard lock(mutex_);
  int status = 0;
  pid_t r;
  while ((r = ::waitpid(pid_, &status, 0)) < 0 && errno == EINTR) {
  }
  reaped_ = true;
  wait_status_ = status;
}

// ---------------------------------------------------------------------------------------------

std::vector<std::string> RunResult::errLines() const {
  std::vector<std::string> lines;
  std::size_t start = 0;
  while (start < err.size()) {
    std::size_t nl = err.find('\n', start);
    if (nl == std::string::npos) nl = err.size();
    if (nl > start) lines.push_back(err.substr(start, nl - start));
    start = nl + 1;
  }
  return lines;
}

RunResult runProcess(const std::vector<std::string>& args, milliseconds timeout) {
  const auto begin = std::chrono::steady_clock::now();
  ChildProcess child(args);
  child.closeStdin();
  RunResult result;
  if (child.waitExit(timeout)) {
    result.exit_code = *child.exitCode();
  } else {
    result.timed_out = true;
    child.kill9();
  }
  result.elapsed = std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - begin);
  // The readers reach EOF right after the exit: wait for them before reading the output.
  child.waitOutputClosed(milliseconds(2000));
  result.out = child.stdoutText();
  result.err = child.stderrText();
  return result;
}

// ---------------------------------------------------------------------------------------------

namespace {}  // namespace

std::optional<std::map<std::string, std::string>> parseFlatJson(std::string_view text) {
  Json::Value root;
  std::string errors;
  Json::CharReaderBuilder builder;
  std::unique_ptr<Json::CharReader> reader(builder.newCharReader());
  if (!reader->parse(text.data(), text.data() + text.size(), &root, &errors) || !root.isObject()) {
    return std::nullopt;
  }
  std::map<std::string, std::string> out;
  for (const auto& key : root.getMemberNames()) {
    const Json::Value& v = root[key];
    if (v.isString()) {
      out[key] = v.asString();
    } else if (v.isNull()) {
      out[key] = "null";
    } else if (v.isBool()) {
      out[key] = v.asBool() ? "true" : "false";
    } else if (v.isUInt64() || v.isInt64()) {
      out[key] = v.isUInt64() ? std::to_string(v.asUInt64()) : std::to_string(v.asInt64());
    } else if (v.isDouble()) {
      std::string written = Json::FastWriter().write(v);
      out[key] = written.substr(0, written.find('\n'));
    }  // nested objects and arrays are left out
  }
  return out;
}

void writeTextFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) fail("cannot write " + path);
  out << text;
  out.close();
  if (!out) fail("cannot write " + path);
}

std::string readTextFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace hacoord::test
