// `hacoord certs init-ca|issue`: the cluster CA and node certificates of the peer mesh (DESIGN §6.1).
#include <sys/stat.h>

#include <cstdio>
#include <set>

#include "cli/cli.h"
#include "mesh/certs.h"

namespace hacoord::cli {
namespace {

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

// The option `name`, or "" with a usage error printed when it is missing or empty.
bool requireOption(const Args& args, const std::string& sub, const std::string& name, std::string& value) {
  auto it = args.options.find(name);
  if (it == args.options.end() || it->second.empty()) {
    printError("certs " + sub + ": --" + name + " is required (see 'hacoord help')");
    return false;
  }
  value = it->second;
  return true;
}

// Only `allowed` options, no flags, no positional arguments after the subcommand.
bool onlyOptions(const Args& args, const std::string& sub, const std::set<std::string>& allowed) {
  for (const auto& [name, value] : args.options) {
    if (allowed.count(name) == 0) {
      printError("certs " + sub + " does not take --" + name + " (see 'hacoord help')");
      return false;
    }
  }
  if (!args.flags.empty()) {
    printError("certs " + sub + " does not take --" + args.flags.front() + " (see 'hacoord help')");
    return false;
  }
  if (args.positional.size() > 1) {
    printError("certs " + sub + ": unexpected argument '" + args.positional[1] + "' (see 'hacoord help')");
    return false;
  }
  return true;
}

int initCa(const Args& args) {
  std::string dir;
  if (!onlyOptions(args, "init-ca", {"dir"}) || !requireOption(args, "init-ca", "dir", dir))
    return kExitUsage;
  if (Status s = mesh::initCa(dir); !s.isOk()) {
    printError("certs init-ca: " + s.message());
    return kExitFailure;
  }
  const mesh::CaFiles files{dir};
  auto fingerprint = mesh::fingerprintOfPemFile(files.cert());
  if (!fingerprint.isOk()) {
    printError("certs init-ca: " + fingerprint.status().message());
    return kExitFailure;
  }
  std::printf("wrote %s (0600: the CA key; keep it off the nodes)\n", files.key().c_str());
  std::printf("wrote %s\n", files.cert().c_str());
  std::printf("sha256 %s\n", fingerprint->c_str());
  return kExitOk;
}

int issue(const Args& args) {
  std::string dir;
  std::string cluster;
  std::string node;
  if (!onlyOptions(args, "issue", {"dir", "cluster", "node", "out"}) ||
      !requireOption(args, "issue", "dir", dir) || !requireOption(args, "issue", "cluster", cluster) ||
      !requireOption(args, "issue", "node", node)) {
    return kExitUsage;
  }
  for (const auto& [what, id] : {std::pair{"--cluster", &cluster}, std::pair{"--node", &node}}) {
    if (Status s = mesh::checkId(what, *id); !s.isOk()) {
      printError("certs issue: " + s.message());
      return kExitUsage;
    }
  }
  auto out_it = args.options.find("out");
  // The default keeps each node's files in their own directory under the CA's, ready to copy
  // to that node; the CA key stays one level up.
  const std::string out = out_it != args.options.end() ? out_it->second : dir + "/" + node;
  if (out.empty()) {
    printError("certs issue: --out must not be empty");
    return kExitUsage;
  }
  mesh::IssueOptions options;
  options.cluster = cluster;
  options.node = node;
  const mesh::NodeFiles files{out, node};
  const bool had_ca = exists(files.ca());
  auto fingerprint = mesh::issueCert(dir, out, options);
  if (!fingerprint.isOk()) {
    printError("certs issue: " + fingerprint.status().message());
    return kExitFailure;
  }
  std::printf("wrote %s (0600)\n", files.key().c_str());
  std::printf("wrote %s\n", files.cert().c_str());
  std::printf("%s %s\n", had_ca ? "kept" : "wrote", files.ca().c_str());
  std::printf("identity %s\n", mesh::nodeUri(cluster, node).c_str());
  std::printf("sha256 %s\n", fingerprint->c_str());
  return kExitOk;
}

}  // namespace

int runCerts(const Args& args) {
  const std::string sub = args.positional.empty() ? "" : args.positional.front();
  if (sub == "init-ca") return initCa(args);
  if (sub == "issue") return issue(args);
  printError(sub.empty() ? "certs: missing subcommand: init-ca or issue (see 'hacoord help')"
                         : "certs: unknown subcommand '" + sub + "': init-ca or issue (see 'hacoord help')");
  return kExitUsage;
}

}  // namespace hacoord::cli
