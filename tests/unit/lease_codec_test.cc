// Lease record codec: round trip, and garbage from the bucket is DataLoss, never a crash.
// Includes the codec by its path on this branch (src/election/); it may move to src/nats/.
#include "nats/lease_codec.h"

#include <string>

#include <gtest/gtest.h>

namespace hacoord {
namespace {

TEST(LeaseCodec, RoundTrips) {
  LeaseRecord r;
  r.holder = "node-1";
  r.incarnation = "4f2a9c1e";
  r.epoch = Epoch(18446744073709551615ull);
  r.lease = milliseconds(2000);
  r.successor = "node-2";
  auto back = decodeLease(encodeLease(r));
  ASSERT_TRUE(back.isOk()) << back.status().toString();
  EXPECT_EQ(*back, r);
}

void expectDataLoss(const std::string& bytes) {
  auto r = decodeLease(bytes);
  ASSERT_FALSE(r.isOk()) << "accepted: " << bytes.substr(0, 80);
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << r.status().toString();
}

TEST(LeaseCodec, GarbageIsDataLoss) {
  expectDataLoss("");
  expectDataLoss("[1]");
  expectDataLoss(R"({"holder":"a","epoch":-1,"leaseMs":2000})");
  expectDataLoss(R"({"holder":"a","epoch":1,"leaseMs":0})");
  expectDataLoss(R"({"holder":7,"epoch":1,"leaseMs":2000})");
}

// jsoncpp throws past 1000 levels of nesting; that used to abort every node reading the bucket.
// (Fuzzing found it in the status decoder, which parsed the same way.)
TEST(LeaseCodec, DeepNestingIsDataLossNotACrash) {
  expectDataLoss(std::string(1016, '['));
  expectDataLoss(R"({"holder":)" + std::string(5000, '{'));
}

}  // namespace
}  // namespace hacoord
