// Certificates: the CA and leaf profiles checked with OpenSSL itself, file modes, refusals that
// change nothing, id rules, and the test-only options that make bad certificates.
#include "mesh/certs.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "hacoord/config.h"

namespace hacoord::mesh {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;

X509Ptr loadCert(const std::string& path) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) return nullptr;
  return X509Ptr(PEM_read_X509(f.get(), nullptr, nullptr, nullptr));
}

std::unique_ptr<EVP_PKEY, void (*)(EVP_PKEY*)> loadKey(const std::string& path) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  return {f ? PEM_read_PrivateKey(f.get(), nullptr, nullptr, nullptr) : nullptr, &EVP_PKEY_free};
}

unsigned modeOf(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 0xffff;
  return st.st_mode & 07777;
}

std::string readAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Every file under `dir`, with its mode and contents: "nothing changed" is an equal snapshot.
std::map<std::string, std::string> snapshot(const std::string& dir) {
  std::map<std::string, std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    const std::string p = e.path().string();
    files[p] = std::to_string(modeOf(p)) + ":" + (e.is_regular_file() ? readAll(p) : "<dir>");
  }
  return files;
}

// The names of type `type` in `cert`'s subjectAltName, and how many of other types it has.
std::vector<std::string> sans(X509* cert, int type, int* others = nullptr) {
  std::vector<std::string> uris;
  if (others != nullptr) *others = 0;
  auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (names == nullptr) return uris;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    if (name->type == type) {
      const ASN1_IA5STRING* uri = name->d.ia5;
      uris.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(uri)),
                        static_cast<std::size_t>(ASN1_STRING_length(uri)));
    } else if (others != nullptr) {
      ++*others;
    }
  }
  GENERAL_NAMES_free(names);
  return uris;
}
std::vector<std::string> uriSans(X509* cert, int* others = nullptr) { return sans(cert, GEN_URI, others); }

// X509_verify_cert of `leaf` against a store holding only `ca`: X509_V_OK or the reason.
int verifyAgainst(X509* ca, X509* leaf, int purpose = X509_PURPOSE_SSL_SERVER) {
  std::unique_ptr<X509_STORE, void (*)(X509_STORE*)> store(X509_STORE_new(), &X509_STORE_free);
  std::unique_ptr<X509_STORE_CTX, void (*)(X509_STORE_CTX*)> ctx(X509_STORE_CTX_new(), &X509_STORE_CTX_free);
  if (!store || !ctx || X509_STORE_add_cert(store.get(), ca) != 1 ||
      X509_STORE_CTX_init(ctx.get(), store.get(), leaf, nullptr) != 1 ||
      X509_STORE_CTX_set_purpose(ctx.get(), purpose) != 1) {
    return -1;
  }
  if (X509_verify_cert(ctx.get()) == 1) return X509_V_OK;
  return X509_STORE_CTX_get_error(ctx.get());
}

std::string curveOf(EVP_PKEY* key) {
  char name[64] = {0};
  std::size_t len = 0;
  if (key == nullptr || EVP_PKEY_get_group_name(key, name, sizeof name, &len) != 1) return "<none>";
  return name;
}

class CertsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "hacoord-certs-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    ca_dir_ = dir_ + "/ca";
  }
  void TearDown() override { fs::remove_all(dir_); }

  void makeCa() {
    const Status s = initCa(ca_dir_);
    ASSERT_TRUE(s.isOk()) << s.toString();
  }
  IssueOptions opts(const std::string& node = "n1") {
    IssueOptions o;
    o.cluster = "prod_1";
    o.node = node;
    return o;
  }
  // Issues `o` into `out` and returns the fingerprint (test fails if issuing does).
  std::string issue(const std::string& out, const IssueOptions& o) {
    auto r = issueCert(ca_dir_, out, o);
    EXPECT_TRUE(r.isOk()) << r.status().toString();
    return r.isOk() ? *r : "";
  }

  std::string dir_;
  std::string ca_dir_;
};

// ---- initCa ----

