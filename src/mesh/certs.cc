// Cluster CA and node certificates: P-256 keys, X.509 v3 profiles, files written once (O_EXCL).
#include "mesh/certs.h"

#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <sstream>

#include "hacoord/config.h"

namespace hacoord::mesh {
namespace {

constexpr std::size_t kMaxIdLength = 64;
constexpr int kSerialBytes = 16;

template <auto Free>
struct Deleter {
  template <typename T>
  void operator()(T* p) const {
    Free(p);
  }
};
using X509Ptr = std::unique_ptr<X509, Deleter<X509_free>>;
using KeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY_free>>;
using BioPtr = std::unique_ptr<BIO, Deleter<BIO_free_all>>;
using BnPtr = std::unique_ptr<BIGNUM, Deleter<BN_free>>;
using ExtPtr = std::unique_ptr<X509_EXTENSION, Deleter<X509_EXTENSION_free>>;
using NamesPtr = std::unique_ptr<GENERAL_NAMES, Deleter<GENERAL_NAMES_free>>;

// ---- errors: every OpenSSL failure and every errno becomes a Status here, and only here ----

// `what` failed inside OpenSSL: the message carries OpenSSL's queued reasons (and clears them).
Status sslError(const std::string& what, StatusCode code = StatusCode::kInternal) {
  std::string reasons;
  while (const unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    reasons += (reasons.empty() ? "" : "; ") + std::string(buf);
  }
  if (reasons.empty()) reasons = "no OpenSSL error reported";
  return Status(code, what + ": " + reasons);
}

// `what` failed with `err` (an errno): the code says what the caller can do about it.
Status fileError(const std::string& what, int err) {
  StatusCode code = StatusCode::kInternal;
  switch (err) {
    case ENOENT:
      code = StatusCode::kNotFound;
      break;
    case EEXIST:
      code = StatusCode::kAlreadyExists;
      break;
    case EACCES:
    case EPERM:
    case EROFS:
      code = StatusCode::kPermissionDenied;
      break;
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
      code = StatusCode::kResourceExhausted;
      break;
    case ENOTDIR:
    case EISDIR:
    case ENAMETOOLONG:
    case ELOOP:
      code = StatusCode::kInvalidArgument;
      break;
    default:
      break;
  }
  return Status(code, what + ": " + std::strerror(err));
}

Status alreadyExists(const std::string& path) {
  return Status(StatusCode::kAlreadyExists,
                path + " already exists; hacoord never overwrites a key or certificate");
}

// ---- files ----

// What one call created, removed again unless the call succeeds (commit()).
class CreatedFiles {
 public:
  CreatedFiles() = default;
  CreatedFiles(const CreatedFiles&) = delete;
  CreatedFiles& operator=(const CreatedFiles&) = delete;
  ~CreatedFiles() {
    if (committed_) return;
    for (auto it = files_.rbegin(); it != files_.rend(); ++it) ::unlink(it->c_str());
    for (auto it = dirs_.rbegin(); it != dirs_.rend(); ++it) ::rmdir(it->c_str());
  }
  void addFile(std::string path) { files_.push_back(std::move(path)); }
  void addDir(std::string path) { dirs_.push_back(std::move(path)); }
  void commit() { committed_ = true; }

