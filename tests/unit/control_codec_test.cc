// Control codec: what a node accepts on its control subjects (strictly, with the key named in the
// error), and the Status code carried back to the CLI unchanged.
#include "node/control_codec.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace hacoord {
namespace {

struct Rejected {
  std::string verb;
  std::string body;
  std::string message;  // the exact InvalidArgument message
};

const std::string kNotAnId =
    "control request: successor: must be a node id ([A-Za-z0-9_-], 1 to 64 characters)";
const std::string kBadRequester =
    "control request: requester: must be at most 128 printable ASCII characters";

std::string requesterBody(const std::string& requester) { return "{\"requester\":\"" + requester + "\"}"; }

TEST(ControlCodecTest, RejectsBadRequestsNamingTheProblem) {
  const std::vector<Rejected> table = {
      // Verbs.
      {"demote", "", "control request: unknown verb 'demote'"},
      {"", "", "control request: unknown verb ''"},
      {"STEPDOWN", "{}", "control request: unknown verb 'STEPDOWN'"},
      // Unknown keys: a typo is refused (with a hint), not ignored.
      {"stepdown", R"({"sucessor":"n2"})",
       "control request: sucessor: unknown key (did you mean successor?)"},
      {"stepdown", R"({"successor":"n2","force":true})", "control request: force: unknown key"},
      // A successor only makes sense for a handover.
      {"join", R"({"successor":"n2"})", "control request: successor: unknown key"},
      {"leave", R"({"successor":"n2"})", "control request: successor: unknown key"},
      {"promote", R"({"successor":"n2"})", "control request: successor: unknown key"},
      // successor must be a node id: it ends up in a NATS subject and in the lease record.
      {"stepdown", R"({"successor":"a b"})", kNotAnId},
      {"stepdown", R"({"successor":"../x"})", kNotAnId},
      {"stepdown", R"({"successor":"n2.control"})", kNotAnId},
      {"stepdown", R"({"successor":"n*"})", kNotAnId},
      {"stepdown", R"({"successor":"n>"})", kNotAnId},
      {"stepdown.force", R"({"successor":"a b"})", kNotAnId},
      {"stepdown", "{\"successor\":\"" + std::string(65, 'a') + "\"}", kNotAnId},
      // requester: logged as given, so short and printable.
      {"stepdown", requesterBody(std::string(129, 'r')), kBadRequester},
      {"join", requesterBody(std::string(129, 'r')), kBadRequester},
      {"stepdown", requesterBody("a\\nb"), kBadRequester},
      {"leave", requesterBody("a\\u001b[31mred"), kBadRequester},
      {"promote", requesterBody("caf\xc3\xa9"), kBadRequester},
      {"promote", requesterBody("caf\\u00e9"), kBadRequester},
      {"join", requesterBody("a\\u0000b"), "control request: requester: must not contain a NUL character"},
      // Wrong JSON types.
      {"stepdown", R"({"successor":5})", "control request: successor: expected a string, got number"},
      {"stepdown", R"({"successor":null})", "control request: successor: expected a string, got null"},
      {"stepdown", R"({"successor":["n2"]})", "control request: successor: expected a string, got array"},
      {"stepdown", R"({"requester":true})", "control request: requester: expected a string, got boolean"},
      {"join", R"({"requester":{}})", "control request: requester: expected a string, got object"},
      // Not an object.
      {"stepdown", "[]", "control request: (root): expected an object, got array"},
      {"join", R"([{"requester":"x"}])", "control request: (root): expected an object, got array"},
      {"stepdown", R"("n2")",
       "control request: line 1, column 1: A valid JSON document must be either an array or an object "
       "value."},
      {"stepdown", "null",
       "control request: line 1, column 1: A valid JSON document must be either an array or an object "
       "value."},
      // Broken or trailing input.
      {"stepdown", "{", "control request: line 1, column 2: Missing '}' or object member name"},
      {"stepdown", " ", "control request: line 1, column 2: Syntax error: value, object or array expected."},
      {"stepdown", "{} x", "control request: line 1, column 4: Extra non-whitespace after JSON value."},
      {"stepdown", "{}{}", "control request: line 1, column 3: Extra non-whitespace after JSON value."},
      {"stepdown", R"({"requester":"a","requester":"b"})",
       "control request: line 1, column 18: Duplicate key: 'requester'"},
      // Deep nesting is refused before jsoncpp's recursion sees it; oversized bodies too.
      {"stepdown", "{\"requester\":" + std::string(10, '[') + std::string(10, ']') + "}",
       "control request: line 1, column 17: nested deeper than 4 levels"},
      {"stepdown", "{\"requester\":" + std::string(100000, '['), "control request: larger than 4096 bytes"},
      {"stepdown", requesterBody(std::string(5000, 'x')), "control request: larger than 4096 bytes"},
  };
  for (const auto& t : table) {
    SCOPED_TRACE(t.verb + " " + t.body.substr(0, 80));
    const Result<ControlRequest> r = decodeControlRequest(t.verb, t.body);
    ASSERT_FALSE(r.isOk());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(r.status().message(), t.message);
  }
}

TEST(ControlCodecTest, AcceptsWhatEachVerbTakes) {
  struct Accepted {
    std::string verb;
    std::string body;
    ControlRequest want;
  };
  const std::string longest_id(64, 'n');
  const std::string longest_requester(128, 'r');
  const std::vector<Accepted> table = {
      // An empty body is the default request, for every verb (the CLI sends nothing extra).
      {"stepdown", "", {}},
      {"stepdown.force", "", {}},
      {"promote", "", {}},
      {"join", "", {}},
      {"leave", "", {}},
      {"stepdown", "{}", {}},
      {"join", " {} \n", {}},
      {"stepdown", R"({"successor":""})", {}},
      {"stepdown", R"({"successor":"node-2_b"})", {"node-2_b", ""}},
      {"stepdown.force", R"({"successor":"n2","requester":"ops@bastion"})", {"n2", "ops@bastion"}},
      {"stepdown", "{\"successor\":\"" + longest_id + "\"}", {longest_id, ""}},
      {"promote", R"j({"requester":"alice (ticket #42)"})j", {"", "alice (ticket #42)"}},
      {"leave", requesterBody(longest_requester), {"", longest_requester}},
      {"join", R"({"requester":"say \"hi\" \\o/ ~"})", {"", "say \"hi\" \\o/ ~"}},
      {"join", R"({"requester":"\u0041"})", {"", "A"}},
  };
  for (const auto& t : table) {
    SCOPED_TRACE(t.verb + " " + t.body.substr(0, 80));
    const Result<ControlRequest> r = decodeControlRequest(t.verb, t.body);
    ASSERT_TRUE(r.isOk()) << r.status().toString();
    EXPECT_EQ(r->successor, t.want.successor);
    EXPECT_EQ(r->requester, t.want.requester);
  }
}

