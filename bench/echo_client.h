// EchoClient: one way of asking another process to echo bytes back (the mesh, or an anchor), so
// mesh_bench measures each the same way.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace hacoord::bench {

struct Throughput {
  std::uint64_t completed = 0;  // calls answered with the payload inside the window
  std::uint64_t failed = 0;
  double seconds = 0;
  double perSecond() const { return seconds > 0 ? static_cast<double>(completed) / seconds : 0; }
};

class EchoClient {
 public:
  virtual ~EchoClient() = default;
  // One call, blocking, with a 2 s deadline; false (and why) unless the payload came back.
  virtual bool call(const std::string& payload, std::string& error) = 0;
  // Keeps `inflight` calls in flight for `window`, each re-issued as it completes.
  virtual Throughput throughput(const std::string& payload, int inflight,
                                std::chrono::milliseconds window) = 0;
};

}  // namespace hacoord::bench
