// Strict JSON reading shared by the config loader and the status decoder: typed, located errors.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "hacoord/status.h"

namespace Json {
class Value;
}  // namespace Json

// jsoncpp parses, and this layer adds what it lets through or words badly: leading zeros, block
// comments, depth and size limits before jsoncpp sees the text; exact integers (1.0 and 1e3 are
// not integers); exact types; unknown keys with a suggestion; every problem named by its JSON
// path as an operator would type it in jq (a.b[2].c, a["odd key"]).
//
// Reading never throws. The first problem is kept in a Problems and every read after it is a
// no-op, so a decoder reads straight through and reports the first offending key:
//
//   json::Problems problems;
//   auto doc = json::Document::parse(text, rules);          // syntax: Status "line L, column C: ..."
//   if (auto top = doc->root(problems).object({"name", "port"})) {
//     top->require("name", name);                           // "name: required"
//     top->read("port", port, 1, 65535);                    // "port: must be between 1 and 65535, got 0"
//   }
//   if (!problems.ok()) return problems.toStatus("node.json");
namespace hacoord::json {

// What a document may contain beyond strict JSON, and how big it may be.
struct Rules {
  bool line_comments = false;   // `//` to the end of the line; block comments are always refused
  bool nul_in_strings = false;  // else a "\u0000" in a string is a problem (it would cut C strings)
  std::size_t max_bytes = 1 << 20;
  int max_depth = 32;  // nested arrays/objects; jsoncpp recurses per level
  // A hint for an unknown key (by its JSON path) that replaces the edit-distance suggestion, e.g.
  // where a key of another product lives here. "" = no hint.
  std::function<std::string(std::string_view path)> unknown_key_hint;
};

struct Problem {
  std::string path;  // "" = the document root
  std::string reason;
};

// Keeps the first problem reported; later ones are dropped.
class Problems {
 public:
  void report(std::string path, std::string reason);
  bool ok() const { return !first_.has_value(); }
  const std::optional<Problem>& first() const { return first_; }
  // InvalidArgument "<source>: <path>: <reason>" ("(root)" for the root), or OK.
  Status toStatus(std::string_view source) const;

 private:
  std::optional<Problem> first_;
};

// "" when a value is acceptable, else the reason ("must be between 1 and 5"); the reader appends
// ", got <the number as written>".
using IntegerRule = std::function<std::string(long long value)>;
// lo <= value <= hi, worded "must be at least lo" / "at most hi" when the other bound is the
// limit of long long.
IntegerRule between(long long lo, long long hi);

inline constexpr struct IgnoreUnknownKeys {
} kIgnoreUnknownKeys;

class Object;

// One value of a document and its JSON path, or an absent member (present() false), whose
// accessors all return nullopt without a problem. Refers into its Document and Problems.
class Value {
 public:
  bool present() const { return json_ != nullptr; }
  const std::string& path() const { return path_; }
  // Reports `reason` at this value's path.
  void fail(std::string reason) const;

  // Each returns nullopt, after reporting "expected a string, got number" and the like, when the
  // value has another type; nullopt silently when absent or after an earlier problem.
  std::optional<std::string> string() const;
  std::optional<bool> boolean() const;
  // An integer as written: no fraction, no exponent (1.0, 1e3 are refused). `rule` judges it.
  // A number beyond long long reaches the rule saturated to its limits (so "at most 100" still
  // names the number as written), and is refused even if the rule accepts the saturated value.
  std::optional<long long> integer(const IntegerRule& rule) const;
  // 0 .. 2^64-1.
  std::optional<std::uint64_t> unsignedInteger() const;
  // Any JSON number (integer or with a fraction/exponent), as a double.
  std::optional<double> number() const;
  // An object whose keys must all be in `known`: "unknown key (did you mean leaseTtlMs?)".
  std::optional<Object> object(std::initializer_list<std::string_view> known) const;
  // An object whose other keys are ignored (a newer peer may add fields).
  std::optional<Object> object(IgnoreUnknownKeys) const;
  // An array; `of` names the element type in the message ("expected an array of strings").
  std::optional<std::vector<Value>> array(std::string_view of) const;

