// Status and Result<T>: error values with abseil-style codes, used instead of exceptions after start-up.
#pragma once

#include <cassert>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace hacoord {

// Codes follow abseil: the caller's reaction depends on the code, not the text.
enum class StatusCode {
  kOk = 0,
  kCancelled,         // the operation was stopped by its owner
  kInvalidArgument,   // bad input: fix the input, do not retry
  kDeadlineExceeded,  // no answer in time: the outcome is unknown (a write may have landed)
  kNotFound,
  kAlreadyExists,
  kPermissionDenied,
  kFailedPrecondition,  // not in the state the call needs (e.g. not leader)
  kAborted,             // lost a compare-and-set or used a stale epoch: re-read, never retry blindly
  kUnavailable,         // transient: retry later (NATS down, no responders)
  kInternal,
  kDataLoss,           // stored data could not be decoded
  kResourceExhausted,  // a limit was hit (message size, queue, concurrency): back off or send less
};
// The highest code, for tables that walk every code.
inline constexpr StatusCode kLastStatusCode = StatusCode::kResourceExhausted;

std::string_view statusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status ok() { return Status(); }

  bool isOk() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "ABORTED: wrong last sequence" style, for logs and the command line.
  std::string toString() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status invalidArgument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
inline Status unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
inline Status aborted(std::string m) { return {StatusCode::kAborted, std::move(m)}; }
inline Status failedPrecondition(std::string m) { return {StatusCode::kFailedPrecondition, std::move(m)}; }
inline Status deadlineExceeded(std::string m) { return {StatusCode::kDeadlineExceeded, std::move(m)}; }
inline Status notFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status internalError(std::string m) { return {StatusCode::kInternal, std::move(m)}; }
inline Status resourceExhausted(std::string m) { return {StatusCode::kResourceExhausted, std::move(m)}; }

// A value or the Status that explains why there is none.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}        // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {  // NOLINT
    if (std::get<Status>(v_).isOk()) {
      std::abort();  // an OK Status carries no value: a programming error
    }
  }

  bool isOk() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return isOk() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace hacoord
