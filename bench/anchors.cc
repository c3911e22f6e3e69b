// mesh_bench's anchors: echo over NATS request/reply and over gRPC unary with mutual TLS.
#include "anchors.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <nats/nats.h>

#include "bench_report.h"
#include "echo.grpc.pb.h"

namespace hacoord::bench {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kCallTimeoutMs = 2000;

// gRPC takes deadlines on the system clock only.
std::chrono::system_clock::time_point grpcDeadline(std::chrono::milliseconds in) {
  return std::chrono::system_clock::now() + in;
}

void check(natsStatus s, const char* what) {
  if (s != NATS_OK) throw std::runtime_error(std::string(what) + ": " + natsStatus_GetText(s));
}

// ---- NATS request/reply

class NatsEchoServer final : public AnchorServer {
 public:
  explicit NatsEchoServer(const std::string& url) {
    check(natsConnection_ConnectTo(&nc_, url.c_str()), "nats connect");
    check(natsConnection_Subscribe(&sub_, nc_, kNatsSubject, &NatsEchoServer::onRequest, nullptr),
          "nats subscribe");
    check(natsSubscription_SetPendingLimits(sub_, -1, -1), "nats pending limits");
    check(natsConnection_Flush(nc_), "nats flush");
  }
  ~NatsEchoServer() override {
    natsSubscription_Unsubscribe(sub_);
    natsSubscription_Destroy(sub_);
    natsConnection_Destroy(nc_);
  }

 private:
  static void onRequest(natsConnection* nc, natsSubscription*, natsMsg* msg, void*) {
    if (natsMsg_GetReply(msg) != nullptr) {
      natsConnection_Publish(nc, natsMsg_GetReply(msg), natsMsg_GetData(msg), natsMsg_GetDataLength(msg));
    }
    natsMsg_Destroy(msg);
  }
  natsConnection* nc_ = nullptr;
  natsSubscription* sub_ = nullptr;
};

class NatsEchoClient final : public EchoClient {
 public:
  explicit NatsEchoClient(const std::string& url) {
    check(natsConnection_ConnectTo(&nc_, url.c_str()), "nats connect");
  }
  ~NatsEchoClient() override { natsConnection_Destroy(nc_); }

  bool call(const std::string& payload, std::string& error) override {
    natsMsg* reply = nullptr;
    const natsStatus s = natsConnection_Request(&reply, nc_, kNatsSubject, payload.data(),
                                                static_cast<int>(payload.size()), kCallTimeoutMs);
    bool ok = s == NATS_OK && natsMsg_GetDataLength(reply) == static_cast<int>(payload.size());
    if (s != NATS_OK) error = natsStatus_GetText(s);
    natsMsg_Destroy(reply);
    return ok;
  }

  // Replies come to one wildcard inbox subscription (its own delivery thread); each reply sends the
  // next request of its slot until the window closes.
  Throughput throughput(const std::string& payload, int inflight, std::chrono::milliseconds window) override {
    struct State {
      natsConnection* nc;
      const std::string* payload;
      std::string inbox;
      Clock::time_point end;
      std::atomic<std::uint64_t> completed{0};
      std::atomic<std::uint64_t> failed{0};
      std::mutex mu;
      std::condition_variable cv;
      int outstanding = 0;
      void send(const std::string& reply_to) {
        if (natsConnection_PublishRequest(nc, kNatsSubject, reply_to.c_str(), payload->data(),
                                          static_cast<int>(payload->size())) != NATS_OK) {
          ++failed;
          finishOne();
        }
      }
      void finishOne() {
        std::lock_guard lock(mu);
        if (--outstanding == 0) cv.notify_all();
      }
    } st;
    st.nc = nc_;
    st.payload = &payload;
    natsInbox* inbox = nullptr;
    check(natsInbox_Create(&inbox), "nats inbox");
    st.inbox = inbox;
    natsInbox_Destroy(inbox);
    natsSubscription* sub = nullptr;
    check(natsConnection_Subscribe(
              &sub, nc_, (st.inbox + ".*").c_str(),
              [](natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
                auto* s = static_cast<State*>(closure);
                const bool ok = natsMsg_GetDataLength(msg) == static_cast<int>(s->payload->size());
                const std::string slot = natsMsg_GetSubject(msg);
                natsMsg_Destroy(msg);
                if (ok) {
                  ++s->completed;
                } else {
                  ++s->failed;
                }
                if (Clock::now() < s->end) {
                  s->send(slot);
                } else {
                  s->finishOne();
                }
              },
              &st),
          "nats subscribe inbox");
    check(natsSubscription_SetPendingLimits(sub, -1, -1), "nats pending limits");
    check(natsConnection_Flush(nc_), "nats flush");
    const auto start = Clock::now();
    st.end = start + window;
    st.outstanding = inflight;
    for (int i = 0; i < inflight; ++i) st.send(st.inbox + "." + std::to_string(i));
    {
      std::unique_lock lock(st.mu);
      st.cv.wait_for(lock, window + std::chrono::milliseconds(kCallTimeoutMs),
                     [&] { return st.outstanding == 0; });
    }
    Throughput t;
    t.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);  // no callback runs after this returns
    t.completed = st.completed.load();
    t.failed = st.failed.load();
    return t;
  }