TEST_F(CertsTest, InitCaWritesA0600KeyAnd0644CertInANew0700Directory) {
  makeCa();
  const CaFiles ca{ca_dir_};
  EXPECT_EQ(modeOf(ca_dir_), 0700u);
  EXPECT_EQ(modeOf(ca.key()), 0600u);
  EXPECT_EQ(modeOf(ca.cert()), 0644u);
  X509Ptr cert = loadCert(ca.cert());
  auto key = loadKey(ca.key());
  ASSERT_TRUE(cert && key);
  EXPECT_EQ(X509_check_private_key(cert.get(), key.get()), 1);
  EXPECT_EQ(curveOf(key.get()), "prime256v1");
}

TEST_F(CertsTest, InitCaIsACaWithPathLenZeroThatOnlySignsCertificates) {
  makeCa();
  X509Ptr cert = loadCert(CaFiles{ca_dir_}.cert());
  ASSERT_TRUE(cert);
  int critical = -1;
  auto* bc = static_cast<BASIC_CONSTRAINTS*>(
      X509_get_ext_d2i(cert.get(), NID_basic_constraints, &critical, nullptr));
  ASSERT_NE(bc, nullptr);
  EXPECT_EQ(critical, 1);
  EXPECT_TRUE(bc->ca);
  ASSERT_NE(bc->pathlen, nullptr);
  EXPECT_EQ(ASN1_INTEGER_get(bc->pathlen), 0);
  BASIC_CONSTRAINTS_free(bc);
  EXPECT_EQ(X509_get_key_usage(cert.get()), static_cast<uint32_t>(KU_KEY_CERT_SIGN | KU_CRL_SIGN));
  EXPECT_NE(X509_check_ca(cert.get()), 0);
  EXPECT_NE(X509_get0_subject_key_id(cert.get()), nullptr);
  EXPECT_EQ(X509_verify(cert.get(), X509_get0_pubkey(cert.get())), 1);  // self-signed
  EXPECT_EQ(X509_get_signature_nid(cert.get()), NID_ecdsa_with_SHA256);
  // Ten years by default: still valid in nine.
  const time_t nine_years = std::time(nullptr) + 9L * 365 * 24 * 3600;
  EXPECT_GT(X509_cmp_time(X509_get0_notAfter(cert.get()), const_cast<time_t*>(&nine_years)), 0);
}

TEST_F(CertsTest, InitCaRefusesAnExistingCaAndChangesNothing) {
  makeCa();
  const auto before = snapshot(dir_);
  const Status again = initCa(ca_dir_);
  EXPECT_EQ(again.code(), StatusCode::kAlreadyExists) << again.toString();
  EXPECT_NE(again.message().find(ca_dir_ + "/ca.key"), std::string::npos) << again.toString();
  EXPECT_EQ(snapshot(dir_), before);

  // A lone ca.crt is refused too, and no key is written beside it.
  const std::string other = dir_ + "/other";
  fs::create_directory(other);
  std::ofstream(other + "/ca.crt") << "mine";
  const Status lone = initCa(other);
  EXPECT_EQ(lone.code(), StatusCode::kAlreadyExists) << lone.toString();
  EXPECT_NE(lone.message().find(other + "/ca.crt"), std::string::npos) << lone.toString();
  EXPECT_FALSE(fs::exists(other + "/ca.key"));
  EXPECT_EQ(readAll(other + "/ca.crt"), "mine");
}

TEST_F(CertsTest, InitCaRejectsANonPositiveValidity) {
  const Status s = initCa(ca_dir_, std::chrono::hours(0));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.toString();
  EXPECT_NE(s.message().find("validity"), std::string::npos) << s.toString();
  EXPECT_FALSE(fs::exists(ca_dir_));
}

