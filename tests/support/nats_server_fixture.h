// Real nats-server processes for integration tests: one server or a 3-node cluster on free loopback ports.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "hacoord/config.h"

namespace hacoord {
class NatsConnection;
}

namespace hacoord::test {

using std::chrono::milliseconds;

// Files made by makeTestCerts(): a CA, a server certificate (SAN DNS:localhost, IP:127.0.0.1) and
// a client certificate, all PEM, all signed by that CA.
struct TlsMaterial {
  std::string ca;
  std::string server_cert;
  std::string server_key;
  std::string client_cert;
  std::string client_key;
};

// Generates the files into `dir` with the openssl command line. Throws std::runtime_error.
TlsMaterial makeTestCerts(const std::string& dir);

// A port that was free on 127.0.0.1 a moment ago (bind to port 0, read it, close).
// Client settings for tests against a local server: 1 s connect and requests, reconnects every
// 50 ms doubling to 400 ms.
NatsConfig testNatsConfig(const std::vector<std::string>& servers);

int freeLoopbackPort();
// mkdtemp under $TMPDIR (or /tmp); the caller removes it with removeTree().
std::string makeTempDir(const std::string& prefix);
void removeTree(const std::string& path);
// One stateDir for every node this test process runs (epoch floors are per cluster and node, so
// tests with distinct cluster ids do not meet): made on first use, removed when the process exits.
// Never the default /var/lib/hacoord, where a rerun would find the last run's epochs.
const std::string& testStateDir();

// The creation time of a stream (a bucket's generation) by a JetStream call of its own; 0 when
// the stream does not exist.
std::uint64_t streamCreated(NatsConnection& conn, const std::string& stream);
// Deletes a KV bucket as an operator would (`nats kv del`); true when the server did. (Running
// nodes may re-create it at once.)
bool deleteKvBucket(NatsConnection& conn, const std::string& bucket);

// A plain HTTP/1.0 GET on 127.0.0.1:<port> (the servers' monitor endpoint).
struct HttpReply {
  int status = 0;
  std::string body;
};
std::optional<HttpReply> httpGet(int port, const std::string& path,
                                 milliseconds timeout = milliseconds(1000));

struct NatsServerOptions {
  std::string server_name;  // "" = nats-server's default
  // A nats-server configuration file (-c), e.g. one with authorization. It must set its own
  // jetstream store_dir (nats-server refuses -sd beside it); the listen address and the ports
  // still come from the fixture's flags, which override the file.
  std::string config_file;
  std::optional<TlsMaterial> tls;  // serve TLS with these files
  bool tls_verify = true;          // with tls: demand a client certificate (mutual TLS)
  // Cluster membership (see NatsCluster): cluster_port 0 = not clustered.
  std::string cluster_name;
  int cluster_port = 0;
  std::vector<int> route_ports;
  // Wait for /healthz ok after a start (a cluster member waits in NatsCluster instead).
  bool wait_healthy = true;
  milliseconds start_timeout = milliseconds(15000);
};

// One `nats-server -js` child process on 127.0.0.1, with a temp dir holding its store and log.
// Only the PID started here is ever signalled. The constructor starts it and waits until it is
// healthy (or throws std::runtime_error with the end of the server's log).
class NatsServer {
 public:
  explicit NatsServer(NatsServerOptions options = {});
  ~NatsServer();  // stop() and remove the temp dir
  NatsServer(const NatsServer&) = delete;
  NatsServer& operator=(const NatsServer&) = delete;

  std::string url() const;  // nats://127.0.0.1:<port> (the client selects TLS from its options)
  int port() const { return port_; }
  int monitorPort() const { return monitor_port_; }
  const std::string& name() const { return options_.server_name; }
  const std::string& dir() const { return dir_; }
  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }

  void start();    // same port, same store dir; waits as the constructor does
  void stop();     // SIGTERM, then SIGKILL after 10 s; reaps the child
  void kill9();    // SIGKILL and reap
  void restart();  // stop() (if running) + start()
  // Blocks until /healthz answers ok; false after `timeout`.
  bool waitHealthy(milliseconds timeout) const;
  // The last `bytes` of the server's log (for failure messages).
  std::string logTail(std::size_t bytes = 4000) const;

 private:
  void spawn();
  void reap(milliseconds timeout);

  NatsServerOptions options_;
  std::string dir_;
  std::string log_path_;
  int port_ = 0;
  int monitor_port_ = 0;
  pid_t pid_ = -1;
};

// Three (or `size`) JetStream servers routed into one cluster on free loopback ports. The
// constructor returns once every server is healthy and a JetStream meta leader exists.
class NatsCluster {
 public:
  explicit NatsCluster(int size = 3, milliseconds ready_timeout = milliseconds(30000));
  NatsCluster(const NatsCluster&) = delete;
  NatsCluster& operator=(const NatsCluster&) = delete;

  int size() const { return static_cast<int>(servers_.size()); }
  NatsServer& server(int i) { return *servers_.at(static_cast<std::size_t>(i)); }
  std::vector<std::string> urls() const;
  void kill9(int i) { server(i).kill9(); }
  void stop(int i) { server(i).stop(); }
  void restart(int i) { server(i).restart(); }  // after kill9(i) too: same ports and store

  // Index of the server that leads stream `stream` (a KV bucket B is stream "KV_B"), from the
  // monitor's /jsz of the server that claims it; -1 if none within `timeout`.
  int streamLeader(const std::string& stream, milliseconds timeout = milliseconds(10000)) const;
  // Name of the JetStream meta leader as one running server sees it ("" if none).
  std::string metaLeader() const;

 private:
  std::vector<std::unique_ptr<NatsServer>> servers_;
};

}  // namespace hacoord::test
