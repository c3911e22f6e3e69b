// StateFile: the node's EpochFloor on disk (<stateDir>/<cluster>.<node>.state), fsynced.
#pragma once

#include <memory>
#include <string>

#include "election/epoch_floor.h"
#include "hacoord/status.h"

namespace hacoord {

// {"epoch": N, "longestLeaseMs": M} in one small file, replaced atomically (write a temporary
// file, fsync it, rename it over the old one, fsync the directory), so a crash at any point
// leaves either the old or the new content and never a torn one.
class StateFile final : public EpochFloor {
 public:
  // Creates `dir` (0700) if missing and loads the file if present. InvalidArgument when the
  // directory cannot be made or written (the message names it and says why), DataLoss when the
  // file exists but cannot be read as a state file: the node then refuses to start, because
  // guessing a floor could hand out an epoch twice.
  static Result<std::unique_ptr<StateFile>> open(const std::string& dir, const std::string& cluster,
                                                 const std::string& node);

  Epoch current() const override { return epoch_; }
  milliseconds longestLease() const override { return lease_; }
  Status raise(Epoch epoch, milliseconds lease = milliseconds(0)) override;

  const std::string& path() const { return path_; }

 private:
  StateFile(std::string dir, std::string path, Epoch epoch, milliseconds lease);
  Status write(Epoch epoch, milliseconds lease);

  std::string dir_;
  std::string path_;
  Epoch epoch_;
  milliseconds lease_{0};
};

}  // namespace hacoord
