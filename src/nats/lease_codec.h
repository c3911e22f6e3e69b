// Lease record <-> JSON, exactly the fields of DESIGN §3.
#pragma once

#include <string>
#include <string_view>

#include "hacoord/lease.h"
#include "hacoord/status.h"

namespace hacoord {

std::string encodeLease(const LeaseRecord& record);
// DataLoss with the reason when the bytes are not a lease record.
Result<LeaseRecord> decodeLease(std::string_view bytes);

}  // namespace hacoord
