// LogCapture: an in-memory spdlog sink swapped in for a module logger's own sinks.
#include "support/log_capture.h"

#include <algorithm>
#include <mutex>

#include <spdlog/sinks/base_sink.h>

#include "core/logging.h"

namespace hacoord::test {

// Keeps each message's text; the time, level and module name are left to the logger's own sinks.
class LogCapture::Sink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  std::vector<std::string> lines() {
    std::lock_guard lock(mutex_);
    return lines_;
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    lines_.emplace_back(msg.payload.data(), msg.payload.size());
  }
  void flush_() override {}

 private:
  std::vector<std::string> lines_;
};

LogCapture::LogCapture(const std::string& module, spdlog::level::level_enum level)
    : logger_(moduleLogger(module)),
      sink_(std::make_shared<Sink>()),
      saved_sinks_(logger_->sinks()),
      saved_level_(logger_->level()) {
  logger_->sinks() = {sink_};
  logger_->set_level(level);
}

LogCapture::~LogCapture() {
  logger_->sinks() = saved_sinks_;
  logger_->set_level(saved_level_);
}

std::vector<std::string> LogCapture::lines() const { return sink_->lines(); }

bool LogCapture::contains(std::string_view text) const {
  const auto all = lines();
  return std::any_of(all.begin(), all.end(),
                     [text](const std::string& line) { return line.find(text) != std::string::npos; });
}

std::string LogCapture::text() const {
  std::string out;
  for (const auto& line : lines()) out += line + "\n";
  return out;
}

}  // namespace hacoord::test