 private:
  std::vector<std::string> files_;
  std::vector<std::string> dirs_;
  bool committed_ = false;
};

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

// mkdir -p; the directories it creates are 0700 and recorded in `created`.
Status makeDirs(const std::string& dir, CreatedFiles& created) {
  if (dir.empty()) return invalidArgument("the directory name is empty");
  std::string path;
  std::stringstream parts(dir);
  std::string part;
  if (dir.front() == '/') path = "/";
  while (std::getline(parts, part, '/')) {
    if (part.empty()) continue;
    path += part;
    if (::mkdir(path.c_str(), 0700) == 0) {
      created.addDir(path);
    } else if (errno != EEXIST) {
      return fileError("cannot create directory " + path, errno);
    }
    path += "/";
  }
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) return fileError("cannot use directory " + dir, errno);
  if (!S_ISDIR(st.st_mode)) return invalidArgument(dir + " is not a directory");
  return Status::ok();
}

// Creates `path` (never replacing anything) with exactly `mode`, writes `data` and fsyncs it.
Status writeNewFile(const std::string& path, const std::string& data, mode_t mode, CreatedFiles& created) {
  const int fd = ::open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, mode);
  if (fd < 0) {
    if (errno == EEXIST) return alreadyExists(path);
    return fileError("cannot create " + path, errno);
  }
  created.addFile(path);
  Status s;
  // The umask may have taken bits away; a certificate must stay readable by the daemon's group.
  if (::fchmod(fd, mode) != 0) s = fileError("cannot set the mode of " + path, errno);
  std::size_t done = 0;
  while (s.isOk() && done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      s = fileError("cannot write " + path, errno);
    } else {
      done += static_cast<std::size_t>(n);
    }
  }
  if (s.isOk() && ::fsync(fd) != 0) s = fileError("cannot fsync " + path, errno);
  if (::close(fd) != 0 && s.isOk()) s = fileError("cannot close " + path, errno);
  return s;
}

Status syncDir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return fileError("cannot open " + dir + " to fsync it", errno);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return fileError("cannot fsync " + dir, err);
  return Status::ok();
}

Result<std::string> readFile(const std::string& path) {
  std::unique_ptr<FILE, Deleter<std::fclose>> f(std::fopen(path.c_str(), "rb"));
  if (!f) return fileError("cannot read " + path, errno);
  std::string data;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f.get())) > 0) data.append(buf, n);
  if (std::ferror(f.get())) return fileError("cannot read " + path, EIO);
  return data;
}

// ---- OpenSSL objects ----

Result<KeyPtr> newKey() {
  KeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  if (!key) return sslError("cannot generate a P-256 key");
  return key;
}

Result<std::string> bioText(BIO* bio) {
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio, &data);
  if (len <= 0 || data == nullptr) return sslError("cannot encode PEM");
  return std::string(data, static_cast<std::size_t>(len));
}

Result<std::string> keyPem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return sslError("cannot encode the private key");
  }
  return bioText(bio.get());
}

Result<std::string> certPem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) return sslError("cannot encode the certificate");
  return bioText(bio.get());
}

Result<X509Ptr> readCertFile(const std::string& path) {
  auto pem = readFile(path);
  if (!pem.isOk()) return pem.status();
  BioPtr bio(BIO_new_mem_buf(pem->data(), static_cast<int>(pem->size())));
  X509Ptr cert(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!cert) return sslError(path + " holds no PEM certificate", StatusCode::kInvalidArgument);
  return cert;
}

Result<KeyPtr> readKeyFile(const std::string& path) {
  auto pem = readFile(path);
  if (!pem.isOk()) return pem.status();
  BioPtr bio(BIO_new_mem_buf(pem->data(), static_cast<int>(pem->size())));
  KeyPtr key(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!key) return sslError(path + " holds no PEM private key", StatusCode::kInvalidArgument);
  return key;
}

// 16 random bytes, top bit clear (the serial is positive) and first byte non-zero (its DER
// encoding keeps all 16 bytes).
Status setRandomSerial(X509* cert) {
  unsigned char bytes[kSerialBytes];
  if (RAND_bytes(bytes, sizeof bytes) != 1) return sslError("cannot draw a random serial number");
  bytes[0] &= 0x7f;
  if (bytes[0] == 0) bytes[0] = 0x01;
  BnPtr bn(BN_bin2bn(bytes, sizeof bytes, nullptr));
  if (!bn || BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert)) == nullptr) {
    return sslError("cannot set the serial number");
  }
  return Status::ok();
}

Status addExt(X509* cert, X509V3_CTX& ctx, int nid, const char* value) {
  ExtPtr ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1) {
    return sslError(std::string("cannot add the extension ") + OBJ_nid2sn(nid) + " = " + value);
  }
  return Status::ok();
}

