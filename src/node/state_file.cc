// StateFile: load, validate and atomically replace the node's epoch floor.
#include "node/state_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <json/json.h>

#include "core/json_reader.h"
#include "core/logging.h"
#include "hacoord/lease.h"

namespace hacoord {
namespace {

std::string errnoText() { return std::strerror(errno); }

// mkdir -p with mode 0700 for the parts it creates.
Status makeDirs(const std::string& dir) {
  std::string path;
  std::stringstream parts(dir);
  std::string part;
  if (!dir.empty() && dir.front() == '/') path = "/";
  while (std::getline(parts, part, '/')) {
    if (part.empty()) continue;
    path += part;
    if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
      return invalidArgument("stateDir " + dir + ": cannot create " + path + ": " + errnoText());
    }
    path += "/";
  }
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return invalidArgument("stateDir " + dir + " is not a directory");
  }
  return Status::ok();
}

Status writeAll(int fd, const std::string& data, const std::string& path) {
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return unavailable("cannot write " + path + ": " + errnoText());
    }
    done += static_cast<std::size_t>(n);
  }
  return Status::ok();
}

}  // namespace

StateFile::StateFile(std::string dir, std::string path, Epoch epoch, milliseconds lease)
    : dir_(std::move(dir)), path_(std::move(path)), epoch_(epoch), lease_(lease) {}

Result<std::unique_ptr<StateFile>> StateFile::open(const std::string& dir, const std::string& cluster,
                                                   const std::string& node) {
  if (Status s = makeDirs(dir); !s.isOk()) return s;
  const std::string path = dir + "/" + cluster + "." + node + ".state";
  std::ifstream in(path);
  Epoch epoch;
  milliseconds lease{0};
  if (in.good()) {
    std::stringstream text;
    text << in.rdbuf();
    const std::string body = text.str();
    Json::Value v;
    if (!json::parseObject(body, v) || !v["epoch"].isUInt64() || !v["longestLeaseMs"].isUInt64() ||
        v["epoch"].asUInt64() > Epoch::kMax ||
        v["longestLeaseMs"].asUInt64() > static_cast<std::uint64_t>(kMaxLease.count())) {
      return Status(StatusCode::kDataLoss,
                    "state file " + path +
                        " is damaged (expected {\"epoch\": N, "
                        "\"longestLeaseMs\": M} with N <= 2^62 and M <= 86400000); hacoord will not guess "
                        "the highest epoch it has "
                        "seen. If the lease bucket still exists, deleting this file is safe (the "
                        "bucket holds the latest epoch)");
    }
    epoch = Epoch(v["epoch"].asUInt64());
    lease = milliseconds(v["longestLeaseMs"].asUInt64());
  }
  std::unique_ptr<StateFile> file(new StateFile(dir, path, epoch, lease));
  // Prove now that the directory is writable: at the first epoch would be too late.
  if (Status s = file->write(epoch, lease); !s.isOk()) {
    return invalidArgument("stateDir " + dir + ": " + s.message());
  }
  return file;
}

Status StateFile::raise(Epoch epoch, milliseconds lease) {
  const Epoch new_epoch = std::max(epoch_, epoch);
  const milliseconds new_lease = std::max(lease_, lease);
  if (new_epoch == epoch_ && new_lease == lease_) return Status::ok();
  if (Status s = write(new_epoch, new_lease); !s.isOk()) return s;
  epoch_ = new_epoch;
  lease_ = new_lease;
  return Status::ok();
}

Status StateFile::write(Epoch epoch, milliseconds lease) {
  const std::string tmp = path_ + ".tmp";
  const std::string body = "{\"epoch\": " + std::to_string(epoch.value()) +
                           ", \"longestLeaseMs\": " + std::to_string(lease.count()) + "}\n";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return unavailable("cannot write " + tmp + ": " + errnoText());
  Status s = writeAll(fd, body, tmp);
  if (s.isOk() && ::fsync(fd) != 0) s = unavailable("cannot fsync " + tmp + ": " + errnoText());
  ::close(fd);
  if (!s.isOk()) return s;
  if (::rename(tmp.c_str(), path_.c_str()) != 0) {
    return unavailable("cannot replace " + path_ + ": " + errnoText());
  }
  const int dfd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return unavailable("cannot open " + dir_ + " to fsync it: " + errnoText());
  const int rc = ::fsync(dfd);
  ::close(dfd);
  if (rc != 0) return unavailable("cannot fsync " + dir_ + ": " + errnoText());
  return Status::ok();
}

}  // namespace hacoord
