// Lease record codec: round trip, and garbage from the bucket is DataLoss, never a crash.
#include "nats/lease_codec.h"

#include <string>

#include <gtest/gtest.h>

namespace hacoord {
namespace {

TEST(LeaseCodec, RoundTrips) {
  LeaseRecord r;
  r.holder = "node-1";
  r.incarnation = "4f2a9c1e";
  r.epoch = Epoch(Epoch::kMax);  // the largest accepted
  r.lease = kMaxLease;
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

// A record without its holder is not vacant (that is holder ""): the holder is unknown, and a
// follower must wait a TTL, not campaign at once. Values past the bounds are refused: a leaseMs of
// 10^12 would stop every node from campaigning for good once the holder is unknown (and ms -> ns
// overflows past ~9.2e12); an epoch near 2^64 would leave no room to campaign above it.
TEST(LeaseCodec, MissingFieldsAndOutOfRangeValuesAreDataLoss) {
  expectDataLoss(R"({"incarnation":"i","epoch":9,"leaseMs":2000})");
  expectDataLoss(R"({"holder":"a","epoch":9,"leaseMs":2000})");
  expectDataLoss(R"({"holder":"a","incarnation":"i","leaseMs":2000})");
  expectDataLoss(R"({"holder":"a","incarnation":"i","epoch":9})");
  expectDataLoss(R"({"holder":"a","incarnation":"i","epoch":9,"leaseMs":86400001})");
  expectDataLoss(R"({"holder":"a","incarnation":"i","epoch":9,"leaseMs":1000000000000})");
  expectDataLoss(R"({"holder":"a","incarnation":"i","epoch":4611686018427387905,"leaseMs":2000})");
  expectDataLoss(R"({"holder":"a","incarnation":"i","epoch":18446744073709551615,"leaseMs":2000})");
  expectDataLoss(R"({"holder":"a","incarnation":"i","epoch":9,"leaseMs":2000,"successor":5})");
  // A vacant record (handover) and one without a successor (optional) are records.
  auto vacant = decodeLease(R"({"holder":"","incarnation":"","epoch":9,"leaseMs":2000})");
  ASSERT_TRUE(vacant.isOk()) << vacant.status().toString();
  EXPECT_TRUE(vacant->vacant());
  EXPECT_TRUE(decodeLease(R"({"holder":"a","incarnation":"i","epoch":9,"leaseMs":2000})").isOk());
}

// jsoncpp throws past 1000 levels of nesting; that used to abort every node reading the bucket.
// (Fuzzing found it in the status decoder, which parsed the same way.)
TEST(LeaseCodec, DeepNestingIsDataLossNotACrash) {
  expectDataLoss(std::string(1016, '['));
  expectDataLoss(R"({"holder":)" + std::string(5000, '{'));
}

}  // namespace
}  // namespace hacoord