// A write that fails halfway (file size limit) leaves nothing behind: not the key, not the
// directories the call made. Run in a child so the limit cannot touch the test's own output.
int childExitCode(const std::function<Status()>& body) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::signal(SIGXFSZ, SIG_IGN);
    rlimit limit{};
    ::getrlimit(RLIMIT_FSIZE, &limit);
    limit.rlim_cur = 400;  // the key PEM (~240 bytes) fits, a certificate does not
    ::setrlimit(RLIMIT_FSIZE, &limit);
    _exit(static_cast<int>(body().code()));
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST_F(CertsTest, AFailedWriteRemovesWhatTheCallCreated) {
  const std::string nested = dir_ + "/a/b/ca";
  EXPECT_EQ(childExitCode([&] { return initCa(nested); }), static_cast<int>(StatusCode::kResourceExhausted));
  EXPECT_FALSE(fs::exists(dir_ + "/a"));

  makeCa();
  const auto before = snapshot(dir_);
  const std::string out = dir_ + "/nodes/n1";
  EXPECT_EQ(childExitCode([&] { return issueCert(ca_dir_, out, opts()).status(); }),
            static_cast<int>(StatusCode::kResourceExhausted));
  EXPECT_EQ(snapshot(dir_), before);
}

// ---- issueCert ----

TEST_F(CertsTest, LeafVerifiesAgainstItsCaForServerAndClientButNotAgainstAnotherCa) {
  makeCa();
  const std::string out = dir_ + "/n1";
  issue(out, opts());
  const NodeFiles files{out, "n1"};
  X509Ptr ca = loadCert(CaFiles{ca_dir_}.cert());
  X509Ptr leaf = loadCert(files.cert());
  ASSERT_TRUE(ca && leaf);
  EXPECT_EQ(verifyAgainst(ca.get(), leaf.get(), X509_PURPOSE_SSL_SERVER), X509_V_OK);
  EXPECT_EQ(verifyAgainst(ca.get(), leaf.get(), X509_PURPOSE_SSL_CLIENT), X509_V_OK);
  EXPECT_EQ(X509_get_signature_nid(leaf.get()), NID_ecdsa_with_SHA256);
  ASSERT_NE(X509_get0_authority_key_id(leaf.get()), nullptr);
  EXPECT_EQ(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(leaf.get()), X509_get0_subject_key_id(ca.get())),
            0);

  // A second, unrelated CA: its own key and name; the first CA's leaf does not chain to it.
  const std::string other_dir = dir_ + "/other-ca";
  ASSERT_TRUE(initCa(other_dir).isOk());
  X509Ptr other = loadCert(CaFiles{other_dir}.cert());
  ASSERT_TRUE(other);
  EXPECT_NE(X509_NAME_cmp(X509_get_subject_name(other.get()), X509_get_subject_name(ca.get())), 0);
  EXPECT_NE(verifyAgainst(other.get(), leaf.get()), X509_V_OK);
}

TEST_F(CertsTest, LeafCarriesExactlyOneUriSanAndBothKeyUsages) {
  makeCa();
  const std::string out = dir_ + "/n1";
  issue(out, opts("node_a-1"));
  const NodeFiles files{out, "node_a-1"};
  X509Ptr leaf = loadCert(files.cert());
  ASSERT_TRUE(leaf);
  int others = -1;
  EXPECT_EQ(uriSans(leaf.get(), &others), std::vector<std::string>{nodeUri("prod_1", "node_a-1")});
  EXPECT_EQ(others, 0);
  EXPECT_EQ(nodeUri("prod_1", "node_a-1"), "hacoord://prod_1/node_a-1");
  EXPECT_EQ(X509_get_extended_key_usage(leaf.get()), static_cast<uint32_t>(XKU_SSL_SERVER | XKU_SSL_CLIENT));
  EXPECT_EQ(X509_get_key_usage(leaf.get()), static_cast<uint32_t>(KU_DIGITAL_SIGNATURE));
  EXPECT_EQ(X509_check_ca(leaf.get()), 0);
  int critical = -1;
  auto* bc = static_cast<BASIC_CONSTRAINTS*>(
      X509_get_ext_d2i(leaf.get(), NID_basic_constraints, &critical, nullptr));
  ASSERT_NE(bc, nullptr);
  EXPECT_EQ(critical, 1);
  EXPECT_FALSE(bc->ca);
  BASIC_CONSTRAINTS_free(bc);
  auto key = loadKey(files.key());
  ASSERT_TRUE(key);
  EXPECT_EQ(X509_check_private_key(leaf.get(), key.get()), 1);
  EXPECT_EQ(curveOf(key.get()), "prime256v1");
}

