// Shared pieces of the hacoord command line: exit codes, argument parsing, one-line errors.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "hacoord/config.h"
#include "hacoord/node_status.h"

namespace hacoord::cli {

// Documented in the README; scripts rely on them.
enum ExitCode : int {
  kExitOk = 0,
  kExitFailure = 1,  // the operation failed (NATS unreachable, bucket missing, not leader, ...)
  kExitUsage = 2,    // bad command line
  kExitConfig = 3,   // the config file is missing or invalid
};

struct Args {
  std::string command;
  std::map<std::string, std::string> options;  // --config FILE -> {"config", "FILE"}
  std::vector<std::string> flags;              // --json
  std::vector<std::string> positional;
  bool has(const std::string& flag) const;
};

// Parses `argv` given which options take a value. Returns false with `error` set on bad input.
bool parseArgs(int argc, char** argv, const std::vector<std::string>& valued, Args& out, std::string& error);
// Prints "hacoord: <message>" to stderr.
void printError(const std::string& message);
// Loads --config or prints the reason; returns false on failure.
bool loadConfigOption(const Args& args, Config& config);

// One line per mesh peer (id, state[/reason], rtt, division, incarnation, address), each prefixed
// by `indent`, under a header line.
void printPeers(const std::vector<PeerStatus>& peers, const char* indent = "");

int runDaemon(const Args& args);
int runStatus(const Args& args);
int runControl(const Args& args);  // health, promote, demote, join, leave
int runPeers(const Args& args);    // the local node's mesh peers
int runPing(const Args& args);     // the local node's mesh round trip to a peer
int runInit(const Args& args);
int runCerts(const Args& args);  // certs init-ca, certs issue

}  // namespace hacoord::cli
