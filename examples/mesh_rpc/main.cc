// examples/mesh_rpc: RPC between the nodes of a cluster over hacoord's mutual-TLS peer mesh.
//
//   hacoord_example_mesh_rpc node.json [ROUNDS]
// Joins the mesh described by the config's "mesh" section (see README "Peer mesh": make the CA
// and each node's certificate with `hacoord certs`), serves a method "greet", and every second
// asks every other live node to greet it (all) and one of them, the least busy (any). Run it
// once per node, each with its own config. Prints one line per answer; stops after ROUNDS rounds
// (default: until Ctrl-C) and leaves the mesh cleanly (peers see it depart at once).
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "hacoord/config.h"
#include "hacoord/mesh.h"

namespace {

std::atomic<bool> g_stop{false};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s node.json [ROUNDS]\n", argv[0]);
    return 2;
  }
  const long rounds = argc > 2 ? std::strtol(argv[2], nullptr, 10) : -1;
  auto config = hacoord::loadConfigFile(argv[1]);
  if (!config.isOk()) {
    std::fprintf(stderr, "%s\n", config.status().toString().c_str());
    return 1;
  }
  auto mesh = hacoord::Mesh::create(*config);
  if (!mesh.isOk()) {
    std::fprintf(stderr, "%s\n", mesh.status().toString().c_str());
    return 1;
  }
  const std::string self = config->node_id;
  // Handlers run on the mesh's worker threads; the caller's identity is its certificate's.
  hacoord::Status s = (*mesh)->handle(
      "greet", [self](const hacoord::mesh::CallContext& ctx, std::string name, hacoord::mesh::Reply reply) {
        reply("hello " + name + " (asked by " + ctx.peer() + "), from " + self);
      });
  if (s.isOk()) s = (*mesh)->start();
  if (!s.isOk()) {
    std::fprintf(stderr, "%s\n", s.toString().c_str());
    return 1;
  }
  (*mesh)->onPeerEvent([](const hacoord::mesh::PeerInfo& p) {
    std::printf("peer %s is %s\n", p.id.c_str(), std::string(hacoord::mesh::peerStateName(p.state)).c_str());
    std::fflush(stdout);
  });
  std::signal(SIGINT, [](int) { g_stop = true; });
  std::signal(SIGTERM, [](int) { g_stop = true; });

  hacoord::mesh::CallOptions options;
  options.timeout = std::chrono::seconds(1);  // every call has a deadline
  for (long round = 0; !g_stop && (rounds < 0 || round < rounds); ++round) {
    for (const auto& reply : (*mesh)->allSync("greet", self, options)) {
      std::printf("all: %s -> %s\n", reply.peer.c_str(),
                  reply.reply.isOk() ? reply.reply->c_str() : reply.reply.status().toString().c_str());
    }
    auto one = (*mesh)->anySync("greet", self, options);
    std::printf("any: %s -> %s\n", one.peer.c_str(),
                one.reply.isOk() ? one.reply->c_str() : one.reply.status().toString().c_str());
    std::fflush(stdout);
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  (*mesh)->stop();
  return 0;
}