TEST_F(CertsTest, SerialsAreSixteenPositiveRandomBytes) {
  makeCa();
  issue(dir_ + "/out", opts("n1"));
  issue(dir_ + "/out", opts("n2"));
  X509Ptr a = loadCert(dir_ + "/out/n1.crt");
  X509Ptr b = loadCert(dir_ + "/out/n2.crt");
  ASSERT_TRUE(a && b);
  for (X509* cert : {a.get(), b.get()}) {
    const ASN1_INTEGER* serial = X509_get0_serialNumber(cert);
    EXPECT_EQ(ASN1_STRING_length(serial), 16);
    EXPECT_EQ(ASN1_STRING_type(serial), V_ASN1_INTEGER);  // V_ASN1_NEG_INTEGER if negative
  }
  EXPECT_NE(ASN1_INTEGER_cmp(X509_get0_serialNumber(a.get()), X509_get0_serialNumber(b.get())), 0);
}

TEST_F(CertsTest, IssueWritesKey0600Cert0644AndACopyOfTheCaCertificate) {
  makeCa();
  const std::string out = dir_ + "/deploy/n1";
  issue(out, opts());
  const NodeFiles files{out, "n1"};
  EXPECT_EQ(modeOf(out), 0700u);
  EXPECT_EQ(modeOf(files.key()), 0600u);
  EXPECT_EQ(modeOf(files.cert()), 0644u);
  EXPECT_EQ(modeOf(files.ca()), 0644u);
  EXPECT_EQ(readAll(files.ca()), readAll(CaFiles{ca_dir_}.cert()));
  EXPECT_FALSE(fs::exists(out + "/ca.key"));
  EXPECT_EQ(std::distance(fs::directory_iterator(out), fs::directory_iterator()), 3);
}

TEST_F(CertsTest, FingerprintIsTheSha256OfTheDerAsOpensslPrintsIt) {
  makeCa();
  const std::string out = dir_ + "/n1";
  const std::string fingerprint = issue(out, opts());
  ASSERT_EQ(fingerprint.size(), 64u);
  EXPECT_EQ(fingerprint.find_first_not_of("0123456789abcdef"), std::string::npos) << fingerprint;
  auto from_file = fingerprintOfPemFile(NodeFiles{out, "n1"}.cert());
  ASSERT_TRUE(from_file.isOk()) << from_file.status().toString();
  EXPECT_EQ(*from_file, fingerprint);

  // The openssl tool prints "sha256 Fingerprint=AB:CD:..." (the label's case varies by version).
  const std::string cmd = "openssl x509 -noout -fingerprint -sha256 -in " + NodeFiles{out, "n1"}.cert();
  std::unique_ptr<FILE, int (*)(FILE*)> p(::popen(cmd.c_str(), "r"), &::pclose);
  ASSERT_TRUE(p);
  char line[256] = {0};
  ASSERT_NE(std::fgets(line, sizeof line, p.get()), nullptr) << cmd;
  std::string printed = line;
  printed = printed.substr(printed.find('=') + 1);
  std::string hex;
  for (char c : printed) {
    if (std::isxdigit(static_cast<unsigned char>(c))) hex += static_cast<char>(std::tolower(c));
  }
  EXPECT_EQ(hex, fingerprint) << line;
}

