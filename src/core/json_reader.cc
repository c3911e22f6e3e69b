// Strict JSON reading: lexical checks before jsoncpp, then typed access that reports by JSON path.
#include "core/json_reader.h"

#include <algorithm>
#include <cstdio>
#include <exception>

#include <json/json.h>

namespace hacoord::json {

struct Document::Parsed {
  Rules rules;
  Json::Value root;
};

namespace {

bool isPlainKey(std::string_view key) {
  if (key.empty()) return false;
  return std::all_of(key.begin(), key.end(), [](unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  });
}

std::string_view typeName(const Json::Value& v) {
  switch (v.type()) {
    case Json::nullValue:
      return "null";
    case Json::intValue:
    case Json::uintValue:
    case Json::realValue:
      return "number";
    case Json::stringValue:
      return "string";
    case Json::booleanValue:
      return "boolean";
    case Json::arrayValue:
      return "array";
    case Json::objectValue:
      return "object";
  }
  return "unknown";
}

std::size_t editDistance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::string unknownKeyReason(const Rules& rules, const std::string& path, std::string_view key,
                             std::initializer_list<std::string_view> known) {
  if (rules.unknown_key_hint) {
    std::string hint = rules.unknown_key_hint(path);
    if (!hint.empty()) return "unknown key (" + hint + ")";
  }
  std::string_view best;
  std::size_t best_distance = 3;  // beyond two edits a suggestion is more noise than help
  for (std::string_view candidate : known) {
    const std::size_t d = editDistance(key, candidate);
    if (d < best_distance) {
      best_distance = d;
      best = candidate;
    }
  }
  if (best.empty()) return "unknown key";
  return "unknown key (did you mean " + std::string(best) + "?)";
}

// What jsoncpp 1.9.5 lets through even in strict mode: numbers with leading zeros, and /* block */
// comments between members whatever allowComments says. Nesting is limited here too, with a
// location, before jsoncpp's recursion could meet it. Returns "line L, column C: reason" or "".
std::string lexicalProblem(std::string_view text, const Rules& rules) {
  int line = 1;
  int column = 0;
  int depth = 0;
  bool in_string = false;
  bool escaped = false;
  bool in_number = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    ++column;
    if (c == '\n') {
      ++line;
      column = 0;
    }
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    auto at = [&] { return "line " + std::to_string(line) + ", column " + std::to_string(column) + ": "; };
    if (c == '"') {
      in_string = true;
      in_number = false;
    } else if (c == '/') {
      if (!rules.line_comments) return at() + "comments are not allowed";
      if (i + 1 >= text.size() || text[i + 1] != '/') return at() + "only // line comments are allowed";
      while (i + 1 < text.size() && text[i + 1] != '\n') ++i;  // the newline itself counts lines
      in_number = false;
    } else if (c == '[' || c == '{') {
      if (++depth > rules.max_depth) {
        return at() + "nested deeper than " + std::to_string(rules.max_depth) + " levels";
      }
      in_number = false;
    } else if (c == ']' || c == '}') {
      --depth;
      in_number = false;
    } else if (!in_number && (c == '-' || (c >= '0' && c <= '9'))) {
      in_number = true;
      const std::size_t digit = c == '-' ? i + 1 : i;
      if (digit + 1 < text.size() && text[digit] == '0' && text[digit + 1] >= '0' && text[digit + 1] <= '9') {
        return at() + "numbers must not have leading zeros";
      }
    } else if (in_number &&
               !((c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-')) {
      in_number = false;
    }
  }
  return "";
}

// jsoncpp reports "* Line 3, Column 5\n  Missing ',' ...\n" per error, perhaps with "See Line ..."
// after it. Keep the first, on one line: "line 3, column 5: Missing ','...". The message may quote
// a key that holds a newline, so it runs to the next error or "See", not to the next newline.
std::string firstParseError(const std::string& errors) {
  const std::size_t end = errors.find('\n');
  std::string location = errors.substr(0, end);
  std::string message;
  if (end != std::string::npos) {
    const std::size_t next = std::min(errors.find("\n* Line ", end), errors.find("\nSee Line ", end));
    message = errors.substr(end + 1, next == std::string::npos ? std::string::npos : next - end - 1);
  }
  auto trim = [](std::string& s) {
    s.erase(0, s.find_first_not_of(" *\t"));
    s.erase(s.find_last_not_of(" \t\r\n") + 1);
  };
  trim(location);
  trim(message);
  if (location.starts_with("Line ")) location[0] = 'l';
  const std::size_t column = location.find(", Column ");
  if (column != std::string::npos) location[column + 2] = 'c';
  if (location.empty()) return "invalid JSON";
  return location + ": " + (message.empty() ? "invalid JSON" : message);
}

constexpr std::string_view kFraction = "expected an integer, got a number with a fraction or exponent";

}  // namespace

// ---- messages and paths ----

std::string printable(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

std::string quote(std::string_view s) {
  constexpr std::size_t kMaxShown = 80;
  std::string out = "\"";
  for (char c : s.substr(0, kMaxShown)) {
    if (c == '"' || c == '\\') out += '\\';
    out += printable(std::string_view(&c, 1));
  }
  out += '"';
  if (s.size() > kMaxShown) out += "...";
  return out;
}

std::string memberPath(std::string_view parent, std::string_view key) {
  if (!isPlainKey(key)) return std::string(parent) + "[" + quote(key) + "]";
  return parent.empty() ? std::string(key) : std::string(parent) + "." + std::string(key);
}

std::string indexPath(std::string_view parent, std::size_t index) {
  return std::string(parent) + "[" + std::to_string(index) + "]";
}

void Problems::report(std::string path, std::string reason) {
  if (!first_) first_ = Problem{std::move(path), std::move(reason)};
}

Status Problems::toStatus(std::string_view source) const {
  if (!first_) return Status::ok();
  return invalidArgument(printable(source) + ": " + (first_->path.empty() ? "(root)" : first_->path) + ": " +
                         first_->reason);
}

IntegerRule between(long long lo, long long hi) {
  return [lo, hi](long long value) -> std::string {
    if (value >= lo && value <= hi) return "";
    if (hi == std::numeric_limits<long long>::max()) return "must be at least " + std::to_string(lo);
    if (lo == std::numeric_limits<long long>::min()) return "must be at most " + std::to_string(hi);
    return "must be between " + std::to_string(lo) + " and " + std::to_string(hi);
  };
}

// ---- Value ----

void Value::fail(std::string reason) const { problems_->report(path_, std::move(reason)); }

void Value::expected(std::string_view what) const {
  fail("expected " + std::string(what) + ", got " + std::string(typeName(*json_)));
}

std::optional<std::string> Value::string() const {
  if (!usable()) return std::nullopt;
  if (!json_->isString()) {
    expected("a string");
    return std::nullopt;
  }
  std::string s = json_->asString();
  if (!rules_->nul_in_strings && s.find('\0') != std::string::npos) {
    fail("must not contain a NUL character");
    return std::nullopt;
  }
  return s;
}

std::optional<bool> Value::boolean() const {
  if (!usable()) return std::nullopt;
  if (!json_->isBool()) {
    expected("a boolean (true or false)");
    return std::nullopt;
  }
  return json_->asBool();
}

std::optional<double> Value::number() const {
  if (!usable()) return std::nullopt;
  if (!json_->isNumeric() || json_->isBool()) {
    expected("a number");
    return std::nullopt;
  }
  return json_->asDouble();
}

std::optional<long long> Value::integer(const IntegerRule& rule) const {
  if (!usable()) return std::nullopt;
  constexpr long long kMax = std::numeric_limits<long long>::max();
  constexpr long long kMin = std::numeric_limits<long long>::min();
  long long value = 0;
  bool beyond = false;  // the number as written does not fit: `value` is saturated
  switch (json_->type()) {
    case Json::intValue:
      value = json_->asInt64();
      break;
    case Json::uintValue:
      // jsoncpp keeps integers up to 2^63-1 as intValue, so this is above long long.
      beyond = json_->asUInt64() > static_cast<Json::UInt64>(kMax);
      value = beyond ? kMax : static_cast<long long>(json_->asUInt64());
      break;
    case Json::realValue:
      // jsoncpp stores integers beyond 64 bits as doubles: call those too large, not fractional.
      if (json_->asDouble() >= 0x1p63) {
        value = kMax;
      } else if (json_->asDouble() <= -0x1p63) {
        value = kMin;
      } else {
        fail(std::string(kFraction));
        return std::nullopt;
      }
      beyond = true;
      break;
    default:
      expected("an integer");
      return std::nullopt;
  }
  std::string reason = rule(value);
  if (reason.empty() && beyond) {
    reason = "must be between " + std::to_string(kMin) + " and " + std::to_string(kMax);
  }
  if (!reason.empty()) {
    fail(reason + ", got " + json_->asString());
    return std::nullopt;
  }
  return value;
}

std::optional<std::uint64_t> Value::unsignedInteger() const {
  if (!usable()) return std::nullopt;
  switch (json_->type()) {
    case Json::intValue:
      if (json_->asInt64() >= 0) return static_cast<std::uint64_t>(json_->asInt64());
      fail("must be at least 0, got " + json_->asString());
      return std::nullopt;
    case Json::uintValue:
      return json_->asUInt64();
    case Json::realValue:
      if (json_->asDouble() >= 0x1p64) {
        fail("must be at most " + std::to_string(std::numeric_limits<std::uint64_t>::max()) + ", got " +
             json_->asString());
      } else if (json_->asDouble() <= -0x1p63) {
        fail("must be at least 0, got " + json_->asString());
      } else {
        fail(std::string(kFraction));
      }
      return std::nullopt;
    default:
      expected("an integer");
      return std::nullopt;
  }
}

std::optional<Object> Value::object(std::initializer_list<std::string_view> known) const {
  std::optional<Object> o = object(kIgnoreUnknownKeys);
  if (!o) return std::nullopt;
  for (auto it = json_->begin(); it != json_->end(); ++it) {
    const std::string key = it.name();
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      const std::string key_path = memberPath(path_, key);
      problems_->report(key_path, unknownKeyReason(*rules_, key_path, key, known));
      return std::nullopt;
    }
  }
  return o;
}

std::optional<Object> Value::object(IgnoreUnknownKeys) const {
  if (!usable()) return std::nullopt;
  if (!json_->isObject()) {
    expected("an object");
    return std::nullopt;
  }
  return Object(json_, path_, problems_, rules_);
}

std::optional<std::vector<Value>> Value::array(std::string_view of) const {
  if (!usable()) return std::nullopt;
  if (!json_->isArray()) {
    expected("an array of " + std::string(of));
    return std::nullopt;
  }
  std::vector<Value> items;
  items.reserve(json_->size());
  for (Json::ArrayIndex i = 0; i < json_->size(); ++i) {
    items.push_back(Value(&(*json_)[i], indexPath(path_, i), problems_, rules_));
  }
  return items;
}

// ---- Object ----

std::string Object::path(std::string_view key) const { return memberPath(path_, key); }

bool Object::has(std::string_view key) const {
  return json_->find(key.data(), key.data() + key.size()) != nullptr;
}

Value Object::get(std::string_view key) const {
  return Value(json_->find(key.data(), key.data() + key.size()), path(key), problems_, rules_);
}

Value Object::require(std::string_view key) const {
  Value v = get(key);
  if (!v.present()) fail(key, "required");
  return v;
}

void Object::fail(std::string_view key, std::string reason) const {
  problems_->report(path(key), std::move(reason));
}

bool Object::read(std::string_view key, std::string& out) const {
  std::optional<std::string> v = get(key).string();
  if (v) out = std::move(*v);
  return v.has_value();
}

bool Object::read(std::string_view key, double& out) const {
  const std::optional<double> v = get(key).number();
  if (v) out = *v;
  return v.has_value();
}

bool Object::read(std::string_view key, bool& out) const {
  const std::optional<bool> v = get(key).boolean();
  if (v) out = *v;
  return v.has_value();
}

bool Object::read(std::string_view key, std::uint64_t& out) const {
  const std::optional<std::uint64_t> v = get(key).unsignedInteger();
  if (v) out = *v;
  return v.has_value();
}

// ---- Document ----

Document::Document(std::unique_ptr<Parsed> parsed) : parsed_(std::move(parsed)) {}
Document::Document(Document&&) noexcept = default;
Document& Document::operator=(Document&&) noexcept = default;
Document::~Document() = default;

Result<Document> Document::parse(std::string_view text, Rules rules) {
  if (text.size() > rules.max_bytes) {
    return invalidArgument("larger than " + std::to_string(rules.max_bytes) + " bytes");
  }
  if (std::string lexical = lexicalProblem(text, rules); !lexical.empty()) {
    return invalidArgument(printable(lexical));
  }
  Json::CharReaderBuilder builder;
  Json::CharReaderBuilder::strictMode(&builder.settings_);  // includes rejectDupKeys, failIfExtra
  builder["allowComments"] = rules.line_comments;           // `//` only: lexicalProblem() refused the rest
  builder["collectComments"] = false;
  // A backstop: lexicalProblem() already refused deeper documents (jsoncpp counts the root too).
  builder["stackLimit"] = rules.max_depth + 2;
  // An editor's byte-order mark is harmless; refusing it would only puzzle the operator.
  builder["skipBom"] = true;
  std::unique_ptr<Json::CharReader> reader(builder.newCharReader());
  auto parsed = std::make_unique<Parsed>(Parsed{std::move(rules), Json::Value()});
  std::string errors;
  try {
    if (!reader->parse(text.data(), text.data() + text.size(), &parsed->root, &errors)) {
      return invalidArgument(printable(firstParseError(errors)));
    }
  } catch (const std::exception&) {
    // jsoncpp throws when stackLimit is exceeded.
    return invalidArgument("nested deeper than " + std::to_string(parsed->rules.max_depth) + " levels");
  }
  return Document(std::move(parsed));
}

Value Document::root(Problems& problems) const {
  return Value(&parsed_->root, "", &problems, &parsed_->rules);
}

bool parseObject(std::string_view bytes, Json::Value& out) {
  Json::CharReaderBuilder builder;
  std::unique_ptr<Json::CharReader> reader(builder.newCharReader());
  std::string errors;
  try {
    return reader->parse(bytes.data(), bytes.data() + bytes.size(), &out, &errors) && out.isObject();
  } catch (const std::exception&) {
    return false;
  }
}

}  // namespace hacoord::json
