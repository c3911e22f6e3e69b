// StateFile: the epoch floor on disk. A damaged or out-of-range file is refused with a clear
// error, never guessed at; a good one comes back exactly.
#include "node/state_file.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "hacoord/lease.h"

namespace hacoord {
namespace {

class StateFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (std::filesystem::temp_directory_path() / "hacoord-statefile-XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  void writeFile(const std::string& body) { std::ofstream(dir_ + "/c.n.state") << body; }

  std::string dir_;
};

TEST_F(StateFileTest, RaisesSurviveAReopen) {
  auto file = StateFile::open(dir_, "c", "n");
  ASSERT_TRUE(file.isOk()) << file.status().toString();
  EXPECT_EQ((*file)->current(), Epoch(0));
  ASSERT_TRUE((*file)->raise(Epoch(41), milliseconds(2500)).isOk());
  ASSERT_TRUE((*file)->raise(Epoch(7), milliseconds(100)).isOk());  // never lowers
  auto again = StateFile::open(dir_, "c", "n");
  ASSERT_TRUE(again.isOk()) << again.status().toString();
  EXPECT_EQ((*again)->current(), Epoch(41));
  EXPECT_EQ((*again)->longestLease(), milliseconds(2500));
}

TEST_F(StateFileTest, DamagedOrOutOfRangeFilesAreRefusedNamingTheFile) {
  for (const std::string& body : {std::string(""), std::string("{"), std::string(R"({"epoch":3})"),
                                  std::string(R"({"epoch":-3,"longestLeaseMs":1})"),
                                  std::string(R"({"epoch":4611686018427387905,"longestLeaseMs":2000})"),
                                  std::string(R"({"epoch":3,"longestLeaseMs":86400001})")}) {
    writeFile(body);
    auto file = StateFile::open(dir_, "c", "n");
    ASSERT_FALSE(file.isOk()) << "accepted: " << body;
    EXPECT_EQ(file.status().code(), StatusCode::kDataLoss) << body;
    EXPECT_NE(file.status().message().find(dir_ + "/c.n.state"), std::string::npos)
        << file.status().toString();
  }
  writeFile(R"({"epoch":4611686018427387904,"longestLeaseMs":86400000})");  // the bounds themselves
  auto file = StateFile::open(dir_, "c", "n");
  ASSERT_TRUE(file.isOk()) << file.status().toString();
  EXPECT_EQ((*file)->current(), Epoch(Epoch::kMax));
  EXPECT_EQ((*file)->longestLease(), kMaxLease);
}

}  // namespace
}  // namespace hacoord