TEST_F(CertsTest, FingerprintOfPemFileNamesAMissingOrNonPemFile) {
  auto missing = fingerprintOfPemFile(dir_ + "/nope.crt");
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound) << missing.status().toString();
  EXPECT_NE(missing.status().message().find(dir_ + "/nope.crt"), std::string::npos);
  std::ofstream(dir_ + "/junk.crt") << "not a certificate\n";
  auto junk = fingerprintOfPemFile(dir_ + "/junk.crt");
  EXPECT_EQ(junk.status().code(), StatusCode::kInvalidArgument) << junk.status().toString();
  EXPECT_NE(junk.status().message().find(dir_ + "/junk.crt"), std::string::npos);
}

TEST_F(CertsTest, IssueRefusesToOverwriteAndChangesNothing) {
  makeCa();
  const std::string out = dir_ + "/n1";
  issue(out, opts());
  const auto before = snapshot(dir_);
  auto again = issueCert(ca_dir_, out, opts());
  EXPECT_EQ(again.status().code(), StatusCode::kAlreadyExists) << again.status().toString();
  EXPECT_NE(again.status().message().find(out + "/n1.key"), std::string::npos) << again.status().toString();
  EXPECT_EQ(snapshot(dir_), before);

  // Only the certificate there (say, left by hand): still refused, no key written beside it.
  const std::string out2 = dir_ + "/n2";
  fs::create_directory(out2);
  std::ofstream(out2 + "/n2.crt") << "mine";
  auto cert_only = issueCert(ca_dir_, out2, opts("n2"));
  EXPECT_EQ(cert_only.status().code(), StatusCode::kAlreadyExists) << cert_only.status().toString();
  EXPECT_NE(cert_only.status().message().find(out2 + "/n2.crt"), std::string::npos);
  EXPECT_FALSE(fs::exists(out2 + "/n2.key"));
  EXPECT_EQ(readAll(out2 + "/n2.crt"), "mine");
}

TEST_F(CertsTest, NodesShareADirectoryOnlyWithTheSameCaCertificate) {
  makeCa();
  const std::string out = dir_ + "/nodes";
  issue(out, opts("n1"));
  issue(out, opts("n2"));  // the same ca.crt is already there: kept, not an error
  EXPECT_TRUE(fs::exists(out + "/n2.key"));

  // A directory holding another CA's certificate is refused before anything is written.
  const std::string mixed = dir_ + "/mixed";
  fs::create_directory(mixed);
  ASSERT_TRUE(initCa(dir_ + "/other-ca").isOk());
  fs::copy_file(dir_ + "/other-ca/ca.crt", mixed + "/ca.crt");
  auto r = issueCert(ca_dir_, mixed, opts("n3"));
  EXPECT_EQ(r.status().code(), StatusCode::kAlreadyExists) << r.status().toString();
  EXPECT_NE(r.status().message().find(mixed + "/ca.crt"), std::string::npos) << r.status().toString();
  EXPECT_FALSE(fs::exists(mixed + "/n3.key"));
}

TEST_F(CertsTest, IssueRefusesTheCaDirectoryHoweverItIsSpelled) {
  makeCa();
  const auto before = snapshot(dir_);
  fs::create_directory_symlink(ca_dir_, dir_ + "/link");
  const auto with_link = snapshot(dir_);
  for (const std::string& out :
       {ca_dir_, ca_dir_ + "/", ca_dir_ + "/.", dir_ + "/./ca/../ca", dir_ + "/link"}) {
    auto r = issueCert(ca_dir_, out, opts());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << out << ": " << r.status().toString();
    EXPECT_NE(r.status().message().find("CA directory"), std::string::npos) << r.status().toString();
  }
  EXPECT_EQ(snapshot(dir_), with_link);
  EXPECT_EQ(before.size() + 1, with_link.size());
}

TEST_F(CertsTest, IssueRefusesADirectoryHoldingACaKey) {
  makeCa();
  const std::string out = dir_ + "/out";
  fs::create_directory(out);
  std::ofstream(out + "/ca.key") << "a key that should not be here";
  auto r = issueCert(ca_dir_, out, opts());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().toString();
  EXPECT_NE(r.status().message().find(out + "/ca.key"), std::string::npos) << r.status().toString();
  EXPECT_FALSE(fs::exists(out + "/n1.key"));
  EXPECT_FALSE(fs::exists(out + "/n1.crt"));
}

