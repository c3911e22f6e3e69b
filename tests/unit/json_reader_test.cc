// json::Document and friends: lexical rules, typed reads with JSON paths, exact integers, messages.
#include "core/json_reader.h"

#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace hacoord::json {
namespace {

constexpr long long kMax = std::numeric_limits<long long>::max();
constexpr long long kMin = std::numeric_limits<long long>::min();

// "ok", or the parse error, or the first problem of `read`, as "doc: <path>: <reason>".
std::string outcome(std::string_view text, const std::function<void(const Value&)>& read, Rules rules = {}) {
  Result<Document> doc = Document::parse(text, std::move(rules));
  if (!doc.isOk()) return "parse: " + doc.status().message();
  Problems problems;
  read(doc->root(problems));
  if (problems.ok()) return "ok";
  Status s = problems.toStatus("doc");
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  return s.message();
}

// The syntax verdict alone.
std::string parseError(std::string_view text, Rules rules = {}) {
  return outcome(
      text, [](const Value&) {}, std::move(rules));
}

Rules withComments() {
  Rules r;
  r.line_comments = true;
  return r;
}

// ---- syntax: one document, one exact message ----

struct SyntaxCase {
  std::string name;
  std::string text;
  bool line_comments;
  std::string message;
};

void PrintTo(const SyntaxCase& c, std::ostream* os) { *os << c.name; }

class SyntaxRejection : public ::testing::TestWithParam<SyntaxCase> {};

TEST_P(SyntaxRejection, MessageIsExact) {
  Rules rules;
  rules.line_comments = GetParam().line_comments;
  EXPECT_EQ(parseError(GetParam().text, rules), "parse: " + GetParam().message) << GetParam().text;
}

const std::vector<SyntaxCase> kSyntaxRejections = {
    {"LeadingZero", R"({"a": 01})", false, "line 1, column 7: numbers must not have leading zeros"},
    {"NegativeLeadingZero", R"([1, -007])", false, "line 1, column 5: numbers must not have leading zeros"},
    {"LeadingZeroOnLineTwo", "[\n  00]", false, "line 2, column 3: numbers must not have leading zeros"},
    {"BlockComment", R"({"a": /* x */ 1})", true, "line 1, column 7: only // line comments are allowed"},
    {"LoneSlash", R"([1] / )", true, "line 1, column 5: only // line comments are allowed"},
    {"LineCommentWhereNoneAllowed", "[1] // x", false, "line 1, column 5: comments are not allowed"},
    {"BlockCommentWhereNoneAllowed", "[/**/1]", false, "line 1, column 2: comments are not allowed"},
    {"TooDeep", std::string(33, '[') + std::string(33, ']'), false,
     "line 1, column 33: nested deeper than 32 levels"},
    {"TooDeepObjects", "{\"a\":" + std::string(32, '['), false,
     "line 1, column 37: nested deeper than 32 levels"},
    {"HugeNestingDoesNotCrash", std::string(100000, '['), false,
     "line 1, column 33: nested deeper than 32 levels"},
    {"DuplicateKey", R"({"a": 1, "a": 2})", false, "line 1, column 10: Duplicate key: 'a'"},
    {"DuplicateKeyIsPrintable", "{\"a\\n\": 1, \"a\\n\": 2}", false,
     "line 1, column 12: Duplicate key: 'a\\u000a'"},
    {"Empty", "", false, "line 1, column 1: Syntax error: value, object or array expected."},
    {"ScalarRoot", "7", false,
     "line 1, column 1: A valid JSON document must be either an array or an object value."},
    {"TrailingGarbage", "{} x", false, "line 1, column 4: Extra non-whitespace after JSON value."},
    {"MissingColon", "{\n  \"a\" 1\n}", false, "line 2, column 7: Missing ':' after object member name"},
};
std::string syntaxName(const ::testing::TestParamInfo<SyntaxCase>& param) { return param.param.name; }
INSTANTIATE_TEST_SUITE_P(Json, SyntaxRejection, ::testing::ValuesIn(kSyntaxRejections), syntaxName);

TEST(JsonSyntax, OtherNonJsonIsRejectedWithALocation) {
  for (std::string text : {R"({"a": 1,})", "[1,]", R"({'a': 1})", "[NaN]", "[True]", "[1e]", "[\"a]"}) {
    EXPECT_TRUE(parseError(text).starts_with("parse: line 1, column ")) << text << ": " << parseError(text);
  }
}

TEST(JsonSyntax, WhatStrictJsonAllows) {
  EXPECT_EQ(parseError(R"({"a": [0, -0, 0.5, -0.25, 10, 100, 1e5, 2E-3]})"), "ok");
  EXPECT_EQ(parseError(std::string(32, '[') + std::string(32, ']')), "ok");  // exactly the limit
  EXPECT_EQ(parseError("\xEF\xBB\xBF{}"), "ok");                             // a byte-order mark is skipped
  // Slashes and zeros inside strings are text.
  EXPECT_EQ(parseError(R"({"a": "// /* 007 */", "b\"//": "0"})"), "ok");
  EXPECT_EQ(parseError("{\n  // a comment\n  \"a\": 1 // another\n}\n", withComments()), "ok");
}

TEST(JsonSyntax, SizeLimit) {
  Rules rules;
  rules.max_bytes = 10;
  EXPECT_EQ(parseError("[1,2,3,45]", rules), "ok");
  EXPECT_EQ(parseError("[1,2,3,456]", rules), "parse: larger than 10 bytes");
}

TEST(JsonSyntax, DepthLimitIsARule) {
  Rules rules;
  rules.max_depth = 2;
  EXPECT_EQ(parseError("[[]]", rules), "ok");
  EXPECT_EQ(parseError(R"({"a": [{}]})", rules), "parse: line 1, column 8: nested deeper than 2 levels");
}

// ---- typed reads: one document, one reader, one exact message ----

struct ReadCase {
  std::string name;
  std::string text;
  std::function<void(const Value&)> read;
  std::string message;  // "ok" when accepted
};

void PrintTo(const ReadCase& c, std::ostream* os) { *os << c.name; }

class ReadOutcome : public ::testing::TestWithParam<ReadCase> {};

TEST_P(ReadOutcome, MessageIsExact) {
  EXPECT_EQ(outcome(GetParam().text, GetParam().read), GetParam().message) << GetParam().text;
}

// Reads member `k` of the root object with `read`.
std::function<void(const Value&)> member(std::function<void(const Value&)> read) {
  return [read](const Value& root) {
    if (auto o = root.object(kIgnoreUnknownKeys)) read(o->get("k"));
  };
}
auto asString = member([](const Value& v) { (void)v.string(); });
auto asBool = member([](const Value& v) { (void)v.boolean(); });
auto asInt = [](long long lo, long long hi) {
  return member([=](const Value& v) { (void)v.integer(between(lo, hi)); });
};
auto asUnsigned = member([](const Value& v) { (void)v.unsignedInteger(); });
auto asNumber = member([](const Value& v) { (void)v.number(); });

const std::vector<ReadCase> kReads = {
    // Types.
    {"RootNotObject", "[1]", [](const Value& v) { (void)v.object(kIgnoreUnknownKeys); },
     "doc: (root): expected an object, got array"},
    {"StringGotNumber", R"({"k": 1})", asString, "doc: k: expected a string, got number"},
    {"StringGotNull", R"({"k": null})", asString, "doc: k: expected a string, got null"},
    {"StringGotArray", R"({"k": ["a"]})", asString, "doc: k: expected a string, got array"},
    {"StringWithNul", R"({"k": "a\u0000b"})", asString, "doc: k: must not contain a NUL character"},
    {"BoolGotString", R"({"k": "true"})", asBool, "doc: k: expected a boolean (true or false), got string"},
    {"BoolGotNumber", R"({"k": 1})", asBool, "doc: k: expected a boolean (true or false), got number"},
    {"IntGotString", R"({"k": "1"})", asInt(kMin, kMax), "doc: k: expected an integer, got string"},
    {"IntGotBool", R"({"k": false})", asInt(kMin, kMax), "doc: k: expected an integer, got boolean"},
    {"IntGotObject", R"({"k": {}})", asInt(kMin, kMax), "doc: k: expected an integer, got object"},
    {"NumberGotString", R"({"k": "1.5"})", asNumber, "doc: k: expected a number, got string"},
    {"NumberGotBool", R"({"k": true})", asNumber, "doc: k: expected a number, got boolean"},
    {"NumberGotNull", R"({"k": null})", asNumber, "doc: k: expected a number, got null"},
    {"NumberWithFraction", R"({"k": -2.5e-3})", asNumber, "ok"},
    {"NumberIntegral", R"({"k": 18446744073709551615})", asNumber, "ok"},
    {"ObjectGotString", R"({"k": "x"})", member([](const Value& v) { (void)v.object({"a"}); }),
     "doc: k: expected an object, got string"},
    {"ArrayGotObject", R"({"k": {}})", member([](const Value& v) { (void)v.array("strings"); }),
     "doc: k: expected an array of strings, got object"},
    // Exact integers.
    {"IntFraction", R"({"k": 1.5})", asInt(kMin, kMax),
     "doc: k: expected an integer, got a number with a fraction or exponent"},
    {"IntPointZero", R"({"k": 100.0})", asInt(kMin, kMax),
     "doc: k: expected an integer, got a number with a fraction or exponent"},
    {"IntExponent", R"({"k": 1e3})", asInt(kMin, kMax),
     "doc: k: expected an integer, got a number with a fraction or exponent"},
    {"IntNegativeFraction", R"({"k": -0.5})", asInt(kMin, kMax),
     "doc: k: expected an integer, got a number with a fraction or exponent"},
    {"IntBetween", R"({"k": 6})", asInt(1, 5), "doc: k: must be between 1 and 5, got 6"},
    {"IntBelow", R"({"k": 0})", asInt(1, 5), "doc: k: must be between 1 and 5, got 0"},
    {"IntAtLeast", R"({"k": -1})", asInt(0, kMax), "doc: k: must be at least 0, got -1"},
    {"IntAtMost", R"({"k": 6})", asInt(kMin, 5), "doc: k: must be at most 5, got 6"},
    {"IntEdgesAccepted", R"({"k": 5})", asInt(1, 5), "ok"},
    {"IntMaxAccepted", R"({"k": 9223372036854775807})", asInt(kMin, kMax), "ok"},
    {"IntMinAccepted", R"({"k": -9223372036854775808})", asInt(kMin, kMax), "ok"},
    {"IntAboveLongLong", R"({"k": 9223372036854775808})", asInt(kMin, kMax),
     "doc: k: must be between -9223372036854775808 and 9223372036854775807, got 9223372036854775808"},
    {"IntAbove64BitsIsTooLargeNotFractional", R"({"k": 100000000000000000000})", asInt(0, 10),
     "doc: k: must be between 0 and 10, got 1e+20"},
    {"IntBelow64Bits", R"({"k": -100000000000000000000})", asInt(kMin, kMax),
     "doc: k: must be between -9223372036854775808 and 9223372036854775807, got -1e+20"},
    {"UnsignedNegative", R"({"k": -1})", asUnsigned, "doc: k: must be at least 0, got -1"},
    {"UnsignedMaxAccepted", R"({"k": 18446744073709551615})", asUnsigned, "ok"},
    {"UnsignedAbove64Bits", R"({"k": 18446744073709551616})", asUnsigned,
     "doc: k: must be at most 18446744073709551615, got 1.8446744073709552e+19"},
    {"UnsignedFraction", R"({"k": 2.5})", asUnsigned,
     "doc: k: expected an integer, got a number with a fraction or exponent"},
    {"UnsignedGotString", R"({"k": "2"})", asUnsigned, "doc: k: expected an integer, got string"},
    // Unknown keys, suggestions and paths.
    {"UnknownKey", R"({"port": 1, "bogus": 2})", [](const Value& v) { (void)v.object({"port"}); },
     "doc: bogus: unknown key"},
    {"NearMissIsSuggested", R"({"k": {"prot": 1}})", member([](const Value& v) {
       (void)v.object({"port", "host"});
     }),
     "doc: k.prot: unknown key (did you mean port?)"},
    {"CaseIsANearMiss", R"({"leaseTTLMs": 1})", [](const Value& v) { (void)v.object({"leaseTtlMs"}); },
     "doc: leaseTTLMs: unknown key (did you mean leaseTtlMs?)"},
    {"FarMissGetsNoSuggestion", R"({"colour": 1})", [](const Value& v) { (void)v.object({"port"}); },
     "doc: colour: unknown key"},
    {"OddKeyIsQuoted", R"({"k": {"a b": 1}})", member([](const Value& v) { (void)v.object({"port"}); }),
     R"(doc: k["a b"]: unknown key)"},
    {"ControlCharInKeyIsEscaped", R"({"a\tb": 1})", [](const Value& v) { (void)v.object({"port"}); },
     R"(doc: ["a\u0009b"]: unknown key)"},
    {"IgnoredUnknownKeys", R"({"k": {"new": 1}})",
     member([](const Value& v) { (void)v.object(kIgnoreUnknownKeys); }), "ok"},
    {"ArrayElementPath", R"({"k": ["a", "b", 3]})", member([](const Value& v) {
       if (auto items = v.array("strings")) {
         for (const Value& item : *items) (void)item.string();
       }
     }),
     "doc: k[2]: expected a string, got number"},
    {"NestedPath", R"({"k": [{"a": {"b": true}}]})", member([](const Value& v) {
       if (auto items = v.array("objects")) {
         if (auto o = (*items)[0].object({"a"})) {
           if (auto a = o->get("a").object({"b"})) (void)a->get("b").string();
         }
       }
     }),
     "doc: k[0].a.b: expected a string, got boolean"},
    // Required members.
    {"Required", R"({"a": 1})",
     [](const Value& v) {
       if (auto o = v.object({"a", "b"})) o->require("b");
     },
     "doc: b: required"},
    {"RequiredWithOut", R"({"a": 1})",
     [](const Value& v) {
       std::string b;
       if (auto o = v.object({"a", "b"})) o->require("b", b);
     },
     "doc: b: required"},
    {"AbsentIsNoProblem", R"({})",
     [](const Value& v) {
       if (auto o = v.object({"a"})) {
         EXPECT_FALSE(o->get("a").present());
         EXPECT_FALSE(o->get("a").string());
       }
     },
     "ok"},
};
std::string readName(const ::testing::TestParamInfo<ReadCase>& param) { return param.param.name; }
INSTANTIATE_TEST_SUITE_P(Json, ReadOutcome, ::testing::ValuesIn(kReads), readName);

// ---- reading a whole object ----

TEST(JsonRead, TypedReadsFillOnlyWhatIsThere) {
  auto doc = Document::parse(
      R"({"s": "x", "b": true, "i": -7, "u": 18446744073709551615, "n": 3, "d": 1.25, "di": 4})");
  ASSERT_TRUE(doc.isOk()) << doc.status().toString();
  Problems problems;
  auto o = doc->root(problems).object({"s", "b", "i", "u", "n", "d", "di", "absent"});
  ASSERT_TRUE(o);
  std::string s = "default";
  bool b = false;
  long long i = 0;
  std::uint64_t u = 0;
  int n = 0;
  std::string absent = "kept";
  EXPECT_TRUE(o->read("s", s));
  EXPECT_TRUE(o->read("b", b));
  EXPECT_TRUE(o->read("i", i, -10, 10));
  EXPECT_TRUE(o->read("u", u));
  EXPECT_TRUE(o->require("n", n, 1, 3));
  EXPECT_FALSE(o->read("absent", absent));
  double d = 0;
  double di = 0;
  double absent_d = 7;
  EXPECT_TRUE(o->read("d", d));
  EXPECT_TRUE(o->read("di", di));
  EXPECT_FALSE(o->read("absent", absent_d));
  EXPECT_EQ(d, 1.25);
  EXPECT_EQ(di, 4.0);
  EXPECT_EQ(absent_d, 7.0);
  EXPECT_TRUE(problems.ok());
  EXPECT_EQ(s, "x");
  EXPECT_TRUE(b);
  EXPECT_EQ(i, -7);
  EXPECT_EQ(u, std::numeric_limits<std::uint64_t>::max());
  EXPECT_EQ(n, 3);
  EXPECT_EQ(absent, "kept");
}

TEST(JsonRead, FirstProblemWinsAndLaterReadsAreNoOps) {
  auto doc = Document::parse(R"({"a": 1, "b": "two", "c": "three"})");
  ASSERT_TRUE(doc.isOk());
  Problems problems;
  auto o = doc->root(problems).object(kIgnoreUnknownKeys);
  ASSERT_TRUE(o);
  std::string a = "unchanged";
  std::string c = "unchanged";
  EXPECT_FALSE(o->read("a", a));  // a number: the first problem
  EXPECT_FALSE(o->read("c", c));  // valid, but after a problem nothing is read
  o->fail("b", "a later problem");
  o->require("missing");
  EXPECT_EQ(a, "unchanged");
  EXPECT_EQ(c, "unchanged");
  ASSERT_TRUE(problems.first());
  EXPECT_EQ(problems.first()->path, "a");
  EXPECT_EQ(problems.toStatus("x.json").message(), "x.json: a: expected a string, got number");
}

TEST(JsonRead, NulInStringsWhenTheRulesAllowIt) {
  Rules rules;
  rules.nul_in_strings = true;
  auto doc = Document::parse(R"({"k": "a\u0000b"})", rules);
  ASSERT_TRUE(doc.isOk());
  Problems problems;
  std::string k;
  auto o = doc->root(problems).object({"k"});
  ASSERT_TRUE(o);
  EXPECT_TRUE(o->read("k", k));
  EXPECT_EQ(k, std::string("a\0b", 3));
}

TEST(JsonRead, UnknownKeyHintReplacesTheSuggestion) {
  Rules rules;
  rules.unknown_key_hint = [](std::string_view path) {
    return path == "old.heartbeat" ? std::string("renamed to old.beat") : std::string();
  };
  auto read = [](const Value& root) {
    if (auto o = root.object({"old"})) (void)o->get("old").object({"beat", "heartbeats"});
  };
  EXPECT_EQ(outcome(R"({"old": {"heartbeat": 1}})", read, rules),
            "doc: old.heartbeat: unknown key (renamed to old.beat)");
  EXPECT_EQ(outcome(R"({"old": {"heartbeet": 1}})", read, rules),
            "doc: old.heartbeet: unknown key (did you mean heartbeats?)");
}

TEST(JsonRead, ValuesStayValidWhenTheDocumentIsMoved) {
  auto parsed = Document::parse(R"({"k": "v"})");
  ASSERT_TRUE(parsed.isOk());
  Document doc = std::move(parsed.value());
  Problems problems;
  std::string k;
  auto o = doc.root(problems).object({"k"});
  ASSERT_TRUE(o);
  EXPECT_TRUE(o->read("k", k));
  EXPECT_EQ(k, "v");
}

// ---- message helpers ----

TEST(JsonText, PathsAsJqWritesThem) {
  EXPECT_EQ(memberPath("", "vip"), "vip");
  EXPECT_EQ(memberPath("vip", "netmask"), "vip.netmask");
  EXPECT_EQ(memberPath("vip", "bad key"), R"(vip["bad key"])");
  EXPECT_EQ(memberPath("", "a.b"), R"(["a.b"])");
  EXPECT_EQ(memberPath("x", ""), R"(x[""])");
  EXPECT_EQ(indexPath("nats.servers", 2), "nats.servers[2]");
}

TEST(JsonText, QuoteEscapesAndShortens) {
  EXPECT_EQ(quote("plain"), R"("plain")");
  EXPECT_EQ(quote("a\"b\\c"), R"("a\"b\\c")");
  EXPECT_EQ(quote("tab\there\n"), R"("tab\u0009here\u000a")");
  EXPECT_EQ(quote(std::string(81, 'x')), "\"" + std::string(80, 'x') + "\"...");
  EXPECT_EQ(printable(std::string("a\0b\x7f", 4)), "a\\u0000b\\u007f");
}

TEST(JsonText, ProblemsAtTheRootAreNamedRoot) {
  Problems problems;
  EXPECT_TRUE(problems.toStatus("x").isOk());
  problems.report("", "expected an object, got array");
  EXPECT_EQ(problems.toStatus("evil\nsource").message(),
            "evil\\u000asource: (root): expected an object, got array");
}

}  // namespace
}  // namespace hacoord::json
