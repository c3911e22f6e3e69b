// Status names and formatting; role and loss-reason names.
#include "hacoord/status.h"

#include "hacoord/hooks.h"
#include "hacoord/lease.h"

namespace hacoord {

std::string_view statusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return "OK";
    case StatusCode::kCancelled:
      return "CANCELLED";
    case StatusCode::kInvalidArgument:
      return "INVALID_ARGUMENT";
    case StatusCode::kDeadlineExceeded:
      return "DEADLINE_EXCEEDED";
    case StatusCode::kNotFound:
      return "NOT_FOUND";
    case StatusCode::kAlreadyExists:
      return "ALREADY_EXISTS";
    case StatusCode::kPermissionDenied:
      return "PERMISSION_DENIED";
    case StatusCode::kFailedPrecondition:
      return "FAILED_PRECONDITION";
    case StatusCode::kAborted:
      return "ABORTED";
    case StatusCode::kUnavailable:
      return "UNAVAILABLE";
    case StatusCode::kInternal:
      return "INTERNAL";
    case StatusCode::kDataLoss:
      return "DATA_LOSS";
    case StatusCode::kResourceExhausted:
      return "RESOURCE_EXHAUSTED";
  }
  return "UNKNOWN";
}

std::string Status::toString() const {
  if (isOk()) return "OK";
  std::string out(statusCodeName(code_));
  if (!message_.empty()) {
    out += ": ";
    out += message_;
  }
  return out;
}

std::string_view roleName(Role role) {
  switch (role) {
    case Role::kFollower:
      return "follower";
    case Role::kLeader:
      return "leader";
    case Role::kStopped:
      return "stopped";
  }
  return "unknown";
}

std::string_view lossReasonName(LossReason reason) {
  switch (reason) {
    case LossReason::kSteppedDown:
      return "stepped-down";
    case LossReason::kLeaseExpired:
      return "lease-expired";
    case LossReason::kSuperseded:
      return "superseded";
    case LossReason::kHookFailed:
      return "hook-failed";
    case LossReason::kStopped:
      return "stopped";
  }
  return "unknown";
}

std::string_view leaseEntryKindName(LeaseEntryKind kind) {
  switch (kind) {
    case LeaseEntryKind::kAbsent:
      return "absent";
    case LeaseEntryKind::kRecord:
      return "record";
    case LeaseEntryKind::kMarker:
      return "marker";
    case LeaseEntryKind::kUndecodable:
      return "undecodable";
  }
  return "unknown";
}

}  // namespace hacoord