// One subjectAltName holding `uris` then `dns_names`, built from GENERAL_NAMEs (no config-string
// parsing, so a test's odd name stays one name).
Status addSans(X509* cert, const std::vector<std::string>& uris, const std::vector<std::string>& dns_names) {
  NamesPtr names(sk_GENERAL_NAME_new_null());
  if (!names) return sslError("cannot allocate the subjectAltName");
  auto add = [&](int type, const std::string& value) {
    GENERAL_NAME* name = GENERAL_NAME_new();
    ASN1_IA5STRING* text = ASN1_IA5STRING_new();
    if (name == nullptr || text == nullptr ||
        ASN1_STRING_set(text, value.data(), static_cast<int>(value.size())) != 1) {
      GENERAL_NAME_free(name);
      ASN1_IA5STRING_free(text);
      return sslError("cannot encode the subjectAltName " + value);
    }
    GENERAL_NAME_set0_value(name, type, text);
    if (sk_GENERAL_NAME_push(names.get(), name) <= 0) {
      GENERAL_NAME_free(name);
      return sslError("cannot add the subjectAltName " + value);
    }
    return Status::ok();
  };
  for (const std::string& uri : uris) {
    if (Status s = add(GEN_URI, uri); !s.isOk()) return s;
  }
  for (const std::string& dns : dns_names) {
    if (Status s = add(GEN_DNS, dns); !s.isOk()) return s;
  }
  if (X509_add1_ext_i2d(cert, NID_subject_alt_name, names.get(), 0, X509V3_ADD_APPEND) != 1) {
    return sslError("cannot add the subjectAltName");
  }
  return Status::ok();
}

struct CertSpec {
  EVP_PKEY* key = nullptr;            // the subject's key
  std::string common_name;            // subject CN
  std::string organization;           // subject O, if not empty
  X509* issuer = nullptr;             // nullptr: self-signed
  EVP_PKEY* issuer_key = nullptr;     // signs; the subject's key when self-signed
  std::chrono::seconds not_before{};  // relative to now
  std::chrono::seconds validity{};    // notAfter = notBefore + validity
  bool ca = false;
  std::vector<std::string> uri_sans;  // leaves only; with dns_sans empty: no subjectAltName
  std::vector<std::string> dns_sans;
};

Result<X509Ptr> buildCert(const CertSpec& spec) {
  X509Ptr cert(X509_new());
  if (!cert || X509_set_version(cert.get(), X509_VERSION_3) != 1)
    return sslError("cannot create a certificate");
  if (Status s = setRandomSerial(cert.get()); !s.isOk()) return s;
  const long not_before = static_cast<long>(spec.not_before.count());
  const long not_after = static_cast<long>((spec.not_before + spec.validity).count());
  if (X509_gmtime_adj(X509_getm_notBefore(cert.get()), not_before) == nullptr ||
      X509_gmtime_adj(X509_getm_notAfter(cert.get()), not_after) == nullptr) {
    return sslError("cannot set the validity period");
  }
  X509_NAME* subject = X509_get_subject_name(cert.get());
  const auto* cn = reinterpret_cast<const unsigned char*>(spec.common_name.c_str());
  if (X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8, cn, -1, -1, 0) != 1) {
    return sslError("cannot set the subject name");
  }
  if (!spec.organization.empty()) {
    const auto* o = reinterpret_cast<const unsigned char*>(spec.organization.c_str());
    if (X509_NAME_add_entry_by_txt(subject, "O", MBSTRING_UTF8, o, -1, -1, 0) != 1) {
      return sslError("cannot set the subject name");
    }
  }
  X509* issuer = spec.issuer != nullptr ? spec.issuer : cert.get();
  if (X509_set_issuer_name(cert.get(), X509_get_subject_name(issuer)) != 1 ||
      X509_set_pubkey(cert.get(), spec.key) != 1) {
    return sslError("cannot set the issuer or public key");
  }

  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert.get(), nullptr, nullptr, 0);
  // The subject key id first: a self-signed certificate's authority key id is computed from it.
  if (Status s = addExt(cert.get(), ctx, NID_subject_key_identifier, "hash"); !s.isOk()) return s;
  if (Status s = addExt(cert.get(), ctx, NID_authority_key_identifier, "keyid:always"); !s.isOk()) return s;
  if (spec.ca) {
    if (Status s = addExt(cert.get(), ctx, NID_basic_constraints, "critical,CA:TRUE,pathlen:0"); !s.isOk())
      return s;
    if (Status s = addExt(cert.get(), ctx, NID_key_usage, "critical,keyCertSign,cRLSign"); !s.isOk())
      return s;
  } else {
    if (Status s = addExt(cert.get(), ctx, NID_basic_constraints, "critical,CA:FALSE"); !s.isOk()) return s;
    if (Status s = addExt(cert.get(), ctx, NID_key_usage, "critical,digitalSignature"); !s.isOk()) return s;
    if (Status s = addExt(cert.get(), ctx, NID_ext_key_usage, "serverAuth,clientAuth"); !s.isOk()) return s;
    if (!spec.uri_sans.empty() || !spec.dns_sans.empty()) {
      if (Status s = addSans(cert.get(), spec.uri_sans, spec.dns_sans); !s.isOk()) return s;
    }
  }
  if (X509_sign(cert.get(), spec.issuer_key, EVP_sha256()) <= 0)
    return sslError("cannot sign the certificate");
  return cert;
}

