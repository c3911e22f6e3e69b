// Config loader tests: every key, type, bound, default and error format, plus the shipped samples.
#include "hacoord/config.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "vip/vip_manager.h"

namespace hacoord {
namespace {

namespace fs = std::filesystem;

const fs::path kSourceDir = HACOORD_SOURCE_DIR;

// ---- document builders: a valid minimal config plus the piece under test ----

std::string doc(const std::string& extra = "") {
  std::string s = R"({"clusterId": "demo", "nodeId": "n1", "nats": {"servers": ["nats://127.0.0.1:4222"]})";
  if (!extra.empty()) s += ", " + extra;
  return s + "}";
}
std::string natsDoc(const std::string& body) {
  return R"({"clusterId": "demo", "nodeId": "n1", "nats": {)" + body + "}}";
}
std::string natsWith(const std::string& more) {
  return natsDoc(R"("servers": ["nats://127.0.0.1:4222"], )" + more);
}
std::string electionDoc(const std::string& body) { return doc(R"("election": {)" + body + "}"); }
std::string vipDoc(const std::string& body) { return doc(R"("vip": {)" + body + "}"); }
std::string vipWith(const std::string& more) {
  return vipDoc(R"("address": "192.0.2.100", "interface": "eth0", )" + more);
}
// A valid mesh section plus `more` (", "-separated members).
std::string meshDoc(const std::string& body) { return doc(R"("mesh": {)" + body + "}"); }
std::string meshAt(const std::string& listen, const std::string& more = "") {
  std::string body =
      R"("listen": ")" + listen + R"(", "ca": "/m/ca.crt", "cert": "/m/n1.crt", "key": "/m/n1.key")";
  return meshDoc(more.empty() ? body : body + ", " + more);
}
std::string meshWith(const std::string& more) { return meshAt("10.0.0.1:7400", more); }
std::string checksDoc(const std::string& checks) { return doc(R"("health": {"checks": [)" + checks + "]}"); }
std::string checkDoc(const std::string& body) { return checksDoc("{" + body + "}"); }
std::string tcpCheckWith(const std::string& more) {
  return checkDoc(R"("name": "port", "type": "tcp", "address": "127.0.0.1:5432", )" + more);
}

Config parseOk(const std::string& json) {
  Result<Config> r = parseConfig(json, "node.json");
  EXPECT_TRUE(r.isOk()) << r.status().toString() << "\n" << json;
  return r.isOk() ? r.value() : Config{};
}

// The whole message, after checking the code and the one-line contract.
std::string errorOf(const std::string& json, std::string_view source = "node.json") {
  Result<Config> r = parseConfig(json, source);
  if (r.isOk()) return "<accepted>";
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message().find('\n'), std::string::npos) << r.status().message();
  return r.status().message();
}

Config validCodeConfig() {
  Config c;
  c.cluster_id = "demo";
  c.node_id = "n1";
  c.nats.servers = {"nats://127.0.0.1:4222"};
  return c;
}

std::string readText(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// ---- rejection table: one document, one exact message ----

struct Rejection {
  std::string name;
  std::string json;
  std::string message;  // without the "node.json: " prefix
};

void PrintTo(const Rejection& r, std::ostream* os) { *os << r.name; }

class RejectionTest : public ::testing::TestWithParam<Rejection> {};

std::string rejectionName(const ::testing::TestParamInfo<Rejection>& param) { return param.param.name; }

TEST_P(RejectionTest, MessageIsExact) {
  EXPECT_EQ(errorOf(GetParam().json), "node.json: " + GetParam().message) << GetParam().json;
}

const std::string kIdRule = "must be 1 to 64 characters from A-Z a-z 0-9 _ -, not starting with - ";

const std::vector<Rejection> kUnknownKeys = {
    {"Root", doc(R"("bogus": 1)"), "bogus: unknown key"},
    {"Nats", natsWith(R"("bogus": 1)"), "nats.bogus: unknown key"},
    {"NatsTls", natsWith(R"("tls": {"ca": "/x", "bogus": 1})"), "nats.tls.bogus: unknown key"},
    {"Election", electionDoc(R"("bogus": 1)"), "election.bogus: unknown key"},
    {"Vip", vipDoc(R"("bogus": 1)"), "vip.bogus: unknown key"},
    {"Health", doc(R"("health": {"bogus": 1})"), "health.bogus: unknown key"},
    {"HealthCheck", tcpCheckWith(R"("bogus": 1)"), "health.checks[0].bogus: unknown key"},
    {"SecondHealthCheck",
     checksDoc(R"({"name": "a", "type": "tcp", "address": "h:1"}, {"name": "b", "bogus": 1})"),
     "health.checks[1].bogus: unknown key"},
    {"Http", doc(R"("http": {"listen": "127.0.0.1:9090", "bogus": 1})"), "http.bogus: unknown key"},
    {"HttpNearMiss", doc(R"("http": {"listen": "127.0.0.1:9090", "maxConnection": 1})"),
     "http.maxConnection: unknown key (did you mean maxConnections?)"},
    {"Hooks", doc(R"("hooks": {"onBecomeLeader": "true", "bogus": 1})"), "hooks.bogus: unknown key"},
    {"HooksNearMiss", doc(R"("hooks": {"onBecomeMaster": "true"})"), "hooks.onBecomeMaster: unknown key"},
    {"HooksCaseTypo", doc(R"("hooks": {"onLeaderchange": "true"})"),
     "hooks.onLeaderchange: unknown key (did you mean onLeaderChange?)"},
    {"StateDirCase", doc(R"("statedir": "/var/lib/x")"), "statedir: unknown key (did you mean stateDir?)"},
    {"NatsPassword", natsWith(R"("password": "s3cret")"), "nats.password: unknown key"},
    {"Log", doc(R"("log": {"bogus": 1})"), "log.bogus: unknown key"},
    {"Mesh", meshWith(R"("bogus": 1)"), "mesh.bogus: unknown key"},
    {"MeshNearMiss", meshWith(R"("pingInterval": 1000)"),
     "mesh.pingInterval: unknown key (did you mean pingIntervalMs?)"},
    {"CaseTypoGetsSuggestion", electionDoc(R"("leaseTTLMs": 2000)"),
     "election.leaseTTLMs: unknown key (did you mean leaseTtlMs?)"},
    {"SpellingTypoGetsSuggestion", vipDoc(R"("netmaks": 24)"),
     "vip.netmaks: unknown key (did you mean netmask?)"},
    {"GoClusterHeartbeat", electionDoc(R"("heartbeatIntervalMs": 3000)"),
     "election.heartbeatIntervalMs: unknown key (go-cluster's heartbeatIntervalMs is "
     "election.renewIntervalMs "
     "here)"},
    {"GoClusterMaxReconnects", natsWith(R"("maxReconnects": -1)"),
     "nats.maxReconnects: unknown key (hacoord reconnects without limit; remove it)"},
    {"GoClusterService", doc(R"("service": {"version": "1.0.0"})"),
     "service: unknown key (go-cluster's service section has no equivalent here; remove it)"},
    {"OddKeyIsQuoted", vipDoc(R"("bad key": 1)"), R"(vip["bad key"]: unknown key)"},
    {"ControlCharInKeyIsEscaped", vipDoc(R"("a\nb": 1)"), R"(vip["a\u000ab"]: unknown key)"},
    {"KeysAreCaseSensitive", doc(R"("ClusterId": "x")"), "ClusterId: unknown key (did you mean clusterId?)"},
};
INSTANTIATE_TEST_SUITE_P(UnknownKey, RejectionTest, ::testing::ValuesIn(kUnknownKeys), rejectionName);

const std::vector<Rejection> kWrongTypes = {
    {"RootArray", "[]", "(root): expected an object, got array"},
    {"ClusterIdNumber", R"({"clusterId": 1, "nodeId": "n1", "nats": {"servers": ["nats://h:1"]}})",
     "clusterId: expected a string, got number"},
    {"NodeIdNull", R"({"clusterId": "demo", "nodeId": null, "nats": {"servers": ["nats://h:1"]}})",
     "nodeId: expected a string, got null"},
    {"NatsString", R"({"clusterId": "demo", "nodeId": "n1", "nats": "nats://h:1"})",
     "nats: expected an object, got string"},
    {"ServersString", natsDoc(R"("servers": "nats://h:1")"),
     "nats.servers: expected an array of strings, got string"},
    {"ServerNumber", natsDoc(R"("servers": ["nats://h:1", 4222])"),
     "nats.servers[1]: expected a string, got number"},
    {"ServerObject", natsDoc(R"("servers": [{}])"), "nats.servers[0]: expected a string, got object"},
    {"CredentialsBool", natsWith(R"("credentials": true)"),
     "nats.credentials: expected a string, got boolean"},
    {"TlsArray", natsWith(R"("tls": [])"), "nats.tls: expected an object, got array"},
    {"TlsCaNumber", natsWith(R"("tls": {"ca": 1})"), "nats.tls.ca: expected a string, got number"},
    {"TlsCertNull", natsWith(R"("tls": {"cert": null})"), "nats.tls.cert: expected a string, got null"},
    {"TlsKeyArray", natsWith(R"("tls": {"key": ["k"]})"), "nats.tls.key: expected a string, got array"},
    {"ElectionArray", doc(R"("election": [])"), "election: expected an object, got array"},
    {"CandidateString", electionDoc(R"("candidate": "yes")"),
     "election.candidate: expected a boolean (true or false), got string"},
    {"CandidateNumber", electionDoc(R"("candidate": 1)"),
     "election.candidate: expected a boolean (true or false), got number"},
    {"BucketReplicasFraction", electionDoc(R"("bucketReplicas": 1.5)"),
     "election.bucketReplicas: expected an integer, got a number with a fraction or exponent"},
    {"BucketReplicasString", electionDoc(R"("bucketReplicas": "3")"),
     "election.bucketReplicas: expected an integer, got string"},
    {"VipString", doc(R"("vip": "192.0.2.1")"), "vip: expected an object, got string"},
    {"VipAddressNumber", vipDoc(R"("address": 3221225985)"), "vip.address: expected a string, got number"},
    {"VipNetmaskString", vipWith(R"("netmask": "255.255.255.0")"),
     "vip.netmask: expected an integer, got string"},
    {"VipInterfaceObject", vipDoc(R"("address": "192.0.2.1", "interface": {})"),
     "vip.interface: expected a string, got object"},
    {"VipGarpCountBool", vipDoc(R"("garpCount": true)"), "vip.garpCount: expected an integer, got boolean"},
    {"VipDuplicateCheckString", vipDoc(R"("duplicateCheck": "false")"),
     "vip.duplicateCheck: expected a boolean (true or false), got string"},
    {"HealthNumber", doc(R"("health": 1)"), "health: expected an object, got number"},
    {"ChecksObject", doc(R"("health": {"checks": {}})"),
     "health.checks: expected an array of objects, got object"},
    {"CheckString", checksDoc(R"("ping")"), "health.checks[0]: expected an object, got string"},
    {"CheckNameNumber", checkDoc(R"("name": 7, "type": "tcp")"),
     "health.checks[0].name: expected a string, got number"},
    {"CheckTypeNumber", checkDoc(R"("name": "a", "type": 1)"),
     "health.checks[0].type: expected a string, got number"},
    {"CheckCommandArray", checkDoc(R"("name": "a", "type": "command", "command": ["ls"])"),
     "health.checks[0].command: expected a string, got array"},
    {"CheckAddressNumber", checkDoc(R"("name": "a", "type": "tcp", "address": 5432)"),
     "health.checks[0].address: expected a string, got number"},
    {"CheckUrlBool", checkDoc(R"("name": "a", "type": "http", "url": false)"),
     "health.checks[0].url: expected a string, got boolean"},
    {"CheckRiseString", tcpCheckWith(R"("rise": "2")"),
     "health.checks[0].rise: expected an integer, got string"},
    {"CheckFallFraction", tcpCheckWith(R"("fall": 2.5)"),
     "health.checks[0].fall: expected an integer, got a number with a fraction or exponent"},
    {"HttpString", doc(R"("http": "127.0.0.1:9090")"), "http: expected an object, got string"},
    {"HttpListenNumber", doc(R"("http": {"listen": 9090})"), "http.listen: expected a string, got number"},
    {"LogArray", doc(R"("log": ["info"])"), "log: expected an object, got array"},
    {"StateDirNumber", doc(R"("stateDir": 1)"), "stateDir: expected a string, got number"},
    {"StateDirNull", doc(R"("stateDir": null)"), "stateDir: expected a string, got null"},
    {"NatsUserNumber", natsWith(R"("user": 7)"), "nats.user: expected a string, got number"},
    {"NatsPasswordFileArray", natsWith(R"("passwordFile": ["/p"])"),
     "nats.passwordFile: expected a string, got array"},
    {"VipAllowString", vipWith(R"("allowWithoutKernelLifetime": "true")"),
     "vip.allowWithoutKernelLifetime: expected a boolean (true or false), got string"},
    {"VipAllowNumber", vipWith(R"("allowWithoutKernelLifetime": 1)"),
     "vip.allowWithoutKernelLifetime: expected a boolean (true or false), got number"},
    {"HooksString", doc(R"("hooks": "/bin/true")"), "hooks: expected an object, got string"},
    {"HookNumber", doc(R"("hooks": {"onBecomeLeader": 1})"),
     "hooks.onBecomeLeader: expected a string, got number"},
    {"HookArray", doc(R"("hooks": {"onLoseLeadership": ["/bin/sh", "-c", "x"]})"),
     "hooks.onLoseLeadership: expected a string, got array"},
    {"HookNull", doc(R"("hooks": {"onLeaderChange": null})"),
     "hooks.onLeaderChange: expected a string, got null"},
    {"HttpMaxConnectionsString", doc(R"("http": {"listen": "127.0.0.1:0", "maxConnections": "64"})"),
     "http.maxConnections: expected an integer, got string"},
    {"HttpMaxConnectionsFraction", doc(R"("http": {"listen": "127.0.0.1:0", "maxConnections": 6.5})"),
     "http.maxConnections: expected an integer, got a number with a fraction or exponent"},
    {"LogLevelNumber", doc(R"("log": {"level": 2})"), "log.level: expected a string, got number"},
    {"MeshString", doc(R"("mesh": "10.0.0.1:7400")"), "mesh: expected an object, got string"},
    {"MeshListenNumber", meshDoc(R"("listen": 7400)"), "mesh.listen: expected a string, got number"},
    {"MeshAdvertiseString", meshWith(R"("advertise": "10.0.0.1:7400")"),
     "mesh.advertise: expected an array of strings, got string"},
    {"MeshAdvertiseNumber", meshWith(R"("advertise": ["10.0.0.1:7400", 7400])"),
     "mesh.advertise[1]: expected a string, got number"},
    {"MeshCaNull", meshDoc(R"("listen": "h:1", "ca": null)"), "mesh.ca: expected a string, got null"},
    {"MeshMaxMessageBytesString", meshWith(R"("maxMessageBytes": "65536")"),
     "mesh.maxMessageBytes: expected an integer, got string"},
};
INSTANTIATE_TEST_SUITE_P(WrongType, RejectionTest, ::testing::ValuesIn(kWrongTypes), rejectionName);

const std::vector<Rejection> kBadValues = {
    // Required keys.
    {"ClusterIdMissing", R"({"nodeId": "n1", "nats": {"servers": ["nats://h:1"]}})", "clusterId: required"},
    {"NodeIdMissing", R"({"clusterId": "demo", "nats": {"servers": ["nats://h:1"]}})", "nodeId: required"},
    {"NatsMissing", R"({"clusterId": "demo", "nodeId": "n1"})", "nats.servers: required"},
    {"ServersMissing", natsDoc(R"("credentials": "/x")"), "nats.servers: required"},
    {"ServersEmpty", natsDoc(R"("servers": [])"), "nats.servers: must list at least one server"},
    // Ids.
    {"ClusterIdSpace", R"({"clusterId": "my cluster", "nodeId": "n1", "nats": {"servers": ["nats://h:1"]}})",
     "clusterId: " + kIdRule + R"((got "my cluster"))"},
    {"ClusterIdWildcard", R"({"clusterId": "a>", "nodeId": "n1", "nats": {"servers": ["nats://h:1"]}})",
     "clusterId: " + kIdRule + R"((got "a>"))"},
    {"NodeIdEmpty", R"({"clusterId": "demo", "nodeId": "", "nats": {"servers": ["nats://h:1"]}})",
     "nodeId: " + kIdRule + R"((got ""))"},
    {"NodeIdDot", R"({"clusterId": "demo", "nodeId": "n.1", "nats": {"servers": ["nats://h:1"]}})",
     "nodeId: " + kIdRule + R"((got "n.1"))"},
    {"NodeIdTooLong",
     R"({"clusterId": "demo", "nodeId": ")" + std::string(65, 'n') +
         R"(", "nats": {"servers": ["nats://h:1"]}})",
     "nodeId: " + kIdRule + "(got \"" + std::string(65, 'n') + "\")"},
    {"NodeIdNul", R"({"clusterId": "demo", "nodeId": "n\u00001", "nats": {"servers": ["nats://h:1"]}})",
     "nodeId: must not contain a NUL character"},
    // NATS servers.
    {"ServerScheme", natsDoc(R"("servers": ["http://h:4222"])"),
     R"(nats.servers[0]: must start with nats:// or tls:// (got "http://h:4222"))"},
    {"ServerNoScheme", natsDoc(R"("servers": ["127.0.0.1:4222"])"),
     R"(nats.servers[0]: must start with nats:// or tls:// (got "127.0.0.1:4222"))"},
    {"ServerNoPort", natsDoc(R"("servers": ["nats://127.0.0.1:4222", "nats://127.0.0.1"])"),
     R"(nats.servers[1]: expected host:port (got "nats://127.0.0.1"))"},
    {"ServerEmptyHost", natsDoc(R"("servers": ["nats://:4222"])"),
     R"(nats.servers[0]: the host is empty (got "nats://:4222"))"},
    {"ServerPortZero", natsDoc(R"("servers": ["nats://h:0"])"),
     R"(nats.servers[0]: port must be between 1 and 65535 (got "nats://h:0"))"},
    {"ServerPortTooBig", natsDoc(R"("servers": ["nats://h:65536"])"),
     R"(nats.servers[0]: port must be between 1 and 65535 (got "nats://h:65536"))"},
    {"ServerPortName", natsDoc(R"("servers": ["nats://h:nats"])"),
     R"(nats.servers[0]: port must be a decimal number (got "nats://h:nats"))"},
    {"ServerBareIpv6", natsDoc(R"("servers": ["nats://::1:4222"])"),
     R"(nats.servers[0]: an IPv6 host needs brackets, e.g. [::1]:4222 (got "nats://::1:4222"))"},
    {"ServerBadBracket", natsDoc(R"("servers": ["nats://[nats-1]:4222"])"),
     R"(nats.servers[0]: the bracketed host must be an IPv6 address (got "nats://[nats-1]:4222"))"},
    {"ServerPath", natsDoc(R"("servers": ["nats://h:4222/x"])"),
     R"(nats.servers[0]: must be scheme://host:port with nothing after the port (got "nats://h:4222/x"))"},
    {"ServerSecretIsRedacted", natsDoc(R"("servers": ["nats://alice:s3cret@h"])"),
     R"(nats.servers[0]: expected host:port (got "nats://***@h"))"},
    {"TlsCertWithoutKey", natsWith(R"("tls": {"cert": "/c.pem"})"),
     "nats.tls.key: required when nats.tls.cert is set"},
    {"TlsKeyWithoutCert", natsWith(R"("tls": {"key": "/k.pem"})"),
     "nats.tls.cert: required when nats.tls.key is set"},
    {"ReconnectWaitAboveMax", natsWith(R"("reconnectWaitMs": 5000)"),
     "nats.reconnectWaitMs: must not exceed nats.reconnectWaitMaxMs (5000 > 500)"},
    // Election.
    {"RenewHalfTtl", electionDoc(R"("leaseTtlMs": 2000, "renewIntervalMs": 1000)"),
     "election.renewIntervalMs: must be less than half of election.leaseTtlMs (1000 >= 2000/2)"},
    {"RenewAboveTtl", electionDoc(R"("renewIntervalMs": 3000)"),
     "election.renewIntervalMs: must be less than half of election.leaseTtlMs (3000 >= 2000/2)"},
    {"RenewTooLongForShorterTtl", electionDoc(R"("leaseTtlMs": 900, "renewIntervalMs": 500)"),
     "election.renewIntervalMs: must be less than half of election.leaseTtlMs (500 >= 900/2)"},
    {"MarginEatsRenew", electionDoc(R"("safetyMarginMs": 1500)"),
     "election.safetyMarginMs: election.renewIntervalMs + election.safetyMarginMs must be less than "
     "election.leaseTtlMs (500 + 1500 >= 2000)"},
    {"MarginZero", electionDoc(R"("safetyMarginMs": 0)"),
     "election.safetyMarginMs: must be a positive number of milliseconds, got 0"},
    {"ReplicasZero", electionDoc(R"("bucketReplicas": 0)"),
     "election.bucketReplicas: must be between 1 and 5, got 0"},
    {"ReplicasSix", electionDoc(R"("bucketReplicas": 6)"),
     "election.bucketReplicas: must be between 1 and 5, got 6"},
    // VIP.
    {"VipAddressBadOctet", vipDoc(R"("address": "192.0.2.300", "interface": "eth0")"),
     R"(vip.address: must be an IPv4 or IPv6 address without prefix or zone (got "192.0.2.300"))"},
    {"VipAddressWithPrefix", vipDoc(R"("address": "192.0.2.100/24", "interface": "eth0")"),
     R"(vip.address: must be an IPv4 or IPv6 address without prefix or zone (got "192.0.2.100/24"))"},
    {"VipAddressHostName", vipDoc(R"("address": "vip.example.com", "interface": "eth0")"),
     R"(vip.address: must be an IPv4 or IPv6 address without prefix or zone (got "vip.example.com"))"},
    {"VipAddressZone", vipDoc(R"("address": "fe80::1%eth0", "interface": "eth0")"),
     R"(vip.address: must be an IPv4 or IPv6 address without prefix or zone (got "fe80::1%eth0"))"},
    {"VipAddressUnspecified4", vipDoc(R"("address": "0.0.0.0", "interface": "eth0")"),
     "vip.address: must not be the unspecified address 0.0.0.0"},
    {"VipAddressLoopback4", vipDoc(R"("address": "127.0.0.2", "interface": "eth0")"),
     R"(vip.address: must not be a loopback address (got "127.0.0.2"))"},
    {"VipAddressMulticast4", vipDoc(R"("address": "224.0.0.18", "interface": "eth0")"),
     R"(vip.address: must not be a multicast address (got "224.0.0.18"))"},
    {"VipAddressBroadcast", vipDoc(R"("address": "255.255.255.255", "interface": "eth0")"),
     "vip.address: must not be the broadcast address 255.255.255.255"},
    {"VipAddressUnspecified6", vipDoc(R"("address": "::", "interface": "eth0")"),
     "vip.address: must not be the unspecified address ::"},
    {"VipAddressLoopback6", vipDoc(R"("address": "::1", "interface": "eth0")"),
     "vip.address: must not be the loopback address ::1"},
    {"VipAddressMulticast6", vipDoc(R"("address": "ff02::1", "interface": "eth0")"),
     R"(vip.address: must not be a multicast address (got "ff02::1"))"},
    {"VipNetmask33", vipWith(R"("netmask": 33)"),
     "vip.netmask: must be between 0 and 32 for an IPv4 address, got 33"},
    {"VipNetmask129", vipDoc(R"("address": "2001:db8::1", "interface": "eth0", "netmask": 129)"),
     "vip.netmask: must be between 0 and 128, got 129"},
    {"VipNetmaskNegative", vipWith(R"("netmask": -1)"), "vip.netmask: must be between 0 and 128, got -1"},
    {"VipInterfaceMissing", vipDoc(R"("address": "192.0.2.100")"),
     "vip.interface: required when vip.address is set"},
    {"VipInterfaceEmpty", vipDoc(R"("address": "192.0.2.100", "interface": "")"),
     "vip.interface: required when vip.address is set"},
    {"VipInterfaceTooLong", vipDoc(R"("address": "192.0.2.100", "interface": "eth0123456789012")"),
     R"(vip.interface: must be 1 to 15 characters (got "eth0123456789012"))"},
    {"VipInterfaceSlash", vipDoc(R"("address": "192.0.2.100", "interface": "eth/0")"),
     R"(vip.interface: must not contain '/', ':' or whitespace (got "eth/0"))"},
    {"VipInterfaceSpace", vipDoc(R"("address": "192.0.2.100", "interface": "eth 0")"),
     R"(vip.interface: must not contain '/', ':' or whitespace (got "eth 0"))"},
    {"VipInterfaceAliasLabel", vipDoc(R"("address": "192.0.2.100", "interface": "eth0:1")"),
     R"(vip.interface: must not contain '/', ':' or whitespace (got "eth0:1"))"},
    {"VipInterfaceDotDot", vipDoc(R"("address": "192.0.2.100", "interface": "..")"),
     "vip.interface: must not be . or .."},
    {"VipInterfaceWithoutAddress", vipDoc(R"("interface": "eth0")"),
     "vip.interface: set without vip.address"},
    {"VipNetmaskWithoutAddress", vipDoc(R"("netmask": 24)"), "vip.netmask: set without vip.address"},
    {"VipGarpCountNegative", vipDoc(R"("garpCount": -1)"),
     "vip.garpCount: must be between 0 and 100, got -1"},
    {"VipGarpCount101", vipDoc(R"("garpCount": 101)"), "vip.garpCount: must be between 0 and 100, got 101"},
    // Health checks.
    {"CheckNameMissing", checkDoc(R"("type": "tcp", "address": "h:1")"), "health.checks[0].name: required"},
    {"CheckTypeMissing", checkDoc(R"("name": "a", "address": "h:1")"),
     "health.checks[0].type: required (command, tcp or http)"},
    {"CheckTypeUnknown", checkDoc(R"("name": "a", "type": "exec")"),
     R"(health.checks[0].type: must be one of command, tcp, http (got "exec"))"},
    {"CheckNameBad", checkDoc(R"("name": "pg ready", "type": "tcp", "address": "h:1")"),
     "health.checks[0].name: " + kIdRule + R"((got "pg ready"))"},
    {"CheckNameDuplicate",
     checksDoc(
         R"({"name": "pg", "type": "tcp", "address": "h:1"}, {"name": "x", "type": "tcp", "address": "h:1"},)"
         R"( {"name": "pg", "type": "command", "command": "true"})"),
     R"(health.checks[2].name: duplicate of health.checks[0].name ("pg"))"},
    {"CommandMissing", checkDoc(R"("name": "a", "type": "command")"),
     "health.checks[0].command: required for type command"},
    {"CommandEmpty", checkDoc(R"("name": "a", "type": "command", "command": "")"),
     "health.checks[0].command: required for type command"},
    {"TcpAddressMissing", checkDoc(R"("name": "a", "type": "tcp")"),
     "health.checks[0].address: required for type tcp"},
    {"TcpAddressNoPort", checkDoc(R"("name": "a", "type": "tcp", "address": "localhost")"),
     R"(health.checks[0].address: expected host:port (got "localhost"))"},
    {"HttpUrlMissing", checkDoc(R"("name": "a", "type": "http")"),
     "health.checks[0].url: required for type http"},
    {"HttpUrlHttps", checkDoc(R"("name": "a", "type": "http", "url": "https://h/x")"),
     R"(health.checks[0].url: https is not supported; use http:// (got "https://h/x"))"},
    {"HttpUrlScheme", checkDoc(R"("name": "a", "type": "http", "url": "h:80/x")"),
     R"(health.checks[0].url: must start with http:// (got "h:80/x"))"},
    {"HttpUrlNoHost", checkDoc(R"("name": "a", "type": "http", "url": "http:///x")"),
     R"(health.checks[0].url: the host is empty (got "http:///x"))"},
    {"HttpUrlBadPort", checkDoc(R"("name": "a", "type": "http", "url": "http://h:99999/x")"),
     R"(health.checks[0].url: port must be between 1 and 65535 (got "http://h:99999/x"))"},
    {"HttpUrlSpace", checkDoc(R"("name": "a", "type": "http", "url": "http://h/a b")"),
     "health.checks[0].url: must not contain spaces or control characters"},
    {"UrlOnTcpCheck", tcpCheckWith(R"("url": "http://h/")"), "health.checks[0].url: only used by type http"},
    {"CommandOnHttpCheck", checkDoc(R"("name": "a", "type": "http", "url": "http://h/", "command": "true")"),
     "health.checks[0].command: only used by type command"},
    {"AddressOnCommandCheck",
     checkDoc(R"("name": "a", "type": "command", "command": "true", "address": "h:1")"),
     "health.checks[0].address: only used by type tcp"},
    {"TimeoutAboveInterval", tcpCheckWith(R"("intervalMs": 1000, "timeoutMs": 2000)"),
     "health.checks[0].timeoutMs: must not exceed intervalMs (2000 > 1000)"},
    {"TimeoutAboveDefaultInterval", tcpCheckWith(R"("timeoutMs": 1500)"),
     "health.checks[0].timeoutMs: must not exceed intervalMs (1500 > 1000)"},
    {"RiseZero", tcpCheckWith(R"("rise": 0)"), "health.checks[0].rise: must be between 1 and 100, got 0"},
    {"FallZero", tcpCheckWith(R"("fall": 0)"), "health.checks[0].fall: must be between 1 and 100, got 0"},
    {"Rise101", tcpCheckWith(R"("rise": 101)"), "health.checks[0].rise: must be between 1 and 100, got 101"},
    // State directory.
    {"StateDirEmpty", doc(R"("stateDir": "")"),
     "stateDir: must not be empty: the highest epoch this node has seen is kept there, and it must survive "
     "restarts so that epochs never repeat"},
    {"StateDirRelative", doc(R"("stateDir": "var/lib/hacoord")"),
     R"(stateDir: must be an absolute path (got "var/lib/hacoord"))"},
    {"StateDirDot", doc(R"("stateDir": "./state")"), R"(stateDir: must be an absolute path (got "./state"))"},
    {"StateDirNul", doc(R"("stateDir": "/var/lib/a\u0000b")"), "stateDir: must not contain a NUL character"},
    // NATS user and password.
    {"UserWithoutPasswordFile", natsWith(R"("user": "hacoord")"),
     "nats.passwordFile: required when nats.user is set"},
    {"PasswordFileWithoutUser", natsWith(R"("passwordFile": "/etc/hacoord/nats-password")"),
     "nats.user: required when nats.passwordFile is set"},
    {"EmptyUserWithPasswordFile", natsWith(R"("user": "", "passwordFile": "/etc/hacoord/nats-password")"),
     "nats.user: required when nats.passwordFile is set"},
    {"UserWithCredentials",
     natsWith(R"("user": "hacoord", "passwordFile": "/p", "credentials": "/etc/hacoord/hacoord.creds")"),
     "nats.user: cannot be combined with nats.credentials: the .creds file is a login of its own; use one or "
     "the "
     "other"},
    {"PasswordFileNul", natsWith(R"("user": "u", "passwordFile": "/p\u0000x")"),
     "nats.passwordFile: must not contain a NUL character"},
    {"UserWithPasswordInUrl",
     natsDoc(
         R"("servers": ["nats://127.0.0.1:4222", "nats://alice:s3cret@h:4222"], "user": "u", "passwordFile": "/p")"),
     "nats.servers[1]: carries credentials before the host (user:password@ or token@), which conflicts with "
     R"(nats.user; keep the user in nats.user and the password in nats.passwordFile (got "nats://***@h:4222"))"},
    {"UserWithTokenInUrl", natsDoc(R"("servers": ["tls://t0ken@h:4222"], "user": "u", "passwordFile": "/p")"),
     "nats.servers[0]: carries credentials before the host (user:password@ or token@), which conflicts with "
     R"(nats.user; keep the user in nats.user and the password in nats.passwordFile (got "tls://***@h:4222"))"},
    // Hooks.
    {"HookTooLong", doc(R"("hooks": {"onBecomeLeader": ")" + std::string(4097, 'x') + R"("})"),
     "hooks.onBecomeLeader: must be at most 4096 bytes (put a longer command in a script), got 4097"},
    {"HookNul", doc(R"("hooks": {"onLoseLeadership": "true\u0000false"})"),
     "hooks.onLoseLeadership: must not contain a NUL character"},
    {"HookChangeTooLong", doc(R"("hooks": {"onLeaderChange": ")" + std::string(5000, 'y') + R"("})"),
     "hooks.onLeaderChange: must be at most 4096 bytes (put a longer command in a script), got 5000"},
    // VIP kernel lifetime (DESIGN §4: renew interval < lifetime < TTL - 0.3 s, in whole seconds).
    {"VipWithoutKernelLifetime",
     doc(R"("election": {"leaseTtlMs": 1000}, "vip": {"address": "192.0.2.100", "interface": "eth0"})"),
     "vip: leaseTtlMs 1000 - safetyMarginMs 100 - 300 ms kernel slack leaves no whole second of kernel "
     "lifetime "
     "above renewIntervalMs 250; the kernel could not remove the VIP if this daemon froze. Raise "
     "election.leaseTtlMs to at least 1500, or set vip.allowWithoutKernelLifetime: true (the fast profile: a "
     "frozen daemon keeps the VIP until it wakes)"},
    {"VipLifetimeNotAboveRenew",
     doc(R"("election": {"leaseTtlMs": 2100, "renewIntervalMs": 1000, "safetyMarginMs": 200},)"
         R"( "vip": {"address": "2001:db8::1", "interface": "eth0"})"),
     "vip: leaseTtlMs 2100 - safetyMarginMs 200 - 300 ms kernel slack leaves no whole second of kernel "
     "lifetime "
     "above renewIntervalMs 1000; the kernel could not remove the VIP if this daemon froze. Raise "
     "election.leaseTtlMs to at least 2500, or set vip.allowWithoutKernelLifetime: true (the fast profile: a "
     "frozen daemon keeps the VIP until it wakes)"},
    {"VipAllowWithoutAddress", vipDoc(R"("allowWithoutKernelLifetime": true)"),
     "vip.allowWithoutKernelLifetime: set without vip.address"},
    // HTTP listener and log level.
    {"HttpMaxConnectionsZero", doc(R"("http": {"listen": "127.0.0.1:0", "maxConnections": 0})"),
     "http.maxConnections: must be between 1 and 10000, got 0"},
    {"HttpMaxConnectionsTooMany", doc(R"("http": {"listen": "127.0.0.1:0", "maxConnections": 10001})"),
     "http.maxConnections: must be between 1 and 10000, got 10001"},
    {"HttpMaxConnectionsWithoutListen", doc(R"("http": {"maxConnections": 10})"),
     "http.maxConnections: set without http.listen"},
    {"HttpRequestTimeoutWithoutListen", doc(R"("http": {"listen": "", "requestTimeoutMs": 1000})"),
     "http.requestTimeoutMs: set without http.listen"},
    {"ListenNoHost", doc(R"("http": {"listen": "9090"})"), R"(http.listen: expected host:port (got "9090"))"},
    {"ListenBadPort", doc(R"("http": {"listen": "127.0.0.1:70000"})"),
     R"(http.listen: port must be between 0 and 65535 (got "127.0.0.1:70000"))"},
    {"LogLevelUnknown", doc(R"("log": {"level": "verbose"})"),
     R"(log.level: must be one of trace, debug, info, warn, error, critical, off (got "verbose"))"},
    {"LogLevelWarning", doc(R"("log": {"level": "warning"})"),
     R"(log.level: must be one of trace, debug, info, warn, error, critical, off (got "warning"))"},
    {"LogLevelUpperCase", doc(R"("log": {"level": "INFO"})"),
     R"(log.level: must be one of trace, debug, info, warn, error, critical, off (got "INFO"))"},
    {"NodeIdLeadingDash", R"({"clusterId": "demo", "nodeId": "-n1", "nats": {"servers": ["nats://h:1"]}})",
     "nodeId: " + kIdRule + R"((got "-n1"))"},
    // Mesh: required keys.
    {"MeshListenMissing", meshDoc(R"("ca": "/m/ca.crt", "cert": "/m/n1.crt", "key": "/m/n1.key")"),
     "mesh.listen: required"},
    {"MeshEmpty", meshDoc(""), "mesh.listen: required"},
    {"MeshListenEmpty", meshDoc(R"("listen": "", "ca": "/m/ca.crt")"), "mesh.listen: required"},
    {"MeshCaMissing", meshDoc(R"("listen": "10.0.0.1:7400", "cert": "/m/n1.crt", "key": "/m/n1.key")"),
     "mesh.ca: required when mesh.listen is set"},
    {"MeshCertMissing", meshDoc(R"("listen": "10.0.0.1:7400", "ca": "/m/ca.crt", "key": "/m/n1.key")"),
     "mesh.cert: required when mesh.listen is set"},
    {"MeshKeyMissing", meshDoc(R"("listen": "10.0.0.1:7400", "ca": "/m/ca.crt", "cert": "/m/n1.crt")"),
     "mesh.key: required when mesh.listen is set"},
    {"MeshKeyEmpty",
     meshDoc(R"("listen": "10.0.0.1:7400", "ca": "/m/ca.crt", "cert": "/m/n1.crt", "key": "")"),
     "mesh.key: required when mesh.listen is set"},
    {"MeshCertNul", meshDoc(R"("listen": "h:1", "ca": "/c", "cert": "/m/a\u0000b", "key": "/k")"),
     "mesh.cert: must not contain a NUL character"},
    // Mesh: addresses.
    {"MeshListenNoPort", meshAt("10.0.0.1"), R"(mesh.listen: expected host:port (got "10.0.0.1"))"},
    {"MeshListenBadPort", meshAt("10.0.0.1:65536"),
     R"(mesh.listen: port must be between 0 and 65535 (got "10.0.0.1:65536"))"},
    {"MeshListenBareIpv6", meshAt("::1:7400"),
     R"(mesh.listen: an IPv6 host needs brackets, e.g. [::1]:4222 (got "::1:7400"))"},
    {"MeshListenWildcard4", meshAt("0.0.0.0:7400"),
     R"(mesh.advertise: required when mesh.listen is a wildcard address ("0.0.0.0:7400"): peers cannot dial it)"},
    {"MeshListenWildcard6", meshAt("[::]:7400"),
     R"(mesh.advertise: required when mesh.listen is a wildcard address ("[::]:7400"): peers cannot dial it)"},
    {"MeshListenWildcard6Long", meshAt("[0:0::0]:7400", R"("advertise": [])"),
     R"(mesh.advertise: required when mesh.listen is a wildcard address ("[0:0::0]:7400"): peers cannot dial it)"},
    {"MeshAdvertiseNoPort", meshWith(R"("advertise": ["10.0.0.1:7400", "db-a.example.com"])"),
     R"(mesh.advertise[1]: expected host:port (got "db-a.example.com"))"},
    {"MeshAdvertisePortZero", meshWith(R"("advertise": ["10.0.0.1:0"])"),
     R"(mesh.advertise[0]: port must be between 1 and 65535 (got "10.0.0.1:0"))"},
    {"MeshAdvertiseWildcard", meshAt("0.0.0.0:7400", R"("advertise": ["0.0.0.0:7400"])"),
     R"(mesh.advertise[0]: must be an address peers can dial, not a wildcard (got "0.0.0.0:7400"))"},
    {"MeshAdvertiseTooMany",
     meshWith(R"("advertise": ["a:1", "b:1", "c:1", "d:1", "e:1", "f:1", "g:1", "h:1", "i:1"])"),
     "mesh.advertise: must list at most 8 addresses, got 9"},
    // Mesh: division and type.
    {"MeshDivisionDoubleSlash", meshWith(R"("division": "dc1//r2")"),
     R"(mesh.division: must be segments separated by single '/', with no empty segment (got "dc1//r2"))"},
    {"MeshDivisionLeadingSlash", meshWith(R"("division": "/dc1")"),
     R"(mesh.division: must be segments separated by single '/', with no empty segment (got "/dc1"))"},
    {"MeshDivisionTrailingSlash", meshWith(R"("division": "dc1/")"),
     R"(mesh.division: must be segments separated by single '/', with no empty segment (got "dc1/"))"},
    {"MeshDivisionSlashOnly", meshWith(R"("division": "/")"),
     R"(mesh.division: must be segments separated by single '/', with no empty segment (got "/"))"},
    {"MeshDivisionTooManySegments", meshWith(R"("division": "a/b/c/d/e/f/g/h/i")"),
     R"(mesh.division: has 9 segments; at most 8 are allowed (got "a/b/c/d/e/f/g/h/i"))"},
    {"MeshDivisionBadCharacter", meshWith(R"("division": "dc1/r.2")"),
     R"(mesh.division: segments must be characters from A-Z a-z 0-9 _ - (got "dc1/r.2"))"},
    {"MeshDivisionSpace", meshWith(R"("division": "dc 1")"),
     R"(mesh.division: segments must be characters from A-Z a-z 0-9 _ - (got "dc 1"))"},
    {"MeshDivisionLongSegment", meshWith(R"("division": "dc1/)" + std::string(65, 'r') + R"(")"),
     "mesh.division: has a segment longer than 64 characters (got \"dc1/" + std::string(65, 'r') + "\")"},
    {"MeshTypeSpace", meshWith(R"("type": "web server")"),
     R"(mesh.type: must be at most 64 characters from A-Z a-z 0-9 _ . - (got "web server"))"},
    {"MeshTypeSlash", meshWith(R"("type": "db/primary")"),
     R"(mesh.type: must be at most 64 characters from A-Z a-z 0-9 _ . - (got "db/primary"))"},
    {"MeshTypeTooLong", meshWith(R"("type": ")" + std::string(65, 't') + R"(")"),
     "mesh.type: must be at most 64 characters from A-Z a-z 0-9 _ . - (got \"" + std::string(65, 't') +
         "\")"},
    // Mesh: timings.
    {"MeshPingNotBelowSuspect", meshWith(R"("pingIntervalMs": 3000)"),
     "mesh.pingIntervalMs: must be less than mesh.suspectAfterMs (3000 >= 3000)"},
    {"MeshSuspectNotBelowDead", meshWith(R"("suspectAfterMs": 5000)"),
     "mesh.suspectAfterMs: must be less than mesh.deadAfterMs (5000 >= 5000)"},
    {"MeshDeadBelowSuspect", meshWith(R"("deadAfterMs": 2000)"),
     "mesh.suspectAfterMs: must be less than mesh.deadAfterMs (3000 >= 2000)"},
    {"MeshPingAboveDead", meshWith(R"("pingIntervalMs": 4000, "suspectAfterMs": 3500)"),
     "mesh.pingIntervalMs: must be less than mesh.suspectAfterMs (4000 >= 3500)"},
    {"MeshDeadOverAnHour", meshWith(R"("deadAfterMs": 3600001)"),
     "mesh.deadAfterMs: must be at most 3600000 (one hour), got 3600001"},
    {"MeshRefreshOverAnHour", meshWith(R"("refreshMs": 86400000)"),
     "mesh.refreshMs: must be at most 3600000 (one hour), got 86400000"},
    {"MeshDialTimeoutZero", meshWith(R"("dialTimeoutMs": 0)"),
     "mesh.dialTimeoutMs: must be a positive number of milliseconds, got 0"},
    // Mesh: sizes.
    {"MeshMaxMessageBytesTooSmall", meshWith(R"("maxMessageBytes": 65535)"),
     "mesh.maxMessageBytes: must be between 65536 and 268435456, got 65535"},
    {"MeshMaxMessageBytesTooBig", meshWith(R"("maxMessageBytes": 268435457)"),
     "mesh.maxMessageBytes: must be between 65536 and 268435456, got 268435457"},
    {"MeshSendBudgetTooSmall", meshWith(R"("sendBudgetBytes": 1024)"),
     "mesh.sendBudgetBytes: must be between 65536 and 1073741824, got 1024"},
    {"MeshSendBudgetTooBig", meshWith(R"("sendBudgetBytes": 1073741825)"),
     "mesh.sendBudgetBytes: must be between 65536 and 1073741824, got 1073741825"},
};

INSTANTIATE_TEST_SUITE_P(BadValue, RejectionTest, ::testing::ValuesIn(kBadValues), rejectionName);

// ---- every millisecond key against every kind of bad value ----

struct MillisKey {
  std::string path;
  std::function<std::string(const std::string&)> build;  // document with the key set to the value
};

std::vector<MillisKey> millisKeys() {
  auto nats = [](std::string key) {
    return [key](const std::string& v) { return natsWith("\"" + key + "\": " + v); };
  };
  auto election = [](std::string key) {
    return [key](const std::string& v) { return electionDoc("\"" + key + "\": " + v); };
  };
  auto vip = [](std::string key) {
    return [key](const std::string& v) { return vipDoc("\"" + key + "\": " + v); };
  };
  auto check = [](std::string key) {
    return [key](const std::string& v) { return tcpCheckWith("\"" + key + "\": " + v); };
  };
  return {
      {"nats.reconnectWaitMs", nats("reconnectWaitMs")},
      {"nats.reconnectWaitMaxMs", nats("reconnectWaitMaxMs")},
      {"nats.connectTimeoutMs", nats("connectTimeoutMs")},
      {"nats.requestTimeoutMs", nats("requestTimeoutMs")},
      {"election.leaseTtlMs", election("leaseTtlMs")},
      {"election.renewIntervalMs", election("renewIntervalMs")},
      {"election.cooldownMs", election("cooldownMs")},
      {"election.safetyMarginMs", election("safetyMarginMs")},
      {"election.hookTimeLimitMs", election("hookTimeLimitMs")},
      {"vip.garpIntervalMs", vip("garpIntervalMs")},
      {"vip.garpRefreshMs", vip("garpRefreshMs")},
      {"health.failAfterMs",
       [](const std::string& v) { return doc(R"("health": {"failAfterMs": )" + v + "}"); }},
      {"health.checks[0].intervalMs", check("intervalMs")},
      {"health.checks[0].timeoutMs", check("timeoutMs")},
      {"http.requestTimeoutMs",
       [](const std::string& v) {
         return doc(R"("http": {"listen": "127.0.0.1:0", "requestTimeoutMs": )" + v + "}");
       }},
  };
}

TEST(ConfigMillis, EveryKeyRejectsEveryBadValue) {
  const std::string kFraction = "expected an integer, got a number with a fraction or exponent";
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"0", "must be a positive number of milliseconds, got 0"},
      {"-1", "must be a positive number of milliseconds, got -1"},
      {"-86400001", "must be a positive number of milliseconds, got -86400001"},
      {"86400001", "must be at most 86400000 (one day), got 86400001"},
      {"9223372036854775807", "must be at most 86400000 (one day), got 9223372036854775807"},
      {"18446744073709551615", "must be at most 86400000 (one day), got 18446744073709551615"},
      {"1.5", kFraction},
      {"100.0", kFraction},
      {"1e3", kFraction},
      {"\"100\"", "expected an integer, got string"},
      {"true", "expected an integer, got boolean"},
      {"null", "expected an integer, got null"},
      {"[100]", "expected an integer, got array"},
      {"{}", "expected an integer, got object"},
  };
  for (const MillisKey& key : millisKeys()) {
    for (const auto& [value, reason] : bad) {
      EXPECT_EQ(errorOf(key.build(value)), "node.json: " + key.path + ": " + reason)
          << key.path << " = " << value;
    }
  }
}

// The mesh's timings share the parsing but stop at one hour.
TEST(ConfigMillis, MeshKeysRejectEveryBadValue) {
  const std::string kFraction = "expected an integer, got a number with a fraction or exponent";
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"0", "must be a positive number of milliseconds, got 0"},
      {"-1", "must be a positive number of milliseconds, got -1"},
      {"3600001", "must be at most 3600000 (one hour), got 3600001"},
      {"9223372036854775807", "must be at most 3600000 (one hour), got 9223372036854775807"},
      {"1.5", kFraction},
      {"\"100\"", "expected an integer, got string"},
      {"null", "expected an integer, got null"},
  };
  for (const char* key : {"pingIntervalMs", "suspectAfterMs", "deadAfterMs", "dialTimeoutMs", "refreshMs"}) {
    for (const auto& [value, reason] : bad) {
      EXPECT_EQ(errorOf(meshWith("\"" + std::string(key) + "\": " + value)),
                "node.json: mesh." + std::string(key) + ": " + reason)
          << key << " = " << value;
    }
  }
}

TEST(ConfigMillis, HugeIntegersAreTooLargeNotFractional) {
  EXPECT_EQ(errorOf(electionDoc(R"("cooldownMs": 100000000000000000000)")),
            "node.json: election.cooldownMs: must be at most 86400000 (one day), got 1e+20");
}

TEST(ConfigMillis, OneDayIsAccepted) {
  Config d = parseOk(R"({"clusterId": "demo", "nodeId": "n1",
      "nats": {"servers": ["nats://h:1"], "reconnectWaitMaxMs": 86400000, "requestTimeoutMs": 86400000},
      "election": {"cooldownMs": 86400000, "hookTimeLimitMs": 86400000},
      "health": {"failAfterMs": 86400000}})");
  EXPECT_EQ(d.nats.reconnect_wait_max, milliseconds(86400000));
  EXPECT_EQ(d.nats.request_timeout, milliseconds(86400000));
  EXPECT_EQ(d.election.cooldown, milliseconds(86400000));
  EXPECT_EQ(d.election.hook_time_limit, milliseconds(86400000));
  EXPECT_EQ(d.health.fail_after, milliseconds(86400000));
}

TEST(ConfigInts, IntegerKeysRejectNonIntegers) {
  const std::vector<std::pair<std::string, std::function<std::string(const std::string&)>>> keys = {
      {"election.bucketReplicas",
       [](const std::string& v) { return electionDoc(R"("bucketReplicas": )" + v); }},
      {"vip.garpCount", [](const std::string& v) { return vipDoc(R"("garpCount": )" + v); }},
      {"vip.netmask", [](const std::string& v) { return vipWith(R"("netmask": )" + v); }},
      {"health.checks[0].rise", [](const std::string& v) { return tcpCheckWith(R"("rise": )" + v); }},
      {"health.checks[0].fall", [](const std::string& v) { return tcpCheckWith(R"("fall": )" + v); }},
      {"http.maxConnections",
       [](const std::string& v) {
         return doc(R"("http": {"listen": "127.0.0.1:0", "maxConnections": )" + v + "}");
       }},
  };
  for (const auto& [path, build] : keys) {
    EXPECT_EQ(errorOf(build("2.0")),
              "node.json: " + path + ": expected an integer, got a number with a fraction or exponent");
    EXPECT_EQ(errorOf(build("\"2\"")), "node.json: " + path + ": expected an integer, got string");
    EXPECT_EQ(errorOf(build("false")), "node.json: " + path + ": expected an integer, got boolean");
    EXPECT_NE(errorOf(build("4294967298")).find(path + ": must be between"), std::string::npos) << path;
  }
}

// ---- JSON syntax: strict, located, one line ----

TEST(ConfigSyntax, ParseErrorsCarryLineAndColumn) {
  std::string text = "{\n  \"clusterId\": \"demo\",\n  \"nodeId\" \"n1\"\n}";
  EXPECT_EQ(errorOf(text), "node.json: line 3, column 12: Missing ':' after object member name");
}

TEST(ConfigSyntax, DuplicateKeysAreRejected) {
  std::string text =
      R"({"clusterId": "demo", "nodeId": "n1", "nodeId": "n2", "nats": {"servers": ["nats://h:1"]}})";
  std::string message = errorOf(text);
  EXPECT_TRUE(message.starts_with("node.json: line 1, column ")) << message;
  EXPECT_NE(message.find("Duplicate key: 'nodeId'"), std::string::npos) << message;
}

TEST(ConfigSyntax, NestedDuplicateKeysAreRejected) {
  std::string message = errorOf(electionDoc(R"("leaseTtlMs": 2000, "leaseTtlMs": 4000)"));
  EXPECT_NE(message.find("Duplicate key: 'leaseTtlMs'"), std::string::npos) << message;
}

TEST(ConfigSyntax, LineCommentsAreAllowedBlockCommentsAreNot) {
  Config c = parseOk(
      "{\n  // the cluster\n  \"clusterId\": \"demo\", // trailing\n"
      "  \"nodeId\": \"n1\",\n  \"nats\": {\"servers\": [\"nats://h:1\"]} // end\n}\n");
  EXPECT_EQ(c.cluster_id, "demo");
  EXPECT_EQ(c.node_id, "n1");
  EXPECT_EQ(errorOf(R"({"clusterId": /* x */ "demo"})"),
            "node.json: line 1, column 15: only // line comments are allowed");
  EXPECT_EQ(errorOf(R"({"nats": {"servers": ["nats://h:1" /* x */]}})"),
            "node.json: line 1, column 36: only // line comments are allowed");
  EXPECT_EQ(errorOf(doc() + " / x"), "node.json: line 1, column " + std::to_string(doc().size() + 2) +
                                         ": only // line comments are allowed");
}

TEST(ConfigSyntax, SlashesInsideStringsAreNotComments) {
  Config c =
      parseOk(checkDoc(R"("name": "a", "type": "command", "command": "test -e \"/run//x\" # /* not */")"));
  EXPECT_EQ(c.health.checks.at(0).command, R"(test -e "/run//x" # /* not */)");
}

TEST(ConfigSyntax, TrailingGarbageIsRejected) {
  std::string message = errorOf(doc() + " x");
  EXPECT_TRUE(message.starts_with("node.json: line 1, column ")) << message;
  EXPECT_NE(message.find("Extra non-whitespace after JSON value."), std::string::npos) << message;
  EXPECT_NE(errorOf(doc() + doc()), "<accepted>");
}

TEST(ConfigSyntax, TrailingCommasAreRejected) {
  EXPECT_TRUE(errorOf(R"({"clusterId": "demo",})").starts_with("node.json: line 1, column "));
  EXPECT_TRUE(errorOf(natsDoc(R"("servers": ["nats://h:1",])")).starts_with("node.json: line 1, column "));
}

TEST(ConfigSyntax, LeadingZerosAreRejected) {
  EXPECT_EQ(errorOf(R"({"election": {"leaseTtlMs": 02000}})"),
            "node.json: line 1, column 29: numbers must not have leading zeros");
  EXPECT_NE(errorOf(electionDoc(R"("leaseTtlMs": -02000)")).find("numbers must not have leading zeros"),
            std::string::npos);
  // A lone zero and zeros inside a number are fine lexically.
  EXPECT_EQ(parseOk(vipDoc(R"("garpCount": 0)")).vip.garp_count, 0);
  EXPECT_EQ(parseOk(vipDoc(R"("garpCount": 100)")).vip.garp_count, 100);
}

TEST(ConfigSyntax, NonJsonLiteralsAreRejected) {
  EXPECT_TRUE(errorOf(electionDoc(R"("leaseTtlMs": NaN)")).starts_with("node.json: line 1, column "));
  EXPECT_TRUE(errorOf(R"({'clusterId': 'demo'})").starts_with("node.json: line 1, column "));
  EXPECT_TRUE(errorOf(electionDoc(R"("candidate": True)")).starts_with("node.json: line 1, column "));
}

TEST(ConfigSyntax, EmptyAndScalarDocumentsAreRejected) {
  EXPECT_EQ(errorOf(""), "node.json: line 1, column 1: Syntax error: value, object or array expected.");
  EXPECT_EQ(errorOf("   \n  "),
            "node.json: line 2, column 3: Syntax error: value, object or array expected.");
  EXPECT_TRUE(errorOf(R"("demo")").starts_with("node.json: line 1, column 1: "));
  EXPECT_EQ(errorOf("{}"), "node.json: clusterId: required");
}

TEST(ConfigSyntax, DeepNestingIsRejectedWithoutCrashing) {
  EXPECT_EQ(errorOf(std::string(100000, '[')), "node.json: line 1, column 33: nested deeper than 32 levels");
}

TEST(ConfigSyntax, ByteOrderMarkIsAccepted) { EXPECT_EQ(parseOk("\xEF\xBB\xBF" + doc()).node_id, "n1"); }

TEST(ConfigSyntax, SourceNameCannotBreakTheLine) {
  std::string message = errorOf("{}", "evil\nname.json");
  EXPECT_EQ(message, "evil\\u000aname.json: clusterId: required");
}

TEST(ConfigSyntax, EchoedValuesAreEscapedAndShortened) {
  std::string message = errorOf(R"({"clusterId": ")" + std::string(200, 'x') +
                                R"(\n", "nodeId": "n1", "nats": {"servers": ["nats://h:1"]}})");
  EXPECT_EQ(message, "node.json: clusterId: " + kIdRule + "(got \"" + std::string(80, 'x') + "\"...)");
  EXPECT_EQ(errorOf(R"({"clusterId": "a\"b\tc", "nodeId": "n1", "nats": {"servers": ["nats://h:1"]}})"),
            "node.json: clusterId: " + kIdRule + R"((got "a\"b\u0009c"))");
}

// ---- defaults and accepted values ----

TEST(ConfigDefaults, MinimalDocumentGetsEveryDefault) {
  Config c = parseOk(doc());
  EXPECT_EQ(c.cluster_id, "demo");
  EXPECT_EQ(c.node_id, "n1");
  EXPECT_EQ(c.bucketName(), "HACOORD_demo");
  ASSERT_EQ(c.nats.servers.size(), 1u);
  EXPECT_EQ(c.nats.servers[0], "nats://127.0.0.1:4222");
  EXPECT_EQ(c.nats.credentials, "");
  EXPECT_FALSE(c.nats.tls.enabled());
  EXPECT_EQ(c.nats.reconnect_wait, milliseconds(100));
  EXPECT_EQ(c.nats.reconnect_wait_max, milliseconds(500));
  EXPECT_EQ(c.nats.connect_timeout, milliseconds(2000));
  EXPECT_EQ(c.nats.request_timeout, milliseconds(1000));
  EXPECT_EQ(c.election.lease_ttl, milliseconds(2000));
  EXPECT_EQ(c.election.renew_interval, milliseconds(500));
  EXPECT_EQ(c.election.cooldown, milliseconds(2000));
  EXPECT_EQ(c.election.safety_margin, milliseconds(200));
  EXPECT_EQ(c.election.hook_time_limit, milliseconds(5000));
  EXPECT_EQ(c.election.bucket_replicas, 1);
  EXPECT_TRUE(c.election.candidate);
  EXPECT_FALSE(c.vip.enabled());
  EXPECT_EQ(c.vip.netmask, -1);
  EXPECT_EQ(c.vip.interface, "");
  EXPECT_EQ(c.vip.garp_count, 5);
  EXPECT_EQ(c.vip.garp_interval, milliseconds(200));
  EXPECT_EQ(c.vip.garp_refresh, milliseconds(60000));
  EXPECT_FALSE(c.vip.duplicate_check);
  EXPECT_TRUE(c.health.checks.empty());
  EXPECT_EQ(c.health.fail_after, milliseconds(3000));
  EXPECT_EQ(c.http_listen, "");
  EXPECT_EQ(c.log_level, "info");
  EXPECT_EQ(c.state_dir, "/var/lib/hacoord");
  EXPECT_EQ(c.nats.user, "");
  EXPECT_EQ(c.nats.password_file, "");
  EXPECT_FALSE(c.vip.allow_without_kernel_lifetime);
  EXPECT_EQ(c.hooks.on_become_leader, "");
  EXPECT_EQ(c.hooks.on_lose_leadership, "");
  EXPECT_EQ(c.hooks.on_leader_change, "");
  EXPECT_EQ(c.http_max_connections, 64);
  EXPECT_EQ(c.http_request_timeout, milliseconds(5000));
  EXPECT_FALSE(c.mesh.enabled());
  EXPECT_EQ(c.mesh.listen, "");
  EXPECT_TRUE(c.mesh.advertise.empty());
}

TEST(ConfigDefaults, MeshSectionGetsEveryDefault) {
  Config c = parseOk(meshWith(R"("division": "")"));
  EXPECT_TRUE(c.mesh.enabled());
  EXPECT_EQ(c.mesh.listen, "10.0.0.1:7400");
  EXPECT_TRUE(c.mesh.advertise.empty());
  EXPECT_EQ(c.mesh.advertiseAddrs(), std::vector<std::string>{"10.0.0.1:7400"});
  EXPECT_EQ(c.mesh.ca, "/m/ca.crt");
  EXPECT_EQ(c.mesh.cert, "/m/n1.crt");
  EXPECT_EQ(c.mesh.key, "/m/n1.key");
  EXPECT_EQ(c.mesh.division, "");
  EXPECT_EQ(c.mesh.type, "");
  EXPECT_EQ(c.mesh.ping_interval, milliseconds(1000));
  EXPECT_EQ(c.mesh.suspect_after, milliseconds(3000));
  EXPECT_EQ(c.mesh.dead_after, milliseconds(5000));
  EXPECT_EQ(c.mesh.dial_timeout, milliseconds(3000));
  EXPECT_EQ(c.mesh.refresh, milliseconds(5000));
  EXPECT_EQ(c.mesh.membersMaxAge(), milliseconds(15000));
  EXPECT_EQ(c.mesh.max_message_bytes, 16777216);
  EXPECT_EQ(c.mesh.send_budget_bytes, 8388608);
  EXPECT_EQ(c.membersBucketName(), "HACOORD_demo_MEMBERS");
  EXPECT_NE(c.membersBucketName(), c.bucketName());
}

TEST(ConfigBounds, MeshValuesJustInside) {
  Config c = parseOk(
      meshAt("0.0.0.0:0",
             R"("advertise": ["db-a.example.com:7400", "[2001:db8::1]:7400"],)"
             R"( "division": "a/b/c/d/e/f/g/h", "type": "pg.primary-16_x", "pingIntervalMs": 1,)"
             R"( "suspectAfterMs": 2, "deadAfterMs": 3600000, "dialTimeoutMs": 3600000, "refreshMs": 1,)"
             R"( "maxMessageBytes": 268435456, "sendBudgetBytes": 65536)"));
  EXPECT_EQ(c.mesh.listen, "0.0.0.0:0");
  EXPECT_EQ(c.mesh.advertiseAddrs(),
            (std::vector<std::string>{"db-a.example.com:7400", "[2001:db8::1]:7400"}));
  EXPECT_EQ(c.mesh.division, "a/b/c/d/e/f/g/h");
  EXPECT_EQ(c.mesh.type, "pg.primary-16_x");
  EXPECT_EQ(c.mesh.ping_interval, milliseconds(1));
  EXPECT_EQ(c.mesh.suspect_after, milliseconds(2));
  EXPECT_EQ(c.mesh.dead_after, milliseconds(3600000));
  EXPECT_EQ(c.mesh.dial_timeout, milliseconds(3600000));
  EXPECT_EQ(c.mesh.refresh, milliseconds(1));
  EXPECT_EQ(c.mesh.max_message_bytes, 268435456);
  EXPECT_EQ(c.mesh.send_budget_bytes, 65536);
  // A loopback listen on port 0 (tests): peers learn the bound port from the members record.
  EXPECT_EQ(parseOk(meshAt("127.0.0.1:0")).mesh.advertiseAddrs(), std::vector<std::string>{"127.0.0.1:0"});
  EXPECT_EQ(parseOk(meshAt("[::1]:7400", R"("division": "dc1")")).mesh.division, "dc1");
  EXPECT_EQ(parseOk(meshWith(R"("maxMessageBytes": 65536)")).mesh.max_message_bytes, 65536);
  EXPECT_EQ(parseOk(meshWith(R"("type": ")" + std::string(64, 't') + R"(")")).mesh.type,
            std::string(64, 't'));
  EXPECT_EQ(parseOk(meshWith(R"("division": ")" + std::string(64, 'd') + R"(")")).mesh.division,
            std::string(64, 'd'));
}

TEST(ConfigDefaults, EmptySectionsAreAllowed) {
  Config c = parseOk(doc(R"("election": {}, "vip": {}, "health": {}, "hooks": {}, "http": {}, "log": {})"));
  EXPECT_EQ(c.election.renew_interval, milliseconds(500));
  EXPECT_FALSE(c.vip.enabled());
  EXPECT_EQ(c.http_listen, "");
}

TEST(ConfigDefaults, TtlDependentDefaultsFollowTheTtl) {
  Config c = parseOk(electionDoc(R"("leaseTtlMs": 10000)"));
  EXPECT_EQ(c.election.lease_ttl, milliseconds(10000));
  EXPECT_EQ(c.election.renew_interval, milliseconds(2500));
  EXPECT_EQ(c.election.cooldown, milliseconds(10000));
  EXPECT_EQ(c.election.safety_margin, milliseconds(1000));
  // A short TTL alone must not trip the renew rule through the default.
  Config s = parseOk(electionDoc(R"("leaseTtlMs": 800)"));
  EXPECT_EQ(s.election.renew_interval, milliseconds(200));
  EXPECT_EQ(s.election.safety_margin, milliseconds(80));
}

TEST(ConfigDefaults, ExplicitValuesWinOverDerivedDefaults) {
  Config c = parseOk(electionDoc(
      R"("leaseTtlMs": 10000, "renewIntervalMs": 1000, "cooldownMs": 500, "safetyMarginMs": 3000)"));
  EXPECT_EQ(c.election.renew_interval, milliseconds(1000));
  EXPECT_EQ(c.election.cooldown, milliseconds(500));
  EXPECT_EQ(c.election.safety_margin, milliseconds(3000));
}

TEST(ConfigBounds, ElectionEdgesJustInside) {
  Config c = parseOk(electionDoc(R"("leaseTtlMs": 2000, "renewIntervalMs": 999, "safetyMarginMs": 1000)"));
  EXPECT_EQ(c.election.renew_interval, milliseconds(999));
  EXPECT_EQ(parseOk(electionDoc(R"("safetyMarginMs": 1499)")).election.safety_margin, milliseconds(1499));
  EXPECT_EQ(parseOk(electionDoc(R"("bucketReplicas": 5)")).election.bucket_replicas, 5);
  EXPECT_FALSE(parseOk(electionDoc(R"("candidate": false)")).election.candidate);
}

TEST(ConfigBounds, IdsUpToSixtyFourCharacters) {
  std::string id(64, 'a');
  Config c =
      parseOk(R"({"clusterId": ")" + id + R"(", "nodeId": "Node_1-a", "nats": {"servers": ["nats://h:1"]}})");
  EXPECT_EQ(c.cluster_id, id);
  EXPECT_EQ(c.node_id, "Node_1-a");
}

TEST(ConfigBounds, IsValidId) {
  EXPECT_TRUE(isValidId("a"));
  EXPECT_TRUE(isValidId("node-1_A"));
  EXPECT_TRUE(isValidId(std::string(64, 'z')));
  EXPECT_FALSE(isValidId(""));
  EXPECT_FALSE(isValidId(std::string(65, 'z')));
  EXPECT_TRUE(isValidId("_a"));
  EXPECT_TRUE(isValidId("a-"));
  EXPECT_FALSE(isValidId("-"));
  EXPECT_FALSE(isValidId("-a"));
  for (std::string bad : {"a.b", "a b", "a*", "a>", "a/b", "ä", "a:b", "n\n"}) {
    EXPECT_FALSE(isValidId(bad)) << bad;
  }
  EXPECT_FALSE(isValidId(std::string("a\0b", 3)));
}

TEST(ConfigBounds, NatsServerForms) {
  Config c = parseOk(
      natsDoc(R"("servers": ["nats://127.0.0.1:4222", "tls://nats-1.example.com:4443", "nats://[::1]:4222",)"
              R"( "nats://alice:s3cret@h:4222", "nats://token@h:1", "nats://h:65535"])"));
  EXPECT_EQ(c.nats.servers.size(), 6u);
  EXPECT_EQ(c.nats.servers[3], "nats://alice:s3cret@h:4222");
}

TEST(ConfigBounds, TlsCaAloneEnablesTls) {
  Config c = parseOk(natsWith(R"("tls": {"ca": "/etc/hacoord/ca.pem"})"));
  EXPECT_TRUE(c.nats.tls.enabled());
  EXPECT_EQ(c.nats.tls.ca, "/etc/hacoord/ca.pem");
}

TEST(ConfigBounds, EmptyOptionalStringsMeanUnset) {
  Config c = parseOk(doc(R"("vip": {"address": ""}, "http": {"listen": ""})"));
  EXPECT_FALSE(c.vip.enabled());
  EXPECT_EQ(c.http_listen, "");
  Config t = parseOk(natsWith(R"("credentials": "", "tls": {"ca": "", "cert": "", "key": ""})"));
  EXPECT_FALSE(t.nats.tls.enabled());
}

TEST(ConfigBounds, VipNetmaskDefaultsPerFamily) {
  EXPECT_EQ(parseOk(vipDoc(R"("address": "192.0.2.100", "interface": "eth0")")).vip.netmask, 32);
  EXPECT_EQ(parseOk(vipDoc(R"("address": "2001:db8::100", "interface": "eth0")")).vip.netmask, 128);
  EXPECT_EQ(parseOk(vipDoc(R"("address": "2001:db8::100", "interface": "eth0", "netmask": 64)")).vip.netmask,
            64);
  EXPECT_EQ(parseOk(vipWith(R"("netmask": 0)")).vip.netmask, 0);
  EXPECT_EQ(parseOk(vipWith(R"("netmask": 32)")).vip.netmask, 32);
  EXPECT_EQ(parseOk(vipDoc(R"("address": "2001:db8::1", "interface": "eth0", "netmask": 128)")).vip.netmask,
            128);
}

TEST(ConfigBounds, VipInterfaceNames) {
  EXPECT_EQ(parseOk(vipDoc(R"("address": "192.0.2.1", "interface": "enp0s31f6.1234")")).vip.interface,
            "enp0s31f6.1234");
  EXPECT_EQ(parseOk(vipDoc(R"("address": "192.0.2.1", "interface": "abcdefghijklmno")")).vip.interface,
            "abcdefghijklmno");
}

// ---- the VIP's kernel lifetime (DESIGN §4) ----

std::string vipElectionDoc(const std::string& election, const std::string& vip_extra = "") {
  return doc(R"("election": {)" + election + R"(}, "vip": {"address": "192.0.2.100", "interface": "eth0")" +
             vip_extra + "}");
}

TEST(ConfigVipLifetime, TimingsWithoutAKernelLifetimeNeedTheFastProfileKey) {
  const std::string fast = R"("leaseTtlMs": 300, "renewIntervalMs": 100, "safetyMarginMs": 30)";
  EXPECT_TRUE(errorOf(vipElectionDoc(fast))
                  .starts_with("node.json: vip: leaseTtlMs 300 - safetyMarginMs 30 - 300 ms kernel slack "
                               "leaves no whole second"))
      << errorOf(vipElectionDoc(fast));
  Config c = parseOk(vipElectionDoc(fast, R"(, "allowWithoutKernelLifetime": true)"));
  EXPECT_TRUE(c.vip.allow_without_kernel_lifetime);
  EXPECT_EQ(c.election.lease_ttl, milliseconds(300));
  // Without a VIP there is nothing for the kernel to remove.
  EXPECT_EQ(parseOk(electionDoc(fast)).election.lease_ttl, milliseconds(300));
  // Where a lifetime exists the key changes nothing.
  EXPECT_TRUE(parseOk(vipElectionDoc("", R"(, "allowWithoutKernelLifetime": true)"))
                  .vip.allow_without_kernel_lifetime);
}

TEST(ConfigVipLifetime, Edges) {
  // TTL - margin - 300 ms must leave a whole second, and that second must exceed the renew interval.
  EXPECT_EQ(parseOk(vipElectionDoc(R"("leaseTtlMs": 1500, "renewIntervalMs": 300, "safetyMarginMs": 200)"))
                .election.lease_ttl,
            milliseconds(1500));
  EXPECT_NE(errorOf(vipElectionDoc(R"("leaseTtlMs": 1499, "renewIntervalMs": 300, "safetyMarginMs": 200)")),
            "<accepted>");
  EXPECT_EQ(parseOk(vipElectionDoc(R"("leaseTtlMs": 2100, "renewIntervalMs": 999, "safetyMarginMs": 200)"))
                .election.renew_interval,
            milliseconds(999));
  EXPECT_NE(errorOf(vipElectionDoc(R"("leaseTtlMs": 2100, "renewIntervalMs": 1000, "safetyMarginMs": 200)")),
            "<accepted>");
  // The defaults (2000/500/200) and the samples' long TTLs keep a lifetime.
  EXPECT_EQ(parseOk(vipElectionDoc("")).election.lease_ttl, milliseconds(2000));
  EXPECT_EQ(parseOk(vipElectionDoc(R"("leaseTtlMs": 12000)")).election.renew_interval, milliseconds(3000));
  // The rule also holds for a short TTL whose derived renew and margin alone would not fail.
  EXPECT_NE(errorOf(vipElectionDoc(R"("leaseTtlMs": 1300, "renewIntervalMs": 200)")), "<accepted>");
}

// docs/configuration.md: "with the derived defaults any leaseTtlMs of 1444 or more gives one".
TEST(ConfigVipLifetime, DerivedDefaultsGiveALifetimeFrom1444) {
  for (int ttl = 1000; ttl <= 30000; ttl += ttl < 1500 ? 1 : 37) {
    const bool accepted = parseConfig(vipElectionDoc("\"leaseTtlMs\": " + std::to_string(ttl))).isOk();
    EXPECT_EQ(accepted, ttl >= 1444) << ttl;
  }
}

// The config rule restates VipManager::chooseKernelLifetime (the core must not link the VIP
// module), so the two are compared here over a table of timings: a config loads without
// allowWithoutKernelLifetime exactly when the VIP manager will find a kernel lifetime for it.
TEST(ConfigVipLifetime, AgreesWithVipManagerOverATableOfTimings) {
  std::vector<int> ttls;
  for (int ttl = 300; ttl <= 7000; ttl += 100) ttls.push_back(ttl);
  for (int ttl : {1299, 1301, 1399, 1401, 1499, 1501, 2299, 2301, 2499, 2501, 3001}) ttls.push_back(ttl);
  const std::vector<int> renews = {
      0 /* derived */, 50, 100, 199, 200, 250, 333, 499, 500, 999, 1000, 1001, 1999, 2000};
  const std::vector<int> margins = {0 /* derived */, 1, 50, 100, 200, 300, 500, 1000};
  int compared = 0;
  int with_lifetime = 0;
  std::regex advice("Raise election.leaseTtlMs to at least ([0-9]+),");
  for (int ttl : ttls) {
    for (int renew : renews) {
      for (int margin : margins) {
        std::string election = "\"leaseTtlMs\": " + std::to_string(ttl);
        std::string others;
        if (renew > 0) others += ", \"renewIntervalMs\": " + std::to_string(renew);
        if (margin > 0) others += ", \"safetyMarginMs\": " + std::to_string(margin);
        // With the fast-profile key the document loads whenever the election rules hold, and
        // shows the effective timings (derived defaults included).
        Result<Config> fast =
            parseConfig(vipElectionDoc(election + others, R"(, "allowWithoutKernelLifetime": true)"));
        if (!fast.isOk()) continue;
        const ElectionConfig& e = fast->election;
        const auto lifetime =
            VipManager::chooseKernelLifetime(VipTimings{e.lease_ttl, e.renew_interval, e.safety_margin});
        Result<Config> strict = parseConfig(vipElectionDoc(election + others), "node.json");
        const std::string where = election + others;
        ++compared;
        ASSERT_EQ(strict.isOk(), lifetime.has_value()) << where << ": " << strict.status().toString();
        if (lifetime) {
          ++with_lifetime;
          continue;
        }
        const std::string& message = strict.status().message();
        EXPECT_TRUE(message.starts_with("node.json: vip: leaseTtlMs " + std::to_string(ttl) +
                                        " - safetyMarginMs " + std::to_string(e.safety_margin.count()) +
                                        " - 300 ms kernel slack"))
            << message;
        // The advice works whether the operator keeps the other timings or lets them follow the TTL.
        std::smatch m;
        ASSERT_TRUE(std::regex_search(message, m, advice)) << message;
        const std::string raised = "\"leaseTtlMs\": " + m[1].str();
        EXPECT_EQ(errorOf(vipElectionDoc(raised + others)), "<accepted>") << where << " -> " << raised;
        EXPECT_EQ(errorOf(vipElectionDoc(raised)), "<accepted>") << where << " -> " << raised;
      }
    }
  }
  // The table spans both outcomes generously.
  EXPECT_GT(compared, 3000);
  EXPECT_GT(with_lifetime, 1000);
  EXPECT_GT(compared - with_lifetime, 1000);
}

TEST(ConfigBounds, HealthCheckKinds) {
  Config c = parseOk(checksDoc(
      R"({"name": "cmd", "type": "command", "command": "exit 0"},)"
      R"( {"name": "port", "type": "tcp", "address": "[::1]:5432", "intervalMs": 500, "timeoutMs": 500},)"
      R"( {"name": "web", "type": "http", "url": "http://127.0.0.1:8008/health?x=1", "rise": 1, "fall": 100},)"
      R"( {"name": "web2", "type": "http", "url": "http://localhost"})"));
  ASSERT_EQ(c.health.checks.size(), 4u);
  EXPECT_EQ(c.health.checks[0].type, HealthCheckConfig::Type::kCommand);
  EXPECT_EQ(c.health.checks[0].command, "exit 0");
  EXPECT_EQ(c.health.checks[0].interval, milliseconds(1000));
  EXPECT_EQ(c.health.checks[0].timeout, milliseconds(1000));
  EXPECT_EQ(c.health.checks[0].rise, 2);
  EXPECT_EQ(c.health.checks[0].fall, 3);
  EXPECT_EQ(c.health.checks[1].type, HealthCheckConfig::Type::kTcp);
  EXPECT_EQ(c.health.checks[1].address, "[::1]:5432");
  EXPECT_EQ(c.health.checks[1].timeout, milliseconds(500));
  EXPECT_EQ(c.health.checks[2].type, HealthCheckConfig::Type::kHttp);
  EXPECT_EQ(c.health.checks[2].url, "http://127.0.0.1:8008/health?x=1");
  EXPECT_EQ(c.health.checks[2].rise, 1);
  EXPECT_EQ(c.health.checks[2].fall, 100);
  EXPECT_EQ(c.health.checks[3].url, "http://localhost");
}

TEST(ConfigBounds, HttpListenForms) {
  EXPECT_EQ(parseOk(doc(R"("http": {"listen": "0.0.0.0:9090"})")).http_listen, "0.0.0.0:9090");
  EXPECT_EQ(parseOk(doc(R"("http": {"listen": "[::]:9090"})")).http_listen, "[::]:9090");
  // Port 0 lets tests bind a free port.
  EXPECT_EQ(parseOk(doc(R"("http": {"listen": "127.0.0.1:0"})")).http_listen, "127.0.0.1:0");
}

TEST(ConfigBounds, EveryLogLevel) {
  for (std::string level : {"trace", "debug", "info", "warn", "error", "critical", "off"}) {
    EXPECT_EQ(parseOk(doc(R"("log": {"level": ")" + level + R"("})")).log_level, level);
  }
}

// ---- validateConfig for configs built in code ----

TEST(ConfigValidate, CodeBuiltConfigPasses) {
  EXPECT_TRUE(validateConfig(validCodeConfig()).isOk()) << validateConfig(validCodeConfig()).toString();
  Config c = validCodeConfig();
  c.vip.address = "2001:db8::5";
  c.vip.interface = "eth0";  // netmask left at -1: the per-family default
  EXPECT_TRUE(validateConfig(c).isOk()) << validateConfig(c).toString();
}

TEST(ConfigValidate, DefaultConfigNamesTheFirstProblem) {
  Status s = validateConfig(Config{});
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "config: clusterId: " + kIdRule + R"((got ""))");
}

TEST(ConfigValidate, ReportsJsonPaths) {
  auto check = [](const std::function<void(Config&)>& mutate, const std::string& expected) {
    Config c = validCodeConfig();
    mutate(c);
    Status s = validateConfig(c);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(s.message(), expected);
  };
  check([](Config& c) { c.election.renew_interval = milliseconds(1000); },
        "config: election.renewIntervalMs: must be less than half of election.leaseTtlMs (1000 >= 2000/2)");
  check([](Config& c) { c.nats.request_timeout = milliseconds(-1); },
        "config: nats.requestTimeoutMs: must be a positive number of milliseconds, got -1");
  check([](Config& c) { c.nats.servers.clear(); }, "config: nats.servers: must list at least one server");
  check([](Config& c) { c.nats.servers.push_back("nats://h"); },
        R"(config: nats.servers[1]: expected host:port (got "nats://h"))");
  check([](Config& c) { c.nats.credentials = std::string("/etc/a\0b", 8); },
        "config: nats.credentials: must not contain a NUL character");
  check([](Config& c) { c.election.safety_margin = milliseconds(0); },
        "config: election.safetyMarginMs: must be a positive number of milliseconds, got 0");
  check([](Config& c) { c.election.bucket_replicas = 7; },
        "config: election.bucketReplicas: must be between 1 and 5, got 7");
  check([](Config& c) { c.vip.address = "192.0.2.1"; },
        "config: vip.interface: required when vip.address is set");
  check(
      [](Config& c) {
        c.vip.address = "192.0.2.1";
        c.vip.interface = "eth0";
        c.vip.netmask = 40;
      },
      "config: vip.netmask: must be between 0 and 32 for an IPv4 address, got 40");
  check(
      [](Config& c) {
        c.vip.address = std::string("192.0.2.1\0junk", 14);
        c.vip.interface = "eth0";
      },
      "config: vip.address: must not contain a NUL character");
  check([](Config& c) { c.vip.garp_count = 1000; },
        "config: vip.garpCount: must be between 0 and 100, got 1000");
  check(
      [](Config& c) {
        HealthCheckConfig h;
        h.name = "db";
        h.type = HealthCheckConfig::Type::kTcp;
        h.address = "db";
        c.health.checks.push_back(h);
      },
      R"(config: health.checks[0].address: expected host:port (got "db"))");
  check(
      [](Config& c) {
        HealthCheckConfig h;
        h.name = "db";
        h.command = "true";
        h.rise = 0;
        c.health.checks.push_back(h);
      },
      "config: health.checks[0].rise: must be between 1 and 100, got 0");
  check([](Config& c) { c.http_listen = "localhost"; },
        R"(config: http.listen: expected host:port (got "localhost"))");
  check([](Config& c) { c.log_level = "loud"; },
        R"(config: log.level: must be one of trace, debug, info, warn, error, critical, off (got "loud"))");
  check(
      [](Config& c) { c.state_dir = ""; },
      "config: stateDir: must not be empty: the highest epoch this node has seen is kept there, and it must "
      "survive restarts so that epochs never repeat");
  check([](Config& c) { c.state_dir = "state"; },
        R"(config: stateDir: must be an absolute path (got "state"))");
  check([](Config& c) { c.nats.user = "hacoord"; },
        "config: nats.passwordFile: required when nats.user is set");
  check([](Config& c) { c.hooks.on_leader_change = std::string(4097, 'x'); },
        "config: hooks.onLeaderChange: must be at most 4096 bytes (put a longer command in a script), got "
        "4097");
  check([](Config& c) { c.http_max_connections = 0; },
        "config: http.maxConnections: must be between 1 and 10000, got 0");
  check([](Config& c) { c.http_request_timeout = milliseconds(0); },
        "config: http.requestTimeoutMs: must be a positive number of milliseconds, got 0");
  check([](Config& c) { c.vip.allow_without_kernel_lifetime = true; },
        "config: vip.allowWithoutKernelLifetime: set without vip.address");
  check([](Config& c) { c.mesh.cert = "/m/n1.crt"; }, "config: mesh.cert: set without mesh.listen");
  check([](Config& c) { c.mesh.division = "dc1"; }, "config: mesh.division: set without mesh.listen");
  check([](Config& c) { c.mesh.listen = "10.0.0.1:7400"; },
        "config: mesh.ca: required when mesh.listen is set");
  check(
      [](Config& c) {
        c.mesh.listen = "[::]:7400";
        c.mesh.ca = "/c";
        c.mesh.cert = "/c";
        c.mesh.key = "/k";
      },
      R"(config: mesh.advertise: required when mesh.listen is a wildcard address ("[::]:7400"): peers cannot dial it)");
  check(
      [](Config& c) {
        c.mesh.listen = "10.0.0.1:7400";
        c.mesh.ca = "/c";
        c.mesh.cert = "/c";
        c.mesh.key = "/k";
        c.mesh.max_message_bytes = 1;
      },
      "config: mesh.maxMessageBytes: must be between 65536 and 268435456, got 1");
  check(
      [](Config& c) {
        c.vip.address = "192.0.2.1";
        c.vip.interface = "eth0";
        c.election.lease_ttl = milliseconds(1000);
        c.election.renew_interval = milliseconds(250);
        c.election.safety_margin = milliseconds(100);
      },
      "config: vip: leaseTtlMs 1000 - safetyMarginMs 100 - 300 ms kernel slack leaves no whole second of "
      "kernel "
      "lifetime above renewIntervalMs 250; the kernel could not remove the VIP if this daemon froze. Raise "
      "election.leaseTtlMs to at least 1500, or set vip.allowWithoutKernelLifetime: true (the fast profile: "
      "a "
      "frozen daemon keeps the VIP until it wakes)");
}

TEST(ConfigValidate, CodeBuiltFastProfilePasses) {
  Config c = validCodeConfig();
  c.vip.address = "192.0.2.1";
  c.vip.interface = "eth0";
  c.election.lease_ttl = milliseconds(300);
  c.election.renew_interval = milliseconds(100);
  c.election.safety_margin = milliseconds(30);
  c.vip.allow_without_kernel_lifetime = true;
  EXPECT_TRUE(validateConfig(c).isOk()) << validateConfig(c).toString();
}

// ---- files ----

class ConfigFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) / ("hacoord_config_test_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }
  fs::path write(const std::string& name, const std::string& text) {
    fs::path p = dir_ / name;
    std::ofstream(p, std::ios::binary) << text;
    return p;
  }
  fs::path dir_;
};

TEST_F(ConfigFileTest, MissingFileNamesThePathAndErrno) {
  std::string path = (dir_ / "nope" / "node.json").string();
  Result<Config> r = loadConfigFile(path);
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(), path + ": cannot read: No such file or directory");
}

TEST_F(ConfigFileTest, DirectoryIsNotAConfig) {
  Result<Config> r = loadConfigFile(dir_.string());
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.status().message(), dir_.string() + ": cannot read: Is a directory");
}

TEST_F(ConfigFileTest, UnreadableFile) {
  if (::geteuid() == 0) GTEST_SKIP() << "root reads mode-000 files";
  fs::path p = write("secret.json", doc());
  ::chmod(p.c_str(), 0);
  Result<Config> r = loadConfigFile(p.string());
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.status().message(), p.string() + ": cannot read: Permission denied");
}

TEST_F(ConfigFileTest, ErrorsUseTheFileNameAsSource) {
  fs::path p = write("node.json", electionDoc(R"("renewIntervalMs": 1000)"));
  Result<Config> r = loadConfigFile(p.string());
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(
      r.status().message(),
      "node.json: election.renewIntervalMs: must be less than half of election.leaseTtlMs (1000 >= 2000/2)");
}

TEST_F(ConfigFileTest, LoadsAValidFile) {
  fs::path p = write("node.json", doc(R"("log": {"level": "debug"})"));
  Result<Config> r = loadConfigFile(p.string());
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_EQ(r->log_level, "debug");
}

TEST_F(ConfigFileTest, HugeFileIsRefused) {
  fs::path p = write("big.json", doc() + std::string((1 << 20) + 1, ' '));
  Result<Config> r = loadConfigFile(p.string());
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.status().message(), p.string() + ": cannot read: larger than 1048576 bytes, not a config file");
}

// ---- the shipped samples and the reference ----

std::vector<fs::path> sampleConfigs() {
  std::vector<fs::path> out;
  for (const auto& entry : fs::directory_iterator(kSourceDir / "config")) {
    if (entry.path().extension() == ".json") out.push_back(entry.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

TEST(ConfigSamples, EveryJsonInConfigDirectoryLoads) {
  std::vector<fs::path> samples = sampleConfigs();
  std::set<std::string> names;
  for (const fs::path& p : samples) {
    names.insert(p.filename().string());
    Result<Config> r = loadConfigFile(p.string());
    EXPECT_TRUE(r.isOk()) << r.status().toString();
    if (r.isOk()) {
      EXPECT_TRUE(validateConfig(*r).isOk()) << p << ": " << validateConfig(*r).toString();
    }
  }
  for (const char* required :
       {"cluster-node1.json", "cluster-node2.json", "cluster-node3.json", "minimal.json", "full.json"}) {
    EXPECT_TRUE(names.count(required)) << required << " missing from config/";
  }
}

TEST(ConfigSamples, ClusterNodesShareClusterAndVip) {
  std::set<std::string> node_ids;
  for (int i = 1; i <= 3; ++i) {
    Result<Config> r =
        loadConfigFile((kSourceDir / "config" / ("cluster-node" + std::to_string(i) + ".json")).string());
    ASSERT_TRUE(r.isOk()) << r.status().toString();
    EXPECT_EQ(r->cluster_id, "demo");
    EXPECT_EQ(r->nats.servers, std::vector<std::string>{"nats://127.0.0.1:4222"});
    EXPECT_EQ(r->vip.address, "192.0.2.100");
    EXPECT_EQ(r->vip.netmask, 24);
    EXPECT_EQ(r->vip.interface, "eth0");
    EXPECT_EQ(r->health.checks.size(), 1u);
    node_ids.insert(r->node_id);
  }
  EXPECT_EQ(node_ids.size(), 3u);
}

TEST(ConfigSamples, MinimalHasOnlyRequiredKeys) {
  Result<Config> r = loadConfigFile((kSourceDir / "config" / "minimal.json").string());
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  std::string text = readText(kSourceDir / "config" / "minimal.json");
  for (const char* key : {"election", "vip", "health", "http", "log", "credentials", "tls", "mesh"}) {
    EXPECT_EQ(text.find(std::string("\"") + key + "\""), std::string::npos) << key;
  }
}

// Every key the loader accepts, as docs/configuration.md names it.
const std::vector<std::string> kAllKeys = {"clusterId",
                                           "nodeId",
                                           "nats.servers",
                                           "nats.credentials",
                                           "nats.tls.ca",
                                           "nats.tls.cert",
                                           "nats.tls.key",
                                           "nats.reconnectWaitMs",
                                           "nats.reconnectWaitMaxMs",
                                           "nats.connectTimeoutMs",
                                           "nats.requestTimeoutMs",
                                           "election.leaseTtlMs",
                                           "election.renewIntervalMs",
                                           "election.cooldownMs",
                                           "election.safetyMarginMs",
                                           "election.hookTimeLimitMs",
                                           "election.bucketReplicas",
                                           "election.candidate",
                                           "vip.address",
                                           "vip.netmask",
                                           "vip.interface",
                                           "vip.garpCount",
                                           "vip.garpIntervalMs",
                                           "vip.garpRefreshMs",
                                           "vip.duplicateCheck",
                                           "health.checks",
                                           "health.checks[].name",
                                           "health.checks[].type",
                                           "health.checks[].command",
                                           "health.checks[].address",
                                           "health.checks[].url",
                                           "health.checks[].intervalMs",
                                           "health.checks[].timeoutMs",
                                           "health.checks[].rise",
                                           "health.checks[].fall",
                                           "health.failAfterMs",
                                           "http.listen",
                                           "log.level",
                                           "stateDir",
                                           "nats.user",
                                           "nats.passwordFile",
                                           "vip.allowWithoutKernelLifetime",
                                           "hooks.onBecomeLeader",
                                           "hooks.onLoseLeadership",
                                           "hooks.onLeaderChange",
                                           "http.maxConnections",
                                           "http.requestTimeoutMs",
                                           "mesh.listen",
                                           "mesh.advertise",
                                           "mesh.ca",
                                           "mesh.cert",
                                           "mesh.key",
                                           "mesh.division",
                                           "mesh.type",
                                           "mesh.pingIntervalMs",
                                           "mesh.suspectAfterMs",
                                           "mesh.deadAfterMs",
                                           "mesh.dialTimeoutMs",
                                           "mesh.refreshMs",
                                           "mesh.maxMessageBytes",
                                           "mesh.sendBudgetBytes"};

TEST(ConfigSamples, FullSetsEveryKey) {
  Result<Config> r = loadConfigFile((kSourceDir / "config" / "full.json").string());
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  std::string text = readText(kSourceDir / "config" / "full.json");
  for (const std::string& key : kAllKeys) {
    std::string leaf = key.substr(key.find_last_of('.') + 1);
    EXPECT_NE(text.find("\"" + leaf + "\":"), std::string::npos) << key;
  }
  EXPECT_TRUE(r->nats.tls.enabled());
  EXPECT_TRUE(r->nats.credentials.starts_with("/etc/hacoord/"));
  EXPECT_TRUE(r->nats.tls.ca.starts_with("/etc/hacoord/"));
  EXPECT_TRUE(r->nats.tls.cert.starts_with("/etc/hacoord/"));
  EXPECT_TRUE(r->nats.tls.key.starts_with("/etc/hacoord/"));
  std::set<HealthCheckConfig::Type> types;
  for (const auto& c : r->health.checks) types.insert(c.type);
  EXPECT_EQ(types.size(), 3u) << "full.json shows one check of each type";
  EXPECT_TRUE(r->state_dir.starts_with("/"));
  EXPECT_FALSE(r->hooks.on_become_leader.empty());
  EXPECT_FALSE(r->hooks.on_lose_leadership.empty());
  EXPECT_FALSE(r->hooks.on_leader_change.empty());
  EXPECT_NE(r->http_max_connections, Config{}.http_max_connections);
  EXPECT_NE(r->http_request_timeout, Config{}.http_request_timeout);
  EXPECT_TRUE(r->mesh.enabled());
  EXPECT_FALSE(r->mesh.advertise.empty());
  EXPECT_TRUE(r->mesh.ca.starts_with("/etc/hacoord/mesh/"));
  EXPECT_TRUE(r->mesh.cert.starts_with("/etc/hacoord/mesh/"));
  EXPECT_TRUE(r->mesh.key.starts_with("/etc/hacoord/mesh/"));
  EXPECT_FALSE(r->mesh.division.empty());
  EXPECT_FALSE(r->mesh.type.empty());
}

// nats.user/passwordFile and nats.credentials exclude each other, so full.json shows the user and
// password as a commented alternative; swapped in for the credentials line, it must load.
TEST(ConfigSamples, FullShowsUserAndPasswordAsALoadableAlternative) {
  std::string text = readText(kSourceDir / "config" / "full.json");
  const std::size_t credentials = text.find("\"credentials\":");
  ASSERT_NE(credentials, std::string::npos);
  const std::size_t credentials_line = text.rfind('\n', credentials) + 1;
  text.erase(credentials_line, text.find('\n', credentials) + 1 - credentials_line);
  const std::size_t commented = text.find("// \"user\":");
  ASSERT_NE(commented, std::string::npos) << "full.json shows no commented \"user\" alternative";
  text.erase(commented, 3);
  Result<Config> r = parseConfig(text, "full.json");
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_FALSE(r->nats.user.empty());
  EXPECT_TRUE(r->nats.password_file.starts_with("/etc/hacoord/"));
  EXPECT_TRUE(r->nats.credentials.empty());
}

TEST(ConfigSamples, ReferenceDocumentsEveryKey) {
  std::string text = readText(kSourceDir / "docs" / "configuration.md");
  ASSERT_FALSE(text.empty());
  for (const std::string& key : kAllKeys) {
    EXPECT_NE(text.find("`" + key + "`"), std::string::npos) << key << " is not in docs/configuration.md";
  }
}

}  // namespace
}  // namespace hacoord
