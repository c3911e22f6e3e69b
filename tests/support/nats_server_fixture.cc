// nats-server child processes (fork/exec, own PIDs only), readiness by /healthz, test certificates.
#include "support/nats_server_fixture.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <stdexcept>

#include <nats/nats.h>

#include "nats/nats_connection.h"
#include "support/eventually.h"

namespace hacoord::test {
namespace {

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error(what); }

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// fork + exec with stdout/stderr appended to `log_path`. Everything the child needs is prepared
// before fork(): between fork and exec only async-signal-safe calls are allowed (the test process
// has nats.c and gtest threads).
pid_t spawnProcess(const std::vector<std::string>& args, const std::string& log_path) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) fail("cannot open " + log_path + ": " + std::strerror(errno));
  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(log_fd);
    fail(std::string("fork: ") + std::strerror(errno));
  }
  if (pid == 0) {
    // A test that crashes must not leave servers behind (the signal goes when the forking thread
    // dies: the fixture is driven from the test's main thread).
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(126);
    ::dup2(log_fd, STDOUT_FILENO);
    ::dup2(log_fd, STDERR_FILENO);
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, STDIN_FILENO);
    // Do not let the server inherit the test's NATS client sockets: a copy held open by the child
    // would keep those connections alive after the test closes them.
    ::close_range(3, ~0U, 0);
    ::execvp(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(log_fd);
  return pid;
}

// Runs a short command to completion; throws with its output when it fails.
void runCommand(const std::vector<std::string>& args, const std::string& log_path) {
  pid_t pid = spawnProcess(args, log_path);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::string cmd;
    for (const auto& a : args) cmd += a + " ";
    fail("command failed: " + cmd + "\n" + readFile(log_path));
  }
}

// The string value of `"key": "..."` after `anchor` in a JSON text (the monitor's pretty output).
std::string jsonStringAfter(const std::string& body, const std::string& anchor, const std::string& key) {
  auto pos = body.find(anchor);
  if (pos == std::string::npos) return "";
  pos = body.find("\"" + key + "\"", pos);
  if (pos == std::string::npos) return "";
  pos = body.find(':', pos);
  if (pos == std::string::npos) return "";
  pos = body.find_first_not_of(" \t\r\n", pos + 1);
  if (pos == std::string::npos || body[pos] != '"') return "";
  auto end = body.find('"', pos + 1);
  if (end == std::string::npos) return "";
  return body.substr(pos + 1, end - pos - 1);
}

}  // namespace

int freeLoopbackPort() {
  // Never hand out the same port twice in one test process (the kernel may reuse a closed one).
  static std::mutex mutex;
  static std::set<int> given;
  std::lock_guard lock(mutex);
  for (int attempt = 0; attempt < 100; ++attempt) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) fail(std::string("socket: ") + std::strerror(errno));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof(addr);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      ::close(fd);
      fail(std::string("bind 127.0.0.1:0: ") + std::strerror(errno));
    }
    ::close(fd);
    int port = ntohs(addr.sin_port);
    if (given.insert(port).second) return port;
  }
  fail("no fresh free port after 100 tries");
}

std::string makeTempDir(const std::string& prefix) {
  const char* base = std::getenv("TMPDIR");
  std::string templ =
      std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/" + prefix + "-XXXXXX";
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data()) == nullptr) fail("mkdtemp " + templ + ": " + std::strerror(errno));
  return buf.data();
}

void removeTree(const std::string& path) {
  if (path.empty()) return;
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
}

const std::string& testStateDir() {
  static const std::string dir = [] {
    std::string d = makeTempDir("hacoord-state");
    static std::string removed_at_exit;
    removed_at_exit = d;
    std::atexit([] { removeTree(removed_at_exit); });
    return d;
  }();
  return dir;
}

std::optional<HttpReply> httpGet(int port, const std::string& path, milliseconds timeout) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::nullopt;
  timeval tv{};
  tv.tv_sec = timeout.count() / 1000;
  tv.tv_usec = (timeout.count() % 1000) * 1000;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return std::nullopt;
  }
  const std::string request = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size())) {
    ::close(fd);
    return std::nullopt;
  }
  std::string response;
  char buf[4096];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n > 0) {
      response.append(buf, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    break;
  }
  ::close(fd);
  // "HTTP/1.x NNN ..." then headers, a blank line, and the body.
  if (response.size() < 12 || response.compare(0, 5, "HTTP/") != 0) return std::nullopt;
  HttpReply reply;
  reply.status = std::atoi(response.c_str() + 9);
  auto body_at = response.find("\r\n\r\n");
  if (body_at != std::string::npos) reply.body = response.substr(body_at + 4);
  return reply;
}