TEST(ControlCodecTest, EncodedRequestsDecodeToThemselves) {
  const std::vector<ControlRequest> requests = {
      {},
      {"n2", ""},
      {"", "cli@host"},
      {std::string(64, 'z'), std::string(128, '~')},
      {"A-b_9", R"(quote " backslash \ slash / braces {} [])"},
  };
  for (const auto& request : requests) {
    const std::string body = encodeControlRequest(request);
    SCOPED_TRACE(body);
    const Result<ControlRequest> back = decodeControlRequest(kVerbStepDown, body);
    ASSERT_TRUE(back.isOk()) << back.status().toString();
    EXPECT_EQ(*back, request);
    if (request.successor.empty()) {
      // Without a successor the same body is valid for the verbs that take none.
      for (auto verb : {kVerbPromote, kVerbJoin, kVerbLeave, kVerbForceStepDown}) {
        const Result<ControlRequest> other = decodeControlRequest(verb, body);
        ASSERT_TRUE(other.isOk()) << verb << ": " << other.status().toString();
        EXPECT_EQ(*other, request);
      }
    }
  }
  EXPECT_EQ(encodeControlRequest({}), "{}");
}

// The CLI's exit status and message come from the code on the wire: each must come back as sent.
TEST(ControlCodecTest, EveryStatusCodeSurvivesTheReply) {
  const std::vector<std::string> messages = {
      "", "not the leader", "line1\nline2\t\"quoted\" \\ caf\xc3\xa9",
      "last handover 12 ms ago; at most one per election.cooldownMs (5000 ms)"};
  for (int c = static_cast<int>(StatusCode::kOk); c <= static_cast<int>(kLastStatusCode); ++c) {
    const auto code = static_cast<StatusCode>(c);
    for (const auto& message : messages) {
      const Status sent = code == StatusCode::kOk ? Status::ok() : Status(code, message);
      const std::string wire = encodeControlReply(sent);
      SCOPED_TRACE(wire);
      const Status got = decodeControlReply(wire);
      EXPECT_EQ(got.code(), sent.code());
      EXPECT_EQ(got.message(), sent.message());
    }
  }
  EXPECT_EQ(encodeControlReply(Status::ok()), R"({"ok":true})");
  EXPECT_EQ(encodeControlReply(Status(StatusCode::kFailedPrecondition, "cooldown")),
            R"({"code":"FAILED_PRECONDITION","error":"cooldown","ok":false})");
}