Status checkValidity(std::chrono::hours validity) {
  // X509_gmtime_adj takes a long of seconds; 1000 years is far beyond any sensible certificate.
  constexpr std::chrono::hours kMax(24 * 366 * 1000);
  if (validity.count() <= 0 || validity > kMax) {
    return invalidArgument("validity must be between 1 hour and 1000 years, got " +
                           std::to_string(validity.count()) + " hours");
  }
  return Status::ok();
}

// True when `a` and `b` name the same existing directory (by realpath, and by device and inode,
// which also sees through bind mounts).
bool sameDir(const std::string& a, const std::string& b) {
  char ra[PATH_MAX];
  char rb[PATH_MAX];
  if (::realpath(a.c_str(), ra) != nullptr && ::realpath(b.c_str(), rb) != nullptr &&
      std::strcmp(ra, rb) == 0) {
    return true;
  }
  struct stat sa {};
  struct stat sb {};
  return ::stat(a.c_str(), &sa) == 0 && ::stat(b.c_str(), &sb) == 0 && sa.st_dev == sb.st_dev &&
         sa.st_ino == sb.st_ino;
}

std::string shown(std::string_view id) {
  std::string out;
  for (unsigned char c : id) {
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  return out;
}

}  // namespace

Status checkId(std::string_view what, std::string_view id) {
  // hacoord::isValidId decides, so that every id a certificate can be issued for can also be
  // configured (clusterId, nodeId); the checks below only say which part of the rule is broken.
  if (isValidId(id)) return Status::ok();
  const std::string name(what);
  if (id.empty()) return invalidArgument(name + " is empty; it must be 1-64 characters of [A-Za-z0-9_-]");
  if (id.size() > kMaxIdLength) {
    return invalidArgument(name + " is " + std::to_string(id.size()) +
                           " characters long; at most 64 are allowed");
  }
  // A character is in the alphabet when an id of it after a letter is valid.
  const auto in_alphabet = [](char c) { return isValidId(std::string{'a', c}); };
  for (std::size_t i = 0; i < id.size(); ++i) {
    if (!in_alphabet(id[i])) {
      return invalidArgument(name + " '" + shown(id) + "' has '" + shown(id.substr(i, 1)) + "' at position " +
                             std::to_string(i + 1) + "; only A-Z a-z 0-9 _ - are allowed");
    }
  }
  if (id.front() == '-') {
    return invalidArgument(name + " '" + shown(id) +
                           "' starts with '-'; it must start with a letter, digit or _");
  }
  return invalidArgument(name + " '" + shown(id) + "' is not a valid id");
}

std::string nodeUri(std::string_view cluster, std::string_view node) {
  return "hacoord://" + std::string(cluster) + "/" + std::string(node);
}