TlsMaterial makeTestCerts(const std::string& dir) {
  const std::string log = dir + "/openssl.log";
  TlsMaterial m{dir + "/ca.pem", dir + "/server.pem", dir + "/server.key", dir + "/client.pem",
                dir + "/client.key"};
  // EC keys: generated in milliseconds, where RSA would take a noticeable part of a test.
  const std::vector<std::string> ec = {"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"};
  auto with = [](std::vector<std::string> a, const std::vector<std::string>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  };
  runCommand(
      with(with({"openssl", "req", "-x509"}, ec),
           {"-keyout", dir + "/ca.key", "-out", m.ca, "-days", "2", "-subj", "/CN=hacoord-test-ca", "-addext",
            "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"}),
      log);
  auto leaf = [&](const std::string& name, const std::string& cn, const std::string& ext) {
    const std::string ext_path = dir + "/" + name + ".ext";
    std::ofstream(ext_path) << ext;
    runCommand(with(with({"openssl", "req", "-new"}, ec), {"-keyout", dir + "/" + name + ".key", "-out",
                                                           dir + "/" + name + ".csr", "-subj", "/CN=" + cn}),
               log);
    runCommand(
        {"openssl", "x509", "-req", "-in", dir + "/" + name + ".csr", "-CA", m.ca, "-CAkey", dir + "/ca.key",
         "-CAcreateserial", "-out", dir + "/" + name + ".pem", "-days", "2", "-extfile", ext_path},
        log);
  };
  leaf("server", "localhost",
       "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n"
       "extendedKeyUsage=serverAuth\n");
  leaf("client", "hacoord-test-client", "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n");
  return m;
}

// ---------------------------------------------------------------------------------------------

NatsServer::NatsServer(NatsServerOptions options) : options_(std::move(options)) {
  dir_ = makeTempDir("hacoord-nats");
  log_path_ = dir_ + "/server.log";
  port_ = freeLoopbackPort();
  monitor_port_ = freeLoopbackPort();
  try {
    start();
  } catch (...) {
    removeTree(dir_);
    throw;
  }
}

NatsServer::~NatsServer() {
  if (running()) stop();
  removeTree(dir_);
}

std::string NatsServer::url() const { return "nats://127.0.0.1:" + std::to_string(port_); }

void NatsServer::spawn() {
  std::vector<std::string> args = {"nats-server", "-js",
                                   "-a",          "127.0.0.1",
                                   "-p",          std::to_string(port_),
                                   "-m",          std::to_string(monitor_port_)};
  if (options_.config_file.empty()) {
    args.insert(args.end(), {"-sd", dir_ + "/store"});
  } else {
    args.insert(args.end(), {"-c", options_.config_file});
  }
  if (!options_.server_name.empty()) {
    args.insert(args.end(), {"--server_name", options_.server_name});
  }
  if (options_.tls) {
    args.insert(args.end(), {"--tls", "--tlscert", options_.tls->server_cert, "--tlskey",
                             options_.tls->server_key, "--tlscacert", options_.tls->ca});
    if (options_.tls_verify) args.push_back("--tlsverify");
  }
  if (options_.cluster_port != 0) {
    std::string routes;
    for (int p : options_.route_ports) {
      if (!routes.empty()) routes += ",";
      routes += "nats://127.0.0.1:" + std::to_string(p);
    }
    args.insert(
        args.end(),
        {"--cluster_name", options_.cluster_name.empty() ? "hacoord-test" : options_.cluster_name,
         "--cluster", "nats://127.0.0.1:" + std::to_string(options_.cluster_port), "--routes", routes});
  }
  pid_ = spawnProcess(args, log_path_);
}

void NatsServer::start() {
  if (running()) return;
  spawn();
  if (!options_.wait_healthy) return;
  bool exited = false;
  bool healthy = eventually(
      [&] {
        int status = 0;
        if (::waitpid(pid_, &status, WNOHANG) == pid_) {
          exited = true;
          return true;
        }
        auto reply = httpGet(monitor_port_, "/healthz", milliseconds(500));
        return reply && reply->status == 200;
      },
      options_.start_timeout, milliseconds(20));
  if (exited) {
    pid_ = -1;
    fail("nats-server exited during start; log:\n" + logTail());
  }
  if (!healthy) {
    kill9();
    fail("nats-server not healthy within " + std::to_string(options_.start_timeout.count()) + " ms; log:\n" +
         logTail());
  }
}

bool NatsServer::waitHealthy(milliseconds timeout) const {
  return eventually(
      [&] {
        auto reply = httpGet(monitor_port_, "/healthz", milliseconds(500));
        return reply && reply->status == 200;
      },
      timeout, milliseconds(20));
}

void NatsServer::reap(milliseconds timeout) {
  if (pid_ <= 0) return;
  bool done = eventually(
      [&] {
        int status = 0;
        pid_t r = ::waitpid(pid_, &status, WNOHANG);
        return r == pid_ || (r < 0 && errno == ECHILD);
      },
      timeout, milliseconds(5));
  if (done) pid_ = -1;
}

void NatsServer::stop() {
  if (!running()) return;
  ::kill(pid_, SIGTERM);
  reap(milliseconds(10000));
  if (running()) kill9();
}

void NatsServer::kill9() {
  if (!running()) return;
  ::kill(pid_, SIGKILL);
  reap(milliseconds(10000));
  if (running()) fail("nats-server pid " + std::to_string(pid_) + " survived SIGKILL");
}

void NatsServer::restart() {
  stop();
  start();
}