 private:
  natsConnection* nc_ = nullptr;
};

// ---- gRPC unary, mutual TLS

class EchoService final : public Echo::Service {
  grpc::Status Call(grpc::ServerContext*, const Blob* request, Blob* reply) override {
    reply->set_data(request->data());
    return grpc::Status::OK;
  }
};

class GrpcEchoServer final : public AnchorServer {
 public:
  GrpcEchoServer(const TlsFiles& tls, int& port) {
    grpc::SslServerCredentialsOptions o(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    o.pem_root_certs = readFile(tls.ca);
    o.pem_key_cert_pairs.push_back({readFile(tls.key), readFile(tls.cert)});
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::SslServerCredentials(o), &port);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    if (!server_ || port == 0) throw std::runtime_error("gRPC server did not start");
  }
  ~GrpcEchoServer() override { server_->Shutdown(grpcDeadline(std::chrono::seconds(1))); }

 private:
  EchoService service_;
  std::unique_ptr<grpc::Server> server_;
};

class GrpcEchoClient final : public EchoClient {
 public:
  GrpcEchoClient(int port, const TlsFiles& tls) {
    grpc::SslCredentialsOptions o;
    o.pem_root_certs = readFile(tls.ca);
    o.pem_private_key = readFile(tls.key);
    o.pem_cert_chain = readFile(tls.cert);
    grpc::ChannelArguments args;
    args.SetSslTargetNameOverride("localhost");  // the server certificate's DNS SAN
    channel_ = grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port), grpc::SslCredentials(o), args);
    if (!channel_->WaitForConnected(grpcDeadline(std::chrono::seconds(5)))) {
      throw std::runtime_error("gRPC channel did not connect");
    }
    stub_ = Echo::NewStub(channel_);
  }

  bool call(const std::string& payload, std::string& error) override {
    grpc::ClientContext ctx;
    ctx.set_deadline(grpcDeadline(std::chrono::milliseconds(kCallTimeoutMs)));
    Blob request;
    request.set_data(payload);
    Blob reply;
    const grpc::Status s = stub_->Call(&ctx, request, &reply);
    if (!s.ok()) error = s.error_message();
    return s.ok() && reply.data().size() == payload.size();
  }

  // The async API on one completion queue: each completion re-issues its slot until the window
  // closes.
  Throughput throughput(const std::string& payload, int inflight, std::chrono::milliseconds window) override {
    struct Slot {
      grpc::ClientContext ctx;
      Blob reply;
      grpc::Status status;
      std::unique_ptr<grpc::ClientAsyncResponseReader<Blob>> rpc;
    };
    Blob request;
    request.set_data(payload);
    grpc::CompletionQueue cq;
    auto issue = [&] {
      auto* s = new Slot;
      s->ctx.set_deadline(grpcDeadline(std::chrono::milliseconds(kCallTimeoutMs)));
      s->rpc = stub_->AsyncCall(&s->ctx, request, &cq);
      s->rpc->Finish(&s->reply, &s->status, s);
    };
    Throughput t;
    const auto start = Clock::now();
    const auto end = start + window;
    for (int i = 0; i < inflight; ++i) issue();
    int outstanding = inflight;
    void* tag = nullptr;
    bool ok = false;
    while (outstanding > 0 && cq.Next(&tag, &ok)) {
      std::unique_ptr<Slot> s(static_cast<Slot*>(tag));
      if (ok && s->status.ok() && s->reply.data().size() == payload.size()) {
        ++t.completed;
      } else {
        ++t.failed;
      }
      if (Clock::now() < end) {
        issue();
      } else {
        --outstanding;
      }
    }
    t.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    cq.Shutdown();
    while (cq.Next(&tag, &ok)) delete static_cast<Slot*>(tag);
    return t;
  }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<Echo::Stub> stub_;
};

}  // namespace

std::unique_ptr<AnchorServer> startNatsEchoServer(const std::string& url) {
  return std::make_unique<NatsEchoServer>(url);
}
std::unique_ptr<AnchorServer> startGrpcEchoServer(const TlsFiles& tls, int& port) {
  return std::make_unique<GrpcEchoServer>(tls, port);
}
std::unique_ptr<EchoClient> natsEchoClient(const std::string& url) {
  return std::make_unique<NatsEchoClient>(url);
}
std::unique_ptr<EchoClient> grpcEchoClient(int port, const TlsFiles& tls) {
  return std::make_unique<GrpcEchoClient>(port, tls);
}

}  // namespace hacoord::bench
