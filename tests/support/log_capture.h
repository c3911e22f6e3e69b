// LogCapture: a module logger's messages kept in memory for the length of a test (RAII).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <spdlog/spdlog.h>

namespace hacoord::test {

// While it lives, the module's logger writes only into this capture, at `level` and above; the
// destructor gives the logger back its own sinks and level. Construct it after the test's
// setLogLevel(), which would otherwise override `level`. Reads are safe while other threads log.
//   test::LogCapture capture("hooks");
//   ...
//   EXPECT_TRUE(capture.contains("onBecomeLeader: promoting")) << capture.text();
class LogCapture {
 public:
  explicit LogCapture(const std::string& module, spdlog::level::level_enum level = spdlog::level::info);
  ~LogCapture();
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;

  // The messages logged so far, one per log call, without time, level or module name.
  std::vector<std::string> lines() const;
  // True if some message contains `text`.
  bool contains(std::string_view text) const;
  // All the messages, each ending in a newline (for a failing assertion's output).
  std::string text() const;

 private:
  class Sink;
  std::shared_ptr<spdlog::logger> logger_;
  std::shared_ptr<Sink> sink_;
  std::vector<spdlog::sink_ptr> saved_sinks_;
  spdlog::level::level_enum saved_level_;
};

}  // namespace hacoord::test