TEST_F(CertsTest, IssueRefusesNodeIdCaWhoseFilesWouldBeTheCaFileNames) {
  makeCa();
  auto r = issueCert(ca_dir_, dir_ + "/out", opts("ca"));
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().toString();
  EXPECT_FALSE(fs::exists(dir_ + "/out"));
}

TEST_F(CertsTest, IssueWithoutACaNamesTheMissingFileAndCreatesNothing) {
  auto r = issueCert(dir_ + "/no-ca", dir_ + "/out", opts());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound) << r.status().toString();
  EXPECT_NE(r.status().message().find(dir_ + "/no-ca/ca.crt"), std::string::npos) << r.status().toString();
  EXPECT_FALSE(fs::exists(dir_ + "/out"));
}

TEST(CertIds, AcceptsTheDocumentedAlphabet) {
  for (const std::string& id :
       std::vector<std::string>{"a", "Z", "0", "_x", "node-1", "n_1", "a-", "a_-9", std::string(64, 'x')}) {
    EXPECT_TRUE(checkId("node id", id).isOk()) << id << ": " << checkId("node id", id).toString();
    EXPECT_TRUE(isValidId(id)) << id;
  }
}

// One rule with the config (hacoord::isValidId): a certificate for an id no config can name, or a
// configured node that cannot get a certificate, would only fail at the first handshake.
TEST(CertIds, AgreesWithTheConfigRule) {
  std::vector<std::string> ids = {"",
                                  "a",
                                  "-a",
                                  "_a",
                                  "a.b",
                                  ".a",
                                  "a.",
                                  "a/b",
                                  "a b",
                                  "n\n",
                                  std::string(64, 'x'),
                                  std::string(65, 'x'),
                                  std::string("a\0b", 3)};
  for (int c = 0; c < 256; ++c) {
    ids.push_back(std::string(1, static_cast<char>(c)));
    ids.push_back("a" + std::string(1, static_cast<char>(c)));
  }
  for (const std::string& id : ids) {
    EXPECT_EQ(checkId("node id", id).isOk(), isValidId(id)) << "'" << id << "'";
  }
}

TEST_F(CertsTest, RejectsBadIdsNamingTheRuleAndWritesNothing) {
  makeCa();
  struct Bad {
    std::string id;
    std::string reason;  // a piece of the message
  };
  const std::vector<Bad> bad = {
      {"", "is empty"},
      {std::string(65, 'a'), "is 65 characters long; at most 64"},
      {"a/b", "has '/' at position 2"},
      {"a b", "has ' ' at position 2"},
      {"a:b", "has ':' at position 2"},
      {"-a", "starts with '-'"},
      {".a", "has '.' at position 1"},
      {"n_1.example", "has '.' at position 4; only A-Z a-z 0-9 _ - are allowed"},
      {"a.", "has '.' at position 2"},
      {"n\n", "has '\\x0a' at position 2"},
      {"caf\xc3\xa9", "has '\\xc3' at position 4"},
  };
  for (const Bad& b : bad) {
    for (const bool as_node : {true, false}) {
      const char* what = as_node ? "node id" : "cluster id";
      const Status direct = checkId(what, b.id);
      EXPECT_EQ(direct.code(), StatusCode::kInvalidArgument) << what << " '" << b.id << "'";
      EXPECT_EQ(direct.message().rfind(what, 0), 0u) << direct.message();
      EXPECT_NE(direct.message().find(b.reason), std::string::npos) << direct.message();

      IssueOptions o = opts();
      (as_node ? o.node : o.cluster) = b.id;
      auto r = issueCert(ca_dir_, dir_ + "/out", o);
      EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << what << " '" << b.id << "'";
      EXPECT_EQ(r.status().message(), direct.message());
      EXPECT_FALSE(fs::exists(dir_ + "/out")) << b.id;
    }
  }
}