TEST(ControlCodecTest, AcceptsRepliesFromNewerNodes) {
  EXPECT_TRUE(decodeControlReply(R"({"ok":true,"took_ms":3})").isOk());
  const Status s = decodeControlReply(R"({"ok":false,"code":"ABORTED","error":"lost","hint":"x"})");
  EXPECT_EQ(s.code(), StatusCode::kAborted);
  EXPECT_EQ(s.message(), "lost");
  // No error text is an empty message, not a failure to decode.
  EXPECT_EQ(decodeControlReply(R"({"ok":false,"code":"UNAVAILABLE"})").code(), StatusCode::kUnavailable);
}

// Anything else is DataLoss naming what is wrong, never OK and never a made-up code: a garbled
// reply must not look like success to the CLI.
TEST(ControlCodecTest, GarbageRepliesAreDataLossNamingTheProblem) {
  struct Garbage {
    std::string body;
    std::string message;
  };
  const std::vector<Garbage> table = {
      {"", "control reply: line 1, column 1: Syntax error: value, object or array expected."},
      {"x", "control reply: line 1, column 1: Syntax error: value, object or array expected."},
      {"[]", "control reply: (root): expected an object, got array"},
      {"{}", "control reply: ok: required"},
      {R"({"ok":"yes"})", "control reply: ok: expected a boolean (true or false), got string"},
      {R"({"ok":1})", "control reply: ok: expected a boolean (true or false), got number"},
      {R"({"ok":false})", "control reply: code: required"},
      {R"({"ok":false,"code":7})", "control reply: code: expected a string, got number"},
      {R"({"ok":false,"code":"NOPE","error":"e"})", "control reply: unknown code \"NOPE\": e"},
      {R"({"ok":false,"code":"ok","error":"e"})", "control reply: unknown code \"ok\": e"},
      {R"({"ok":false,"code":"OK","error":"e"})", "control reply: unknown code \"OK\": e"},
      {R"({"ok":true} x)", "control reply: line 1, column 13: Extra non-whitespace after JSON value."},
      {"{\"ok\":" + std::string(10, '[') + std::string(10, ']') + "}",
       "control reply: line 1, column 10: nested deeper than 4 levels"},
  };
  for (const auto& t : table) {
    SCOPED_TRACE(t.body);
    const Status s = decodeControlReply(t.body);
    EXPECT_EQ(s.code(), StatusCode::kDataLoss);
    EXPECT_EQ(s.message(), t.message);
  }
}

}  // namespace
}  // namespace hacoord
