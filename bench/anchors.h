// The anchors mesh_bench compares the mesh with (built with -DHACOORD_BENCH_ANCHORS=ON): the same
// echo over NATS request/reply (nats.c through the local nats-server) and over gRPC C++ unary
// with mutual TLS (Debian's libgrpc++). Servers run in mesh_bench's child process, clients in the
// bench. nats.h and the gRPC headers stay in anchors.cc.
#pragma once

#include <memory>
#include <string>

#include "echo_client.h"

namespace hacoord::bench {

struct TlsFiles {
  std::string ca;
  std::string cert;  // its SANs must include DNS:localhost (the gRPC client checks the name)
  std::string key;
};

// A server answering until destroyed. Throws std::runtime_error when it cannot start.
class AnchorServer {
 public:
  virtual ~AnchorServer() = default;
};
// Subscribes kNatsSubject on `url` and answers every request with its payload.
std::unique_ptr<AnchorServer> startNatsEchoServer(const std::string& url);
// Listens on 127.0.0.1 (a free port, written to `port`) with mutual TLS.
std::unique_ptr<AnchorServer> startGrpcEchoServer(const TlsFiles& tls, int& port);

// Throw std::runtime_error when they cannot connect.
std::unique_ptr<EchoClient> natsEchoClient(const std::string& url);
std::unique_ptr<EchoClient> grpcEchoClient(int port, const TlsFiles& tls);

inline constexpr const char* kNatsSubject = "hacoord.bench.echo";

}  // namespace hacoord::bench