// ---- the test-only options, which the TLS tests rely on ----

TEST_F(CertsTest, APastValidityWindowMakesAnExpiredCertificate) {
  makeCa();
  IssueOptions o = opts();
  o.not_before_offset = -std::chrono::duration_cast<std::chrono::seconds>(48h);
  o.validity = 24h;
  issue(dir_ + "/out", o);
  X509Ptr ca = loadCert(CaFiles{ca_dir_}.cert());
  X509Ptr leaf = loadCert(dir_ + "/out/n1.crt");
  ASSERT_TRUE(ca && leaf);
  EXPECT_LT(X509_cmp_current_time(X509_get0_notAfter(leaf.get())), 0);
  EXPECT_EQ(verifyAgainst(ca.get(), leaf.get()), X509_V_ERR_CERT_HAS_EXPIRED);
}

TEST_F(CertsTest, AFutureStartMakesANotYetValidCertificate) {
  makeCa();
  IssueOptions o = opts();
  o.not_before_offset = std::chrono::duration_cast<std::chrono::seconds>(2h);
  issue(dir_ + "/out", o);
  X509Ptr ca = loadCert(CaFiles{ca_dir_}.cert());
  X509Ptr leaf = loadCert(dir_ + "/out/n1.crt");
  ASSERT_TRUE(ca && leaf);
  EXPECT_EQ(verifyAgainst(ca.get(), leaf.get()), X509_V_ERR_CERT_NOT_YET_VALID);
}

TEST_F(CertsTest, ExtraUriSansFollowTheNodeUri) {
  makeCa();
  IssueOptions o = opts();
  o.extra_uri_sans = {"hacoord://prod_1/n2"};
  issue(dir_ + "/out", o);
  X509Ptr leaf = loadCert(dir_ + "/out/n1.crt");
  ASSERT_TRUE(leaf);
  EXPECT_EQ(uriSans(leaf.get()), (std::vector<std::string>{"hacoord://prod_1/n1", "hacoord://prod_1/n2"}));
}

TEST_F(CertsTest, OmitUriSanLeavesNoSubjectAltNameButAnOtherwiseValidLeaf) {
  makeCa();
  IssueOptions o = opts();
  o.omit_uri_san = true;
  issue(dir_ + "/out", o);
  X509Ptr ca = loadCert(CaFiles{ca_dir_}.cert());
  X509Ptr leaf = loadCert(dir_ + "/out/n1.crt");
  ASSERT_TRUE(ca && leaf);
  EXPECT_EQ(X509_get_ext_by_NID(leaf.get(), NID_subject_alt_name, -1), -1);
  EXPECT_EQ(verifyAgainst(ca.get(), leaf.get()), X509_V_OK);

  // With omit_uri_san, extra URIs are the only ones: a leaf naming someone else.
  IssueOptions wrong = opts("n2");
  wrong.omit_uri_san = true;
  wrong.extra_uri_sans = {"hacoord://prod_1/n9"};
  issue(dir_ + "/out", wrong);
  X509Ptr n2 = loadCert(dir_ + "/out/n2.crt");
  ASSERT_TRUE(n2);
  EXPECT_EQ(uriSans(n2.get()), std::vector<std::string>{"hacoord://prod_1/n9"});
}

TEST_F(CertsTest, ExtraDnsSansComeAfterTheUriSan) {
  makeCa();
  IssueOptions o = opts();
  o.extra_dns_sans = {"n1.example.com"};
  issue(dir_ + "/out", o);
  X509Ptr leaf = loadCert(dir_ + "/out/n1.crt");
  ASSERT_TRUE(leaf);
  int others = -1;
  EXPECT_EQ(uriSans(leaf.get(), &others), std::vector<std::string>{"hacoord://prod_1/n1"});
  EXPECT_EQ(others, 1);
  EXPECT_EQ(sans(leaf.get(), GEN_DNS), std::vector<std::string>{"n1.example.com"});
}

}  // namespace
}  // namespace hacoord::mesh
