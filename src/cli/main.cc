// hacoord: the command-line entry point (daemon, status, health, peers, ping, promote, demote,
// join, leave, init, certs).
#include <cstdio>
#include <exception>
#include <iostream>

#include "cli/cli.h"
#include "hacoord/manager.h"
#include "nats/nats_connection.h"

namespace hacoord::cli {
namespace {

constexpr const char* kUsage =
    "usage: hacoord <command> [options]\n"
    "\n"
    "commands (FILE is the node's config; the CLI only reads it to reach NATS):\n"
    "  daemon --config FILE                 run a node: lease, VIP, health, control; SIGTERM hands over\n"
    "  status --config FILE [--json] [--watch]  the lease record and every node's status, one table\n"
    "  health --config FILE NODE [--json]   one node's status; exit 1 if it is down or unhealthy\n"
    "  promote --config FILE NODE [--force] the live leader hands over to NODE\n"
    "  demote --config FILE [NODE] [--force]  NODE (default: the leader) hands over\n"
    "                                       (at most one handover per cooldownMs; --force: the\n"
    "                                       operator's NATS user overrides that)\n"
    "  peers --config FILE [--json]         this config's node's mesh peers: state, rtt, division;\n"
    "                                       exit 1 if it does not answer or has no mesh\n"
    "  ping --config FILE NODE [--count N] [--json]  the mesh round trip from this config's node\n"
    "                                       (its daemon sends N sys.ping, default 3, max 100) to\n"
    "                                       NODE; exit 1 if it does not answer, has no mesh, or\n"
    "                                       every ping failed\n"
    "  join --config FILE [NODE]            NODE (default: this config's node) becomes a candidate\n"
    "  leave --config FILE [NODE]           NODE stops being a candidate (hands over if leader)\n"
    "  init [--cluster ID] [--node ID] [--force] [FILE]  write a commented sample config\n"
    "  certs init-ca --dir DIR              a new cluster CA: DIR/ca.key (0600), DIR/ca.crt\n"
    "  certs issue --dir DIR --cluster ID --node ID [--out OUT]\n"
    "                                       a node certificate from DIR's CA: OUT/ID.key (0600),\n"
    "                                       OUT/ID.crt, OUT/ca.crt (default OUT: DIR/ID); never\n"
    "                                       overwrites; prints the sha256 for the members record\n"
    "  version                              print the version\n"
    "\n"
    "exit codes: 0 ok, 1 operation failed, 2 usage error, 3 config error\n";

}  // namespace

bool Args::has(const std::string& flag) const {
  for (const auto& f : flags) {
    if (f == flag) return true;
  }
  return false;
}

bool parseArgs(int argc, char** argv, const std::vector<std::string>& valued, Args& out, std::string& error) {
  if (argc < 2) {
    error = "missing command";
    return false;
  }
  out.command = argv[1];
  for (int i = 2; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--", 0) != 0) {
      out.positional.push_back(arg);
      continue;
    }
    std::string name = arg.substr(2);
    std::string value;
    const auto eq = name.find('=');
    const bool inline_value = eq != std::string::npos;
    if (inline_value) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    bool takes_value = false;
    for (const auto& v : valued) takes_value = takes_value || v == name;
    if (!takes_value) {
      if (inline_value) {
        error = "option --" + name + " takes no value";
        return false;
      }
      out.flags.push_back(name);
      continue;
    }
    if (!inline_value) {
      if (i + 1 >= argc) {
        error = "option --" + name + " needs a value";
        return false;
      }
      value = argv[++i];
    }
    out.options[name] = value;
  }
  return true;
}

void printError(const std::string& message) { std::fprintf(stderr, "hacoord: %s\n", message.c_str()); }

bool loadConfigOption(const Args& args, Config& config) {
  auto it = args.options.find("config");
  if (it == args.options.end()) {
    printError(args.command + ": --config FILE is required");
    return false;
  }
  auto loaded = loadConfigFile(it->second);
  if (!loaded.isOk()) {
    printError(loaded.status().message());
    return false;
  }
  config = std::move(*loaded);
  return true;
}

namespace {

int dispatch(int argc, char** argv) {
  Args args;
  std::string error;
  if (argc < 2) {
    std::fputs(kUsage, stderr);
    return kExitUsage;
  }
  // Usage errors are one line on stderr (scripts and log collectors read them); the usage text
  // is one `hacoord help` away.
  if (!parseArgs(argc, argv, {"config", "cluster", "node", "dir", "out", "count"}, args, error)) {
    printError(error + " (see 'hacoord help')");
    return kExitUsage;
  }
  const std::vector<std::string> known_flags = {"json", "help", "watch", "force"};
  for (const auto& f : args.flags) {
    bool known = false;
    for (const auto& k : known_flags) known = known || f == k;
    if (!known) {
      printError("unknown option --" + f + " (see 'hacoord help')");
      return kExitUsage;
    }
  }
  if (args.command == "help" || args.command == "--help" || args.has("help")) {
    std::fputs(kUsage, stdout);
    return kExitOk;
  }
  if (args.command == "version") {
    std::printf("hacoord %s (nats.c %s)\n", HACOORD_VERSION, natsLibraryVersion().c_str());
    return kExitOk;
  }
  if (args.command == "daemon") return runDaemon(args);  // signals stay blocked (see main)
  Manager::unblockDaemonSignals();                       // the client commands die of SIGTERM / ^C as usual
  if (args.command == "status") return runStatus(args);
  if (args.command == "peers") return runPeers(args);
  if (args.command == "ping") return runPing(args);
  if (args.command == "init") return runInit(args);
  if (args.command == "certs") return runCerts(args);
  for (const char* c : {"health", "promote", "demote", "join", "leave"}) {
    if (args.command == c) return runControl(args);
  }
  printError("unknown command '" + args.command + "' (see 'hacoord help')");
  return kExitUsage;
}

}  // namespace
}  // namespace hacoord::cli

int main(int argc, char** argv) {
  // First, before any thread exists and before the config is read: every thread inherits the
  // mask, so a SIGTERM during a daemon's start-up waits for its sigwait() and becomes a planned
  // handover instead of killing the process. (Only the few ms of exec and dynamic loading before
  // main remain, when nothing has been started that could be lost.)
  hacoord::Manager::blockDaemonSignals();
  int code;
  try {
    code = hacoord::cli::dispatch(argc, argv);
  } catch (const std::exception& e) {
    hacoord::cli::printError(std::string("fatal: ") + e.what());
    code = hacoord::cli::kExitFailure;
  }
  hacoord::natsLibraryClose(hacoord::milliseconds(1000));
  return code;
}