Status initCa(const std::string& dir, std::chrono::hours validity) {
  if (Status s = checkValidity(validity); !s.isOk()) return s;
  const CaFiles files{dir};
  // Checked before anything is made, so a refusal changes nothing; O_EXCL below closes the race.
  for (const std::string& path : {files.key(), files.cert()}) {
    if (exists(path)) return alreadyExists(path);
  }
  CreatedFiles created;
  if (Status s = makeDirs(dir, created); !s.isOk()) return s;
  auto key = newKey();
  if (!key.isOk()) return key.status();

  // A random tag in the name keeps two clusters' CAs apart in a trust store and in logs.
  unsigned char tag[4];
  if (RAND_bytes(tag, sizeof tag) != 1) return sslError("cannot draw random bytes");
  char tag_hex[16];
  std::snprintf(tag_hex, sizeof tag_hex, "%02x%02x%02x%02x", tag[0], tag[1], tag[2], tag[3]);
  CertSpec spec;
  spec.key = key->get();
  spec.issuer_key = key->get();
  spec.common_name = std::string("hacoord cluster CA ") + tag_hex;
  spec.not_before = std::chrono::seconds(-60);  // tolerate a little clock skew between nodes
  spec.validity = validity;
  spec.ca = true;
  auto cert = buildCert(spec);
  if (!cert.isOk()) return cert.status();

  auto key_text = keyPem(key->get());
  if (!key_text.isOk()) return key_text.status();
  auto cert_text = certPem(cert->get());
  if (!cert_text.isOk()) return cert_text.status();
  if (Status s = writeNewFile(files.key(), *key_text, 0600, created); !s.isOk()) return s;
  if (Status s = writeNewFile(files.cert(), *cert_text, 0644, created); !s.isOk()) return s;
  if (Status s = syncDir(dir); !s.isOk()) return s;
  created.commit();
  return Status::ok();
}

Result<std::string> issueCert(const std::string& ca_dir, const std::string& out_dir,
                              const IssueOptions& options) {
  if (Status s = checkId("cluster id", options.cluster); !s.isOk()) return s;
  if (Status s = checkId("node id", options.node); !s.isOk()) return s;
  if (options.node == "ca") {
    return invalidArgument("node id 'ca' would be written as ca.crt / ca.key, the names of the CA's files");
  }
  if (Status s = checkValidity(options.validity); !s.isOk()) return s;
  if (out_dir.empty()) return invalidArgument("the output directory name is empty");

  const CaFiles ca{ca_dir};
  auto ca_cert = readCertFile(ca.cert());
  if (!ca_cert.isOk()) return ca_cert.status();
  auto ca_key = readKeyFile(ca.key());
  if (!ca_key.isOk()) return ca_key.status();
  if (X509_check_private_key(ca_cert->get(), ca_key->get()) != 1) {
    return sslError(ca.key() + " is not the key of " + ca.cert(), StatusCode::kInvalidArgument);
  }

  // The CA key must never sit next to a node's key, where it would be deployed with it.
  if (sameDir(out_dir, ca_dir)) {
    return invalidArgument("output directory " + out_dir + " is the CA directory " + ca_dir +
                           "; node keys must not sit next to the CA key");
  }
  const NodeFiles files{out_dir, options.node};
  if (exists(out_dir + "/ca.key")) {
    return invalidArgument("output directory " + out_dir + " holds a CA key (" + out_dir +
                           "/ca.key); node keys must not sit next to it");
  }
  for (const std::string& path : {files.key(), files.cert()}) {
    if (exists(path)) return alreadyExists(path);
  }
  auto ca_text = certPem(ca_cert->get());
  if (!ca_text.isOk()) return ca_text.status();
  // Several nodes may be issued into one directory: the same CA certificate is left as it is.
  bool write_ca = true;
  if (exists(files.ca())) {
    auto existing = readFile(files.ca());
    if (!existing.isOk() || *existing != *ca_text)
      return alreadyExists(files.ca() + " (a different CA certificate)");
    write_ca = false;
  }

  CreatedFiles created;
  if (Status s = makeDirs(out_dir, created); !s.isOk()) return s;
  auto key = newKey();
  if (!key.isOk()) return key.status();
  CertSpec spec;
  spec.key = key->get();
  spec.common_name = options.node;
  spec.organization = options.cluster;
  spec.issuer = ca_cert->get();
  spec.issuer_key = ca_key->get();
  spec.not_before = options.not_before_offset;
  spec.validity = options.validity;
  if (!options.omit_uri_san) spec.uri_sans.push_back(nodeUri(options.cluster, options.node));
  spec.uri_sans.insert(spec.uri_sans.end(), options.extra_uri_sans.begin(), options.extra_uri_sans.end());
  spec.dns_sans = options.extra_dns_sans;
  auto cert = buildCert(spec);
  if (!cert.isOk()) return cert.status();
  auto fingerprint = fingerprintOf(cert->get());
  if (!fingerprint.isOk()) return fingerprint.status();

  auto key_text = keyPem(key->get());
  if (!key_text.isOk()) return key_text.status();
  auto cert_text = certPem(cert->get());
  if (!cert_text.isOk()) return cert_text.status();
  if (Status s = writeNewFile(files.key(), *key_text, 0600, created); !s.isOk()) return s;
  if (Status s = writeNewFile(files.cert(), *cert_text, 0644, created); !s.isOk()) return s;
  if (write_ca) {
    if (Status s = writeNewFile(files.ca(), *ca_text, 0644, created); !s.isOk()) return s;
  }
  if (Status s = syncDir(out_dir); !s.isOk()) return s;
  created.commit();
  return fingerprint;
}