std::string NatsServer::logTail(std::size_t bytes) const {
  std::string text = readFile(log_path_);
  if (text.size() > bytes) text = "..." + text.substr(text.size() - bytes);
  return text;
}

// ---------------------------------------------------------------------------------------------

NatsCluster::NatsCluster(int size, milliseconds ready_timeout) {
  std::vector<int> cluster_ports;
  for (int i = 0; i < size; ++i) cluster_ports.push_back(freeLoopbackPort());
  for (int i = 0; i < size; ++i) {
    NatsServerOptions o;
    o.server_name = "n" + std::to_string(i);
    o.cluster_name = "hacoord-test";
    o.cluster_port = cluster_ports[static_cast<std::size_t>(i)];
    o.route_ports = cluster_ports;  // listing its own route is harmless (notes §4.1)
    o.wait_healthy = false;         // /healthz fails until the peers are up
    servers_.push_back(std::make_unique<NatsServer>(o));
  }
  bool ready = eventually(
      [&] {
        for (auto& s : servers_) {
          auto reply = httpGet(s->monitorPort(), "/healthz", milliseconds(500));
          if (!reply || reply->status != 200) return false;
        }
        return !metaLeader().empty();
      },
      ready_timeout, milliseconds(50));
  if (!ready) {
    std::string logs;
    for (auto& s : servers_) logs += "--- " + s->name() + ":\n" + s->logTail(2000) + "\n";
    fail("NATS cluster not ready within " + std::to_string(ready_timeout.count()) + " ms\n" + logs);
  }
}

std::vector<std::string> NatsCluster::urls() const {
  std::vector<std::string> out;
  for (const auto& s : servers_) out.push_back(s->url());
  return out;
}

std::string NatsCluster::metaLeader() const {
  for (const auto& s : servers_) {
    if (!s->running()) continue;
    auto reply = httpGet(s->monitorPort(), "/jsz", milliseconds(500));
    if (!reply || reply->status != 200) continue;
    std::string leader = jsonStringAfter(reply->body, "\"meta_cluster\"", "leader");
    if (!leader.empty()) return leader;
  }
  return "";
}

int NatsCluster::streamLeader(const std::string& stream, milliseconds timeout) const {
  // Asks JetStream itself ($JS.API.STREAM.INFO is answered by the stream leader) through a
  // throwaway connection to every running server.
  int found = -1;
  eventually(
      [&] {
        std::vector<std::string> urls;
        for (const auto& s : servers_) {
          if (s->running()) urls.push_back(s->url());
        }
        if (urls.empty()) return false;
        std::vector<const char*> raw;
        for (const auto& u : urls) raw.push_back(u.c_str());
        natsOptions* opts = nullptr;
        natsConnection* nc = nullptr;
        jsCtx* js = nullptr;
        jsStreamInfo* si = nullptr;
        bool ok = natsOptions_Create(&opts) == NATS_OK &&
                  natsOptions_SetServers(opts, raw.data(), static_cast<int>(raw.size())) == NATS_OK &&
                  natsOptions_SetTimeout(opts, 500) == NATS_OK &&
                  natsConnection_Connect(&nc, opts) == NATS_OK;
        if (ok) {
          jsOptions jo;
          jsOptions_Init(&jo);
          jo.Wait = 500;
          ok = natsConnection_JetStream(&js, nc, &jo) == NATS_OK &&
               js_GetStreamInfo(&si, js, stream.c_str(), nullptr, nullptr) == NATS_OK &&
               si->Cluster != nullptr && si->Cluster->Leader != nullptr;
        }
        if (ok) {
          const std::string leader = si->Cluster->Leader;
          for (std::size_t i = 0; i < servers_.size(); ++i) {
            if (servers_[i]->running() && servers_[i]->name() == leader) {
              found = static_cast<int>(i);
            }
          }
        }
        jsStreamInfo_Destroy(si);
        jsCtx_Destroy(js);
        natsConnection_Destroy(nc);
        natsOptions_Destroy(opts);
        return found >= 0;
      },
      timeout, milliseconds(100));
  return found;
}

std::uint64_t streamCreated(NatsConnection& conn, const std::string& stream) {
  jsStreamInfo* si = nullptr;
  if (js_GetStreamInfo(&si, conn.js(), stream.c_str(), nullptr, nullptr) != NATS_OK) return 0;
  const auto created = static_cast<std::uint64_t>(si->Created);
  jsStreamInfo_Destroy(si);
  return created;
}

bool deleteKvBucket(NatsConnection& conn, const std::string& bucket) {
  return js_DeleteKeyValue(conn.js(), bucket.c_str()) == NATS_OK;
}

NatsConfig testNatsConfig(const std::vector<std::string>& servers) {
  NatsConfig c;
  c.servers = servers;
  c.connect_timeout = std::chrono::milliseconds(1000);
  c.request_timeout = std::chrono::milliseconds(1000);
  c.reconnect_wait = std::chrono::milliseconds(50);
  c.reconnect_wait_max = std::chrono::milliseconds(400);
  return c;
}

}  // namespace hacoord::test
