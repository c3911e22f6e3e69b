// Cluster CA and node certificates (DESIGN §6.1): `hacoord certs init-ca` / `issue`, and the
// identity a node's certificate carries.
//
// Identity is exactly one URI SAN hacoord://<clusterId>/<nodeId>. Ids follow hacoord::isValidId
// (the config's rule): 1-64 characters of [A-Za-z0-9_-], not starting with '-'. Keys are P-256; the CA is
// CA:TRUE, pathlen 0, keyCertSign; leaves have serverAuth+clientAuth and a 16-byte random serial. Private
// keys are written with O_EXCL and mode 0600; nothing is ever overwritten; the CA key is never written into a
// node's directory.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "hacoord/status.h"

struct x509_st;  // OpenSSL's X509, kept out of this header

namespace hacoord::mesh {

// InvalidArgument naming the rule broken, for a cluster or node id; OK exactly when
// hacoord::isValidId(id), so no certificate is issued for an id no config can name.
Status checkId(std::string_view what, std::string_view id);
std::string nodeUri(std::string_view cluster, std::string_view node);  // hacoord://c/n

struct CaFiles {
  std::string dir;  // ca.crt (0644) and ca.key (0600)
  std::string cert() const { return dir + "/ca.crt"; }
  std::string key() const { return dir + "/ca.key"; }
};

// Creates dir (0700) if missing and writes a new CA there. AlreadyExists if ca.crt or ca.key is
// there already (nothing is changed).
Status initCa(const std::string& dir, std::chrono::hours validity = std::chrono::hours(24 * 3650));

struct IssueOptions {
  std::string cluster;
  std::string node;
  std::chrono::hours validity{24 * 365};
  // For tests that need bad certificates (never reachable from the CLI): start of validity
  // relative to now (notAfter is notBefore + validity), extra URI SANs after the node's, DNS
  // SANs, no URI SAN of the node's own (extra_uri_sans are still added).
  std::chrono::seconds not_before_offset{-60};
  std::vector<std::string> extra_uri_sans;
  std::vector<std::string> extra_dns_sans;
  bool omit_uri_san = false;
};

struct NodeFiles {
  std::string dir;  // <dir>/<node>.crt (0644), <node>.key (0600), ca.crt (copy, 0644)
  std::string node;
  std::string cert() const { return dir + "/" + node + ".crt"; }
  std::string key() const { return dir + "/" + node + ".key"; }
  std::string ca() const { return dir + "/ca.crt"; }
};

// Issues a leaf signed by the CA in `ca_dir` into `out_dir`/<node>.{crt,key} and copies ca.crt
// there. Refuses (InvalidArgument) when out_dir is ca_dir or holds ca.key, and node id "ca" (its
// files would be ca.crt / ca.key); AlreadyExists when the node's files exist, or a ca.crt that is
// not this CA's (the same CA's ca.crt is kept, so several nodes can share a directory). Creates
// out_dir (0700) if missing; on failure removes what it created. Returns the leaf's fingerprint
// (lower-case hex SHA-256 of its DER).
Result<std::string> issueCert(const std::string& ca_dir, const std::string& out_dir,
                              const IssueOptions& options);

// The lower-case hex SHA-256 of the DER of the first certificate in a PEM file.
Result<std::string> fingerprintOfPemFile(const std::string& path);
// The same for a certificate in memory.
Result<std::string> fingerprintOf(x509_st* cert);

// The node a leaf names: exactly one URI SAN hacoord://<cluster>/<node> with a valid node id, and
// `expected` when it is not empty (InvalidArgument saying what is wrong otherwise).
Result<std::string> identityOf(x509_st* cert, const std::string& cluster, const std::string& expected);
// The same for the first certificate of a PEM file (`expected` empty).
Result<std::string> identityOfPemFile(const std::string& path, const std::string& cluster);

}  // namespace hacoord::mesh