Result<std::string> fingerprintOf(x509_st* cert) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (X509_digest(cert, EVP_sha256(), md, &len) != 1) return sslError("cannot hash the certificate");
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < len; ++i) {
    hex += kHex[md[i] >> 4];
    hex += kHex[md[i] & 0xf];
  }
  return hex;
}

Result<std::string> identityOf(x509_st* cert, const std::string& cluster, const std::string& expected) {
  auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  std::vector<std::string> uris;
  if (names != nullptr) {
    for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
      const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
      if (name->type == GEN_URI) {
        const ASN1_STRING* s = name->d.uniformResourceIdentifier;
        uris.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                          static_cast<std::size_t>(ASN1_STRING_length(s)));
      }
    }
    GENERAL_NAMES_free(names);
  }
  if (uris.size() != 1) {
    return invalidArgument("the certificate has " + std::to_string(uris.size()) +
                           " URI SANs; it needs exactly one, hacoord://<cluster>/<node>");
  }
  const std::string& uri = uris.front();
  constexpr std::string_view kScheme = "hacoord://";
  if (uri.rfind(kScheme, 0) != 0) {
    return invalidArgument("the certificate's URI SAN '" + uri + "' is not hacoord://<cluster>/<node>");
  }
  const std::string rest = uri.substr(kScheme.size());
  const auto slash = rest.find('/');
  if (slash == std::string::npos) {
    return invalidArgument("the certificate's URI SAN '" + uri + "' has no node");
  }
  const std::string peer_cluster = rest.substr(0, slash);
  const std::string node = rest.substr(slash + 1);
  if (peer_cluster != cluster) {
    return invalidArgument("the certificate's URI SAN '" + uri + "' names cluster '" + peer_cluster +
                           "', not '" + cluster + "'");
  }
  if (Status s = checkId("node id", node); !s.isOk()) {
    return invalidArgument("the certificate's URI SAN '" + uri + "': " + s.message());
  }
  if (!expected.empty() && node != expected) {
    return invalidArgument("dialed node '" + expected + "' but the certificate names '" + node + "'");
  }
  return node;
}

Result<std::string> identityOfPemFile(const std::string& path, const std::string& cluster) {
  auto cert = readCertFile(path);
  if (!cert.isOk()) return cert.status();
  return identityOf(cert->get(), cluster, "");
}

Result<std::string> fingerprintOfPemFile(const std::string& path) {
  auto cert = readCertFile(path);
  if (!cert.isOk()) return cert.status();
  return fingerprintOf(cert->get());
}

}  // namespace hacoord::mesh
