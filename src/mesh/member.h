// MemberRecord: what a node publishes about itself in the members bucket (DESIGN §6.1), and the
// source of truth the mesh checks a peer's certificate against.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "hacoord/status.h"

namespace hacoord::mesh {

struct MemberRecord {
  std::string node;                      // the key's node id (m.<node>); must equal the SAN's
  std::uint64_t incarnation = 0;         // new on every daemon start
  std::vector<std::string> addrs;        // "host:port" to dial, in order of preference
  std::string division;                  // "dc1/r2", "" for none
  std::string type;                      // free-form node type ("db", "web")
  std::vector<std::string> cert_sha256;  // lower-case hex leaf fingerprints (two while rotating)
  std::uint64_t meta_version = 0;
  std::uint16_t proto = 1;  // highest mesh protocol version spoken
  bool operator==(const MemberRecord&) const = default;
};

// JSON codec for the record (the members bucket holds JSON, like the lease bucket, so `nats kv get`
// shows it). Decoding refuses: not an object, a missing or mistyped field, node not matching
// `key_node`, an empty addrs list, an addr that is not host:port, a fingerprint that is not 64
// lower-case hex digits, more than 8 addrs or fingerprints, a division with empty segments.
std::string encodeMemberRecord(const MemberRecord& r);
Result<MemberRecord> decodeMemberRecord(const std::string& key_node, const std::string& json);

// Where member records come from (NATS in production, a table in the simulation). Events are
// delivered on the mesh's Scheduler.
class MemberSource {
 public:
  struct Events {
    std::function<void(const MemberRecord&)> on_upsert;    // a new or changed record
    std::function<void(const std::string& node)> on_gone;  // deleted, purged or expired
  };
  virtual ~MemberSource() = default;
  virtual void start(Events events) = 0;
  // Publishes our own record now and re-publishes it every refresh interval until stop().
  virtual void publish(const MemberRecord& self) = 0;
  virtual void stop() = 0;  // also deletes our record (a clean departure)
};

}  // namespace hacoord::mesh