 private:
  friend class Document;
  friend class Object;
  Value(const Json::Value* json, std::string path, Problems* problems, const Rules* rules)
      : json_(json), path_(std::move(path)), problems_(problems), rules_(rules) {}
  bool usable() const { return json_ != nullptr && problems_->ok(); }
  void expected(std::string_view what) const;

  const Json::Value* json_;
  std::string path_;
  Problems* problems_;
  const Rules* rules_;
};

// The members of one JSON object, read by key.
class Object {
 public:
  const std::string& path() const { return path_; }
  // The JSON path of member `key`.
  std::string path(std::string_view key) const;
  bool has(std::string_view key) const;
  // The member, or an absent Value.
  Value get(std::string_view key) const;
  // The member; when absent, reports "required" and returns an absent Value.
  Value require(std::string_view key) const;
  void fail(std::string_view key, std::string reason) const;

  // Typed reads into `out`, which keeps its value unless the member is present and valid (then
  // they return true). Absent members are not a problem; use require() for mandatory ones.
  bool read(std::string_view key, std::string& out) const;
  bool read(std::string_view key, bool& out) const;
  bool read(std::string_view key, std::uint64_t& out) const;
  bool read(std::string_view key, double& out) const;
  template <typename T>
  requires std::signed_integral<T>
  bool read(std::string_view key, T& out, std::type_identity_t<T> lo = std::numeric_limits<T>::min(),
            std::type_identity_t<T> hi = std::numeric_limits<T>::max()) const {
    const auto v = get(key).integer(between(lo, hi));
    if (v) out = static_cast<T>(*v);
    return v.has_value();
  }
  // read(), and "required" when the member is absent.
  template <typename T, typename... Bounds>
  bool require(std::string_view key, T& out, Bounds... bounds) const {
    if (!require(key).present()) return false;
    return read(key, out, bounds...);
  }

 private:
  friend class Value;
  Object(const Json::Value* json, std::string path, Problems* problems, const Rules* rules)
      : json_(json), path_(std::move(path)), problems_(problems), rules_(rules) {}

  const Json::Value* json_;
  std::string path_;
  Problems* problems_;
  const Rules* rules_;
};

// A parsed document. Values read from it refer into it: keep it alive while reading.
class Document {
 public:
  // InvalidArgument "line L, column C: <reason>" (jsoncpp's wording for syntax errors), or
  // "larger than N bytes". Duplicate keys and a root that is neither object nor array are syntax
  // errors; a UTF-8 byte-order mark is skipped.
  static Result<Document> parse(std::string_view text, Rules rules = {});
  Document(Document&&) noexcept;
  Document& operator=(Document&&) noexcept;
  ~Document();

  // The root; reads report into `problems`, which must outlive the values.
  Value root(Problems& problems) const;

 private:
  struct Parsed;
  explicit Document(std::unique_ptr<Parsed> parsed);
  std::unique_ptr<Parsed> parsed_;
};

// Messages echo user text through these. printable: control characters as \u00XX, so one bad
// value cannot break the one-line contract (or a terminal). quote: printable, in double quotes
// with " and \ escaped, cut at 80 characters ("...").
std::string printable(std::string_view s);
std::string quote(std::string_view s);
// JSON paths: memberPath("vip", "netmask") = "vip.netmask", memberPath("vip", "a b") =
// vip["a b"]; indexPath("nats.servers", 1) = "nats.servers[1]".
std::string memberPath(std::string_view parent, std::string_view key);
std::string indexPath(std::string_view parent, std::size_t index);

// jsoncpp's lenient parse of a record from the network, a bucket or a file (where the strict
// Document would refuse what older writers wrote): true when `bytes` is a JSON object, parsed into
// `out`. Never throws: jsoncpp throws, rather than fails, on nesting deeper than its stackLimit,
// and garbage must not abort the process that reads it (fuzzing found it in the status decoder).
bool parseObject(std::string_view bytes, Json::Value& out);

}  // namespace hacoord::json
