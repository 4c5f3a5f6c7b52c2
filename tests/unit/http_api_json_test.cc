// Public JSON <-> control messages (src/http/api_json.h): request bodies of the original's
// clients map to the right SpawnRequest, every refusal names its field, and the response
// shapes keep the original's members (in its order) with ours after them.
#include "http/api_json.h"

#include <csignal>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/messages.h"
#include "common/wire.h"
#include "http/api_error.h"

namespace mp::http {
namespace {

using ojson = nlohmann::ordered_json;

template <typename T>
const T& Value(const ApiResult<T>& r) {
  if (r.index() != 0) {
    ADD_FAILURE() << "unexpected error: " << std::get<1>(r).ToJson();
    static const T kEmpty{};
    return kEmpty;
  }
  return std::get<0>(r);
}

template <typename T>
ApiError Err(const ApiResult<T>& r) {
  if (r.index() != 1) {
    ADD_FAILURE() << "expected an error";
    return {};
  }
  return std::get<1>(r);
}

std::vector<std::string> Keys(const ojson& j) {
  std::vector<std::string> keys;
  for (const auto& [k, v] : j.items()) keys.push_back(k);
  return keys;
}

// ---- ApiError.

TEST(ApiErrorTest, ToJson) {
  EXPECT_EQ(BadRequest("task is required", "/task").ToJson(),
            R"({"error":"task is required","code":"bad_request","field":"/task"})");
  EXPECT_EQ(NotFound().ToJson(), R"({"error":"Not found","code":"not_found"})");
  const ApiError e{401, "unauthorized", "Unauthorized", ""};
  EXPECT_EQ(e.ToJson(), R"({"error":"Unauthorized","code":"unauthorized"})");
  // Client bytes quoted in a message stay valid JSON.
  EXPECT_EQ(BadRequest("bad \"\xFF\"\n").ToJson(),
            "{\"error\":\"bad \\\"\xEF\xBF\xBD\\\"\\n\",\"code\":\"bad_request\"}");
}

TEST(ApiErrorTest, FromSupervisor) {
  struct Case {
    wire::ErrorCode code;
    int status;
    std::string_view name;
  };
  const std::vector<Case> cases = {
      {wire::ErrorCode::kBadRequest, 400, "bad_request"},
      {wire::ErrorCode::kNotFound, 404, "not_found"},
      {wire::ErrorCode::kWrongState, 409, "wrong_state"},
      {wire::ErrorCode::kCapacity, 429, "capacity"},
      {wire::ErrorCode::kPolicyViolation, 403, "policy_violation"},
      {wire::ErrorCode::kInternal, 500, "internal"},
      {wire::ErrorCode::kUnavailable, 503, "unavailable"},
      {wire::ErrorCode::kTooLarge, 413, "too_large"},
      {wire::ErrorCode::kHostSetup, 500, "host_setup"},
      {wire::ErrorCode::kInsufficientStorage, 507, "insufficient_storage"},
  };
  ASSERT_EQ(cases.size(), kErrorCodeNames.size()) << "a code without its status here";
  for (const Case& c : cases) {
    const ApiError e = FromSupervisor({c.code, "msg", "/limits/memory_max_bytes"});
    EXPECT_EQ(e.status, c.status);
    EXPECT_EQ(e.code, c.name);
    EXPECT_EQ(e.message, "msg");
    EXPECT_EQ(e.field, "/limits/memory_max_bytes");
  }
}

TEST(ApiErrorTest, TransportError) {
  const ApiError e = TransportError(PlainError("supervisor link down"));
  EXPECT_EQ(e.status, 503);
  EXPECT_EQ(e.code, "unavailable");
  EXPECT_EQ(e.message, "supervisor link down");
  EXPECT_TRUE(e.field.empty());
}

// ---- POST /sessions.

// The original's curl recipe for an exec session.
TEST(ParseSpawnBodyTest, ExecFromTheOriginalsRecipe) {
  const auto r = ParseSpawnBody(R"({"task":"ls -la && echo done","cwd":"/tmp"})", "token:ci");
  wire::SpawnRequest want;
  want.task = "ls -la && echo done";
  want.type = wire::SessionType::kExec;
  want.cwd = "/tmp";
  want.client = "token:ci";
  EXPECT_EQ(Value(r), want);
}

// A relative cwd goes to the supervisor as given (it resolves it against the default
// workspace); `command` without `args` keeps args absent (the supervisor then runs
// `COMMAND -lc TASK`), while `"args":[]` is an empty list.
TEST(ParseSpawnBodyTest, RelativeCwdAndCommandWithoutArgs) {
  const auto r = ParseSpawnBody(R"({"task":"echo $0","cwd":"sub/dir","command":"bash"})", "c");
  wire::SpawnRequest want;
  want.task = "echo $0";
  want.cwd = "sub/dir";
  want.command = "bash";
  want.client = "c";
  EXPECT_EQ(Value(r), want);
  const auto empty = ParseSpawnBody(R"({"task":"t","command":"bash","args":[]})", "c");
  want = {};
  want.task = "t";
  want.command = "bash";
  want.args = std::vector<std::string>{};
  want.client = "c";
  EXPECT_EQ(Value(empty), want);
}

TEST(ParseSpawnBodyTest, PrintWithEverything) {
  const auto r = ParseSpawnBody(R"({
      "task": "fix the failing test",
      "type": "print",
      "preset": "claude-sonnet",
      "cwd": "/srv/monkeyproof/workspaces/x",
      "command": "claude",
      "args": ["--print", ""],
      "maxTurns": 5,
      "env": {"FOO": "bar", "_X1": ""},
      "owner": "me",
      "labels": [" CI ", "ci", "Nightly", "", "  ", "nightly", "a b"],
      "limits": {"memoryMaxBytes": 536870912, "memorySwapMaxBytes": 0, "pidsMax": 64,
                 "cpuMaxPercent": 50, "wallSeconds": 600, "idleSeconds": 60},
      "pty": {"rows": 40, "cols": 120},
      "unknownMember": {"ignored": [1, 2, 3]}
  })",
                                "token:dev");
  wire::SpawnRequest want;
  want.task = "fix the failing test";
  want.type = wire::SessionType::kPrint;
  want.preset = "claude-sonnet";
  want.cwd = "/srv/monkeyproof/workspaces/x";
  want.command = "claude";
  want.args = std::vector<std::string>{"--print", ""};
  want.max_turns = 5;
  want.env = {{"FOO", "bar"}, {"_X1", ""}};
  want.owner = "me";
  want.labels = {"ci", "nightly", "a b"};
  want.limits = wire::SpawnLimits{536870912, 0, 64, 50, 600, 60};
  want.pty = wire::PtySize{40, 120};
  want.client = "token:dev";
  EXPECT_EQ(Value(r), want);
}

// What the API accepts, the supervisor's strict decoder accepts unchanged.
TEST(ParseSpawnBodyTest, AcceptedSpawnDecodesOnTheSupervisorSide) {
  const auto r = ParseSpawnBody(
      R"({"task":"t\u0001\n","type":"interactive","preset":"claude-interactive","cwd":"/w",)"
      R"("command":"c","args":["",""],"maxTurns":10000,"env":{"_":""},"owner":"o w",)"
      R"("labels":["\u00c9t\u00c9"],"limits":{},"pty":{"rows":1,"cols":1000}})",
      "token:x");
  wire::Request request;
  request.id = 1;
  request.body = Value(r);
  const auto encoded = wire::EncodeRequest(request);
  ASSERT_TRUE(encoded.has_value());
  const auto frame = wire::DecodeFrame(*encoded);
  ASSERT_TRUE(frame.has_value());
  const auto decoded = wire::DecodeRequest(*frame);
  ASSERT_TRUE(decoded.has_value()) << decoded.error().ToString();
  EXPECT_EQ(*decoded, request);
}

TEST(ParseSpawnBodyTest, ModeIsAnAliasAndNullIsAbsent) {
  auto r =
      ParseSpawnBody(R"({"task":"t","mode":"interactive","preset":"claude-interactive"})", "c");
  EXPECT_EQ(Value(r).type, wire::SessionType::kInteractive);
  EXPECT_EQ(Value(r).preset, "claude-interactive");
  r = ParseSpawnBody(R"({"task":"t","type":"print","mode":"print"})", "c");
  EXPECT_EQ(Value(r).type, wire::SessionType::kPrint);
  r = ParseSpawnBody(
      R"({"task":"t","type":null,"mode":null,"preset":null,"cwd":null,"command":null,"args":null,
          "maxTurns":null,"env":null,"owner":null,"labels":null,"limits":null,"pty":null})",
      "c");
  wire::SpawnRequest want;
  want.task = "t";
  want.client = "c";
  EXPECT_EQ(Value(r), want);
  // A limit given as null is not set; an empty limits object is an empty (present) one.
  r = ParseSpawnBody(R"({"task":"t","limits":{"pidsMax":null,"wallSeconds":5}})", "c");
  EXPECT_EQ(Value(r).limits, (wire::SpawnLimits{.wall_seconds = 5}));
}

TEST(ParseSpawnBodyTest, LabelsAreNormalised) {
  const auto r =
      ParseSpawnBody(R"({"task":"t","labels":["\tB\n","b","A","a","  ","x\u00c9Y","B"]})", "c");
  // Trimmed and lower-cased as ASCII; first occurrence kept; empty dropped.
  EXPECT_EQ(Value(r).labels, (std::vector<std::string>{"b", "a", "x\xC3\x89y"}));
  // 64 bytes after trimming is fine.
  const std::string label64(64, 'l');
  EXPECT_EQ(
      Value(ParseSpawnBody(R"({"task":"t","labels":["  )" + label64 + R"(  "]})", "c")).labels,
      std::vector<std::string>{label64});
  // 32 distinct labels (duplicates do not count) are fine.
  std::string many = R"({"task":"t","labels":[)";
  for (int i = 0; i < 32; ++i)
    many += "\"l" + std::to_string(i) + "\",\"L" + std::to_string(i) + "\",";
  many += R"("l0"]})";
  EXPECT_EQ(Value(ParseSpawnBody(many, "c")).labels.size(), 32u);
}

struct SpawnErrorCase {
  std::string body;
  int status;
  std::string_view field;
  std::string_view message;  // a substring of the message; empty: not checked
};

TEST(ParseSpawnBodyTest, EveryErrorNamesItsField) {
  const std::string label65(65, 'l');
  std::string labels33 = R"({"task":"t","labels":[)";
  for (int i = 0; i < 33; ++i) labels33 += (i ? ",\"l" : "\"l") + std::to_string(i) + "\"";
  labels33 += "]}";
  std::string args257 = R"({"task":"t","args":[)";
  for (int i = 0; i < 257; ++i) args257 += i ? ",\"a\"" : "\"a\"";
  args257 += "]}";
  std::string env129 = R"({"task":"t","env":{)";
  for (int i = 0; i < 129; ++i) env129 += (i ? ",\"E" : "\"E") + std::to_string(i) + "\":\"v\"";
  env129 += "}}";

  const std::vector<SpawnErrorCase> cases = {
      // The body itself.
      {"", 400, "", "not valid JSON"},
      {"{", 400, "", "not valid JSON"},
      {R"({"task":"a","task":"b"})", 400, "", "duplicate key"},
      {"{\"task\":\"\xFF\"}", 400, "", "not valid JSON"},
      {"[]", 400, "", "body must be a JSON object"},
      {R"("task")", 400, "", "body must be a JSON object"},
      {"null", 400, "", "body must be a JSON object"},
      // task
      {"{}", 400, "/task", "task is required"},
      {R"({"task":null})", 400, "/task", "task is required"},
      {R"({"task":""})", 400, "/task", "task is required"},
      // A task of the wrong type says what it must be (not "required": it was given).
      {R"({"task":42})", 400, "/task", "task must be a string"},
      {R"({"task":["ls"]})", 400, "/task", "task must be a string"},
      {R"({"task":{"cmd":"ls"}})", 400, "/task", "task must be a string"},
      {R"({"task":"a\u0000b"})", 400, "/task", "NUL"},
      // type / mode / preset
      {R"({"task":"t","type":"shell"})", 400, "/type", "exec, print, interactive"},
      {R"({"task":"t","type":1})", 400, "/type", ""},
      {R"({"task":"t","mode":"EXEC"})", 400, "/mode", ""},
      {R"({"task":"t","type":"print","mode":"exec"})", 400, "/mode", "disagree"},
      {R"({"task":"t","preset":"claude"})", 400, "/preset",
       "preset is only valid for print and interactive sessions"},
      {R"({"task":"t","type":"exec","preset":"claude"})", 400, "/preset", "only valid"},
      {R"({"task":"t","type":"print","preset":"Claude"})", 400, "/preset", ""},
      {R"({"task":"t","type":"print","preset":"-claude"})", 400, "/preset", ""},
      {R"({"task":"t","type":"print","preset":""})", 400, "/preset", ""},
      {R"({"task":"t","type":"print","preset":"a/b"})", 400, "/preset", ""},
      {R"({"task":"t","type":"print","preset":7})", 400, "/preset", ""},
      {R"({"task":"t","type":"print","preset":")" + std::string(65, 'a') + "\"}", 400, "/preset",
       ""},
      // cwd
      {R"({"task":"t","cwd":""})", 400, "/cwd", ""},
      {R"({"task":"t","cwd":5})", 400, "/cwd", ""},
      {R"({"task":"t","cwd":"/a\u0000"})", 400, "/cwd", "NUL"},
      {R"({"task":"t","cwd":"/)" + std::string(4095, 'd') + "\"}", 400, "/cwd", "4095"},
      // command, args
      {R"({"task":"t","command":""})", 400, "/command", ""},
      {R"({"task":"t","command":[]})", 400, "/command", ""},
      {R"({"task":"t","command":")" + std::string(4097, 'c') + "\"}", 400, "/command", ""},
      {R"({"task":"t","args":"--x"})", 400, "/args", ""},
      {R"({"task":"t","args":["a","b","c",4]})", 400, "/args/3", ""},
      {R"({"task":"t","args":["a",null]})", 400, "/args/1", ""},
      {R"({"task":"t","args":["a\u0000"]})", 400, "/args/0", "NUL"},
      {args257, 400, "/args", "256"},
      // maxTurns
      {R"({"task":"t","maxTurns":0})", 400, "/maxTurns", "1 to 10000"},
      {R"({"task":"t","maxTurns":10001})", 400, "/maxTurns", ""},
      {R"({"task":"t","maxTurns":-1})", 400, "/maxTurns", ""},
      {R"({"task":"t","maxTurns":2.5})", 400, "/maxTurns", ""},
      {R"({"task":"t","maxTurns":"5"})", 400, "/maxTurns", ""},
      // env
      {R"({"task":"t","env":[]})", 400, "/env", ""},
      {R"({"task":"t","env":{"1X":"v"}})", 400, "/env/1X", ""},
      {R"({"task":"t","env":{"A-B":"v"}})", 400, "/env/A-B", ""},
      {R"({"task":"t","env":{"":"v"}})", 400, "/env/", ""},
      {R"({"task":"t","env":{"A/B":"v"}})", 400, "/env/A~1B", ""},
      {R"({"task":"t","env":{"OK":1}})", 400, "/env/OK", ""},
      {R"({"task":"t","env":{"OK":null}})", 400, "/env/OK", ""},
      {R"({"task":"t","env":{"OK":"a\u0000"}})", 400, "/env/OK", "NUL"},
      {env129, 400, "/env", "128"},
      // owner
      {R"({"task":"t","owner":1})", 400, "/owner", ""},
      {R"({"task":"t","owner":"a\nb"})", 400, "/owner", "control"},
      {R"({"task":"t","owner":")" + std::string(257, 'o') + "\"}", 400, "/owner", "256"},
      // labels
      {R"({"task":"t","labels":"a"})", 400, "/labels", ""},
      {R"({"task":"t","labels":["a","b",3]})", 400, "/labels/2", ""},
      {R"({"task":"t","labels":["a",")" + label65 + "\"]}", 400, "/labels/1", "64"},
      {R"({"task":"t","labels":["a\u0001b"]})", 400, "/labels/0", "control"},
      {labels33, 400, "/labels/32", "32"},
      // limits
      {R"({"task":"t","limits":5})", 400, "/limits", ""},
      {R"({"task":"t","limits":{"memory_max_bytes":1}})", 400, "/limits/memory_max_bytes",
       "unknown limit"},
      {R"({"task":"t","limits":{"pidsMax":-1}})", 400, "/limits/pidsMax", ""},
      {R"({"task":"t","limits":{"wallSeconds":1.5}})", 400, "/limits/wallSeconds", ""},
      {R"({"task":"t","limits":{"idleSeconds":"60"}})", 400, "/limits/idleSeconds", ""},
      {R"({"task":"t","limits":{"memoryMaxBytes":18446744073709551616}})", 400,
       "/limits/memoryMaxBytes", ""},
      // pty
      {R"({"task":"t","pty":[24,80]})", 400, "/pty", ""},
      {R"({"task":"t","pty":{"rows":24}})", 400, "/pty/cols", ""},
      {R"({"task":"t","pty":{"rows":0,"cols":80}})", 400, "/pty/rows", "1 to 1000"},
      {R"({"task":"t","pty":{"rows":24,"cols":1001}})", 400, "/pty/cols", ""},
      {R"({"task":"t","pty":{"rows":24,"cols":80,"x":1}})", 400, "/pty/x", ""},
  };
  for (const SpawnErrorCase& c : cases) {
    const auto r = ParseSpawnBody(c.body, "c");
    const std::string what = c.body.substr(0, 80);
    ASSERT_EQ(r.index(), 1u) << what;
    const ApiError& e = std::get<1>(r);
    EXPECT_EQ(e.status, c.status) << what;
    EXPECT_EQ(e.code, "bad_request") << what;
    EXPECT_EQ(e.field, c.field) << what << " -> " << e.message;
    EXPECT_NE(e.message.find(c.message), std::string::npos) << what << " -> " << e.message;
  }
}

TEST(ParseSpawnBodyTest, TaskSizeLimits) {
  // Exactly the cap (1 MiB) is accepted: the spawn travels to the supervisor in parts.
  const std::string max_task(kMaxSpawnTaskBytes, 'a');
  EXPECT_EQ(kMaxSpawnTaskBytes, 1024u * 1024);
  EXPECT_EQ(Value(ParseSpawnBody(R"({"task":")" + max_task + "\"}", "c")).task, max_task);

  // One byte more is 413 naming the task and the limit.
  ApiError e = Err(ParseSpawnBody(R"({"task":")" + max_task + "a\"}", "c"));
  EXPECT_EQ(e.status, 413);
  EXPECT_EQ(e.code, "too_large");
  EXPECT_EQ(e.field, "/task");
  EXPECT_NE(e.message.find("1048576"), std::string::npos) << e.message;

  // Control characters take 6 bytes each once JSON-escaped: the longest such task still fits
  // one control message (kMaxMessageBytes).
  std::string escaped_task;
  for (size_t i = 0; i < kMaxSpawnTaskBytes; ++i) escaped_task += "\\u0001";
  EXPECT_EQ(Value(ParseSpawnBody(R"({"task":")" + escaped_task + "\"}", "c")).task.size(),
            kMaxSpawnTaskBytes);

  // A small task with args or env that do not fit one message: the largest member is named.
  const std::string arg(wire::kMaxArgBytes, 'x');
  std::string args;
  for (size_t i = 0; i < wire::kMaxArgs; ++i) args += (i == 0 ? "\"" : ",\"") + arg + "\"";
  e = Err(ParseSpawnBody(R"({"task":"t","args":[)" + args + "]}", "c"));
  EXPECT_EQ(e.status, 413);
  EXPECT_EQ(e.field, "/args");
  EXPECT_NE(e.message.find(std::to_string(wire::kMaxMessageBytes)), std::string::npos) << e.message;
  std::string value;
  for (size_t i = 0; i < wire::kMaxEnvValueBytes; ++i) value += "\\u0001";
  std::string env;
  for (size_t i = 0; i < wire::kMaxEnvEntries; ++i) {
    env += (i == 0 ? "\"A" : ",\"A") + std::to_string(i) + "\":\"" + value + "\"";
  }
  e = Err(ParseSpawnBody(R"({"task":"t","env":{)" + env + "}}", "c"));
  EXPECT_EQ(e.status, 413);
  EXPECT_EQ(e.field, "/env");
}

// ---- Small bodies.

TEST(ParseInputBodyTest, Shapes) {
  EXPECT_EQ(Value(ParseInputBody(R"({"input":"ls\n"})")), "ls\n");
  EXPECT_EQ(Value(ParseInputBody(R"({"input":"a\u0000b","extra":1})")), std::string("a\0b", 3));
  for (const std::string body :
       {R"({})", R"({"input":null})", R"({"input":5})", R"({"input":["x"]})", R"({"data":"x"})",
        R"({"input":""})"}) {  // empty: the original's 400 too (`if (!body.input)`)
    const ApiError e = Err(ParseInputBody(body));
    EXPECT_EQ(e.status, 400) << body;
    EXPECT_EQ(e.message, "input is required") << body;
    EXPECT_EQ(e.field, "/input") << body;
    EXPECT_EQ(e.ToJson(), R"({"error":"input is required","code":"bad_request","field":"/input"})");
  }
  EXPECT_EQ(Err(ParseInputBody("[]")).status, 400);
  EXPECT_EQ(Err(ParseInputBody("not json")).status, 400);
}

TEST(ParseResizeBodyTest, Shapes) {
  EXPECT_EQ(Value(ParseResizeBody(R"({"rows":50,"cols":200})")), (wire::PtySize{50, 200}));
  EXPECT_EQ(Value(ParseResizeBody(R"({"rows":1,"cols":1000})")), (wire::PtySize{1, 1000}));
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"cols":80})", "/rows"},
      {R"({"rows":24})", "/cols"},
      {R"({"rows":0,"cols":80})", "/rows"},
      {R"({"rows":24,"cols":1001})", "/cols"},
      {R"({"rows":"24","cols":80})", "/rows"},
      {R"({"rows":24.0,"cols":80})", "/rows"},
      {R"({"rows":-24,"cols":80})", "/rows"},
  };
  for (const auto& [body, field] : cases) {
    const ApiError e = Err(ParseResizeBody(body));
    EXPECT_EQ(e.status, 400) << body;
    EXPECT_EQ(e.field, field) << body;
  }
}

TEST(ParseSignalTest, NamesAndNumbers) {
  struct Case {
    std::string_view text;
    std::optional<int32_t> want;
  };
  const std::vector<Case> cases = {
      {"TERM", SIGTERM},
      {"SIGTERM", SIGTERM},
      {"term", SIGTERM},
      {"sigTerm", SIGTERM},
      {"INT", SIGINT},
      {"KILL", 9},
      {"HUP", 1},
      {"USR1", SIGUSR1},
      {"WINCH", SIGWINCH},
      {"SIGSTKFLT", SIGSTKFLT},
      {"PWR", SIGPWR},
      {"SYS", SIGSYS},
      {"VTALRM", SIGVTALRM},
      {"IO", SIGIO},
      {"CONT", SIGCONT},
      {"STOP", SIGSTOP},
      {"1", 1},
      {"15", 15},
      {"64", 64},
      {"009", 9},
      {"0", std::nullopt},
      {"65", std::nullopt},
      {"-9", std::nullopt},
      {"+9", std::nullopt},
      {"", std::nullopt},
      {"SIG", std::nullopt},
      {"SIGSIGTERM", std::nullopt},
      {"SIG15", std::nullopt},
      {"TERM ", std::nullopt},
      {"RTMIN", std::nullopt},
      {"99999999999999999999999", std::nullopt},
      {"TER", std::nullopt},
  };
  for (const Case& c : cases) EXPECT_EQ(ParseSignal(c.text), c.want) << c.text;
}

TEST(ParseSignalBodyTest, Shapes) {
  EXPECT_EQ(Value(ParseSignalBody(R"({"signal":"TERM"})")), SIGTERM);
  EXPECT_EQ(Value(ParseSignalBody(R"({"signal":"SIGINT"})")), SIGINT);
  EXPECT_EQ(Value(ParseSignalBody(R"({"signal":9})")), 9);
  EXPECT_EQ(Value(ParseSignalBody(R"({"signal":"9"})")), 9);
  for (const std::string body :
       {R"({})", R"({"signal":null})", R"({"signal":0})", R"({"signal":65})", R"({"signal":-1})",
        R"({"signal":9.5})", R"({"signal":"BOGUS"})", R"({"signal":true})"}) {
    const ApiError e = Err(ParseSignalBody(body));
    EXPECT_EQ(e.status, 400) << body;
    EXPECT_EQ(e.field, "/signal") << body;
  }
}

// ---- WebSocket client messages.

TEST(ParseWsClientMessageTest, EveryType) {
  auto r = ParseWsClientMessage(R"({"type":"stdin","data":"echo hi\n"})");
  ASSERT_TRUE(std::holds_alternative<WsStdin>(Value(r)));
  EXPECT_EQ(std::get<WsStdin>(Value(r)).data, "echo hi\n");

  r = ParseWsClientMessage(R"({"type":"resize","rows":30,"cols":100})");
  ASSERT_TRUE(std::holds_alternative<WsResize>(Value(r)));
  EXPECT_EQ(std::get<WsResize>(Value(r)).size, (wire::PtySize{30, 100}));

  r = ParseWsClientMessage(R"({"type":"signal","signal":"INT"})");
  ASSERT_TRUE(std::holds_alternative<WsSignal>(Value(r)));
  EXPECT_EQ(std::get<WsSignal>(Value(r)).signal, SIGINT);

  r = ParseWsClientMessage(R"({"type":"close-stdin","extra":true})");
  EXPECT_TRUE(std::holds_alternative<WsCloseStdin>(Value(r)));
}

TEST(ParseWsClientMessageTest, ErrorsNameTheirField) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"type":"stdin"})", "/data"},
      {R"({"type":"stdin","data":1})", "/data"},
      {R"({"type":"resize","rows":30})", "/cols"},
      {R"({"type":"resize","rows":0,"cols":1})", "/rows"},
      {R"({"type":"signal"})", "/signal"},
      {R"({"type":"signal","signal":"NOPE"})", "/signal"},
      {R"({"type":"input","data":"x"})", "/type"},
      {R"({"type":"STDIN","data":"x"})", "/type"},
      {R"({"data":"x"})", "/type"},
      {R"({"type":1})", "/type"},
      {R"([])", ""},
      {R"(not json)", ""},
  };
  for (const auto& [text, field] : cases) {
    const ApiError e = Err(ParseWsClientMessage(text));
    EXPECT_EQ(e.status, 400) << text;
    EXPECT_EQ(e.code, "bad_request") << text;
    EXPECT_EQ(e.field, field) << text;
  }
}

// ---- Query strings.

wire::SessionInfo RunningInfo();

// ?status= filters by the public status (what `status` shows), ?state= by the exact state.
TEST(ParseStatusFilterTest, PublicStatusesAndExactStates) {
  using S = wire::SessionState;
  wire::SessionInfo killed_exec = RunningInfo();  // DELETE: "exited" 143, state killed
  killed_exec.state = S::kKilled;
  killed_exec.end = wire::EndRecord{};
  killed_exec.end->reason = wire::EndReason::kKilledByRequest;
  killed_exec.end->signal = SIGTERM;
  wire::SessionInfo killed_tty = killed_exec;  // an interactive one stays "killed"
  killed_tty.type = wire::SessionType::kInteractive;
  wire::SessionInfo starting = RunningInfo();
  starting.state = S::kStarting;
  wire::SessionInfo failed = RunningInfo();
  failed.state = S::kFailed;
  failed.end = wire::EndRecord{};
  failed.end->reason = wire::EndReason::kSpawnError;
  const std::vector<const wire::SessionInfo*> all = {&killed_exec, &killed_tty, &starting, &failed};
  const auto matching = [&](const StatusFilter& f) {
    std::vector<const wire::SessionInfo*> out;
    for (const auto* info : all) {
      if (f.Matches(*info)) out.push_back(info);
    }
    return out;
  };
  using V = std::vector<const wire::SessionInfo*>;
  EXPECT_EQ(matching(Value(ParseStatusFilter("running"))), (V{&starting}));
  EXPECT_EQ(matching(Value(ParseStatusFilter("exited"))), (V{&killed_exec, &failed}));
  EXPECT_EQ(matching(Value(ParseStatusFilter("killed"))), (V{&killed_tty}));
  EXPECT_EQ(matching(Value(ParseStatusFilter("starting"))), (V{&starting}));
  EXPECT_EQ(matching(Value(ParseStatusFilter("failed"))), (V{&failed}));
  EXPECT_EQ(Value(ParseStatusFilter("exited")).state, std::nullopt);
  EXPECT_EQ(Value(ParseStatusFilter("failed")).state, S::kFailed);
  EXPECT_EQ(matching(Value(ParseStateFilter("killed"))), (V{&killed_exec, &killed_tty}));
  EXPECT_EQ(matching(Value(ParseStateFilter("running"))), V{});
  EXPECT_EQ(Value(ParseStateFilter("exited")).state, S::kExited);
  for (std::string_view bad : {"", "Running", "done", "running,exited"}) {
    const ApiError e = Err(ParseStatusFilter(bad));
    EXPECT_EQ(e.status, 400) << bad;
    EXPECT_EQ(e.field, "?status") << bad;
    EXPECT_EQ(Err(ParseStateFilter(bad)).field, "?state") << bad;
  }
}

TEST(ParseUnsignedTest, Table) {
  EXPECT_EQ(ParseUnsigned("0"), 0u);
  EXPECT_EQ(ParseUnsigned("42"), 42u);
  EXPECT_EQ(ParseUnsigned("007"), 7u);
  EXPECT_EQ(ParseUnsigned("18446744073709551615"), UINT64_MAX);
  EXPECT_EQ(ParseUnsigned("00000000000000000001"), 1u);            // 20 characters
  EXPECT_EQ(ParseUnsigned("18446744073709551616"), std::nullopt);  // overflow
  EXPECT_EQ(ParseUnsigned("99999999999999999999"), std::nullopt);
  EXPECT_EQ(ParseUnsigned("000000000000000000001"), std::nullopt);  // 21 characters
  for (std::string_view bad : {"", "-1", "+1", " 1", "1 ", "1e3", "0x10", "1.0", "abc"}) {
    EXPECT_EQ(ParseUnsigned(bad), std::nullopt) << bad;
  }
}

// ---- Responses.

TEST(IsoTimeTest, Table) {
  EXPECT_EQ(IsoTime(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(IsoTime(1), "1970-01-01T00:00:00.001Z");
  EXPECT_EQ(IsoTime(1732217504759), "2024-11-21T19:31:44.759Z");
  EXPECT_EQ(IsoTime(951782400000), "2000-02-29T00:00:00.000Z");
  EXPECT_EQ(IsoTime(4102444799999), "2099-12-31T23:59:59.999Z");
  EXPECT_EQ(IsoTime(253402300799999), "9999-12-31T23:59:59.999Z");
  const std::string far = IsoTime(UINT64_MAX);  // no crash, still shaped like a time
  EXPECT_TRUE(far.ends_with(".615Z")) << far;
}

TEST(IsoTimeTest, AgreesWithGmtime) {
  for (uint64_t ms = 0; ms < 4102444800000ULL; ms += 86399999ULL * 7 + 12345) {
    const auto seconds = static_cast<time_t>(ms / 1000);
    struct tm tm {};
    ASSERT_NE(gmtime_r(&seconds, &tm), nullptr);
    char want[80];
    std::snprintf(want, sizeof(want), "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<unsigned>(ms % 1000));
    ASSERT_EQ(IsoTime(ms), want) << ms;
  }
}

wire::SessionInfo RunningInfo() {
  wire::SessionInfo info;
  info.id = "s-01JD";
  info.state = wire::SessionState::kRunning;
  info.type = wire::SessionType::kExec;
  info.task_preview = "echo hi";
  info.cwd = "/srv/monkeyproof/workspaces/x";
  info.command = "/bin/sh -lc echo hi";
  info.pid = 21908;
  info.created_at_ms = 1732217504759;
  info.owner = "me";
  info.labels = {"a", "b"};
  info.output_bytes = 12;
  info.output_lines = 2;
  return info;
}

const std::vector<std::string> kOriginalKeys = {
    "id",  "task",      "taskPreview", "cwd",         "command",   "type",  "status", "exitCode",
    "pid", "createdAt", "endedAt",     "outputLines", "wsClients", "owner", "labels"};
const std::vector<std::string> kOurKeys = {
    "state",     "preset", "createdBy", "outputBytes", "supervisorRestarts",
    "endReason", "signal", "pty",       "resources",   "egress"};

TEST(SessionInfoJsonTest, RunningSessionHasTheOriginalsKeysThenOurs) {
  const std::string text = SessionInfoJson(RunningInfo(), 3);
  EXPECT_EQ(
      text,
      R"({"id":"s-01JD","task":"echo hi","taskPreview":"echo hi",)"
      R"("cwd":"/srv/monkeyproof/workspaces/x","command":"/bin/sh -lc echo hi",)"
      R"("type":"exec","status":"running","exitCode":null,"pid":21908,)"
      R"("createdAt":"2024-11-21T19:31:44.759Z","endedAt":null,"outputLines":2,)"
      R"("wsClients":3,"owner":"me","labels":["a","b"],"state":"running","preset":null,)"
      R"("createdBy":null,"outputBytes":12,"supervisorRestarts":0,"endReason":null,"signal":null,)"
      R"("pty":null,"resources":null,"egress":null})");
  const ojson j = ojson::parse(text);
  std::vector<std::string> want = kOriginalKeys;
  want.insert(want.end(), kOurKeys.begin(), kOurKeys.end());
  EXPECT_EQ(Keys(j), want);
}

TEST(SessionInfoJsonTest, EndedSession) {
  wire::SessionInfo info = RunningInfo();
  info.state = wire::SessionState::kKilled;
  info.type = wire::SessionType::kInteractive;
  info.preset = "claude-interactive";
  info.pty = wire::PtySize{40, 120};
  info.pid.reset();
  info.end = wire::EndRecord{};
  info.end->reason = wire::EndReason::kTimeoutWall;
  info.end->signal = 9;
  info.end->ended_at_ms = 1732217505759;
  info.end->detail = "wall deadline of 1 s";
  info.end->memory_peak_bytes = 1048576;
  info.end->pids_peak = 3;
  const ojson j = ojson::parse(SessionInfoJson(info, 0));
  std::vector<std::string> want = kOriginalKeys;
  want.insert(want.end(), {"state", "preset", "createdBy", "outputBytes", "supervisorRestarts",
                           "endReason", "endDetail", "signal", "pty", "resources", "egress"});
  EXPECT_EQ(Keys(j), want);
  // Killed by our deadline, not by DELETE: the original would have seen its process end.
  EXPECT_EQ(j["status"], "exited");
  EXPECT_EQ(j["state"], "killed");
  EXPECT_EQ(j["type"], "interactive");
  EXPECT_EQ(j["exitCode"], 137);
  EXPECT_TRUE(j["pid"].is_null());
  EXPECT_EQ(j["endedAt"], "2024-11-21T19:31:45.759Z");
  EXPECT_EQ(j["preset"], "claude-interactive");
  EXPECT_EQ(j["endReason"], "timeout_wall");
  EXPECT_EQ(j["endDetail"], "wall deadline of 1 s");
  EXPECT_EQ(j["signal"], 9);
  EXPECT_EQ(j["pty"], (ojson{{"rows", 40}, {"cols", 120}}));
  EXPECT_EQ(j["resources"].dump(),
            R"({"memoryPeakBytes":1048576,"cpuUsageUsec":null,"pidsPeak":3})");
}

// An allowlist session's egress counters (issue 14), camelCase as the rest.
TEST(SessionInfoJsonTest, EgressCountersOfAnAllowlistSession) {
  wire::SessionInfo info = RunningInfo();
  info.egress = wire::EgressCounters{1, 2, 3, 4, 5, 6, 7};
  const ojson j = ojson::parse(SessionInfoJson(info, 0));
  EXPECT_EQ(j["egress"].dump(),
            R"({"allowed":1,"denied":2,"bytesUp":3,"bytesDown":4,"dnsAnswered":5,)"
            R"("dnsRefused":6,"gatewayRequests":7})");
}

TEST(SessionInfoJsonTest, PublicStatusOfEveryState) {
  using S = wire::SessionState;
  const std::vector<std::pair<S, std::string_view>> cases = {
      {S::kStarting, "running"}, {S::kRunning, "running"}, {S::kExited, "exited"},
      {S::kFailed, "exited"},    {S::kKilled, "killed"},
  };
  for (const auto& [state, status] : cases) {
    wire::SessionInfo info = RunningInfo();
    info.state = state;
    EXPECT_EQ(PublicStatus(info), status);
    const ojson j = ojson::parse(SessionInfoJson(info, 0));
    EXPECT_EQ(j["status"], status);
    EXPECT_EQ(j["state"], wire::ToString(state));
  }
}

// After DELETE the original read "killed" until the process was gone, then "exited" with the
// code Bun reported, 128 + signal; its interactive (tmux) sessions stayed "killed", code null.
// Ours keeps the exact outcome in state, endReason and signal.
TEST(SessionInfoJsonTest, StatusAndExitCodeAsTheOriginalReportedThem) {
  struct Case {
    wire::SessionType type;
    wire::SessionState state;
    wire::EndReason reason;
    std::optional<int32_t> code;
    std::optional<int32_t> signal;
    std::string_view status;
    std::optional<int64_t> exit_code;
  };
  using T = wire::SessionType;
  using S = wire::SessionState;
  using R = wire::EndReason;
  const std::vector<Case> cases = {
      {T::kExec, S::kKilled, R::kKilledByRequest, {}, SIGTERM, "exited", 143},
      {T::kPrint, S::kKilled, R::kKilledByRequest, {}, SIGKILL, "exited", 137},
      {T::kExec, S::kKilled, R::kKilledByRequest, 143, {}, "exited", 143},  // init's code
      {T::kInteractive, S::kKilled, R::kKilledByRequest, {}, SIGTERM, "killed", {}},
      {T::kInteractive, S::kExited, R::kExit, 0, {}, "exited", 0},
      {T::kExec, S::kExited, R::kExit, {}, SIGSEGV, "exited", 128 + SIGSEGV},  // its own crash
      {T::kExec, S::kKilled, R::kOom, {}, SIGKILL, "exited", 137},
      {T::kExec, S::kKilled, R::kKilledByRequest, {}, {}, "killed", {}},  // killed while starting
      {T::kExec, S::kFailed, R::kSpawnError, {}, {}, "exited", {}},
  };
  for (const Case& c : cases) {
    wire::SessionInfo info = RunningInfo();
    info.type = c.type;
    info.state = c.state;
    info.end = wire::EndRecord{};
    info.end->reason = c.reason;
    info.end->exit_code = c.code;
    info.end->signal = c.signal;
    const std::string what = std::string(wire::ToString(c.type)) + " " +
                             std::string(wire::ToString(c.reason)) + " " +
                             std::to_string(c.signal.value_or(0));
    EXPECT_EQ(PublicStatus(info), c.status) << what;
    EXPECT_EQ(PublicExitCode(info), c.exit_code) << what;
    const ojson j = ojson::parse(SessionInfoJson(info, 0));
    EXPECT_EQ(j["status"], c.status) << what;
    EXPECT_EQ(j["exitCode"], c.exit_code ? ojson(*c.exit_code) : ojson(nullptr)) << what;
    EXPECT_EQ(j["state"], wire::ToString(c.state)) << what;
    EXPECT_EQ(j["endReason"], wire::ToString(c.reason)) << what;
    EXPECT_EQ(j["signal"], c.signal ? ojson(*c.signal) : ojson(nullptr)) << what;
    const ojson catchup = ojson::parse(WsCatchupJson(info, "", 0, 0));
    EXPECT_EQ(catchup["status"], c.status) << what;
    EXPECT_EQ(catchup["exitCode"], j["exitCode"]) << what;
  }
}

// The original stored `opts.owner || null`: no owner (or an empty one) is null.
TEST(SessionInfoJsonTest, NoOwnerIsNull) {
  wire::SessionInfo info = RunningInfo();
  info.owner.clear();
  const ojson j = ojson::parse(SessionInfoJson(info, 0));
  ASSERT_TRUE(j.contains("owner"));
  EXPECT_TRUE(j["owner"].is_null());
  info.owner = "ci";
  EXPECT_EQ(ojson::parse(SessionInfoJson(info, 0))["owner"], "ci");
}

TEST(SessionInfoJsonTest, ExitedSessionWithCodeAndNoDetail) {
  wire::SessionInfo info = RunningInfo();
  info.state = wire::SessionState::kExited;
  info.end = wire::EndRecord{};
  info.end->exit_code = 3;
  info.end->ended_at_ms = info.created_at_ms + 10;
  info.end->cpu_usage_usec = 1500;
  const ojson j = ojson::parse(SessionInfoJson(info, 0));
  EXPECT_EQ(j["exitCode"], 3);
  EXPECT_TRUE(j["signal"].is_null());
  EXPECT_FALSE(j.contains("endDetail"));
  EXPECT_EQ(j["endReason"], "exit");
  EXPECT_EQ(j["resources"].dump(),
            R"({"memoryPeakBytes":null,"cpuUsageUsec":1500,"pidsPeak":null})");
}

TEST(SessionInfoJsonTest, InvalidUtf8AndTaskPreview) {
  wire::SessionInfo info = RunningInfo();
  // 600 two-byte characters, then a character cut by the 2048-byte preview.
  std::string task;
  for (int i = 0; i < 600; ++i) task += "\xC3\xA9";
  task += "\xE2\x82";
  info.task_preview = task;
  info.cwd = "/srv/\xFF";
  info.command = "run \xC0\xAF";
  const std::string text = SessionInfoJson(info, 0);
  const ojson j = ojson::parse(text);  // throws on invalid UTF-8
  std::string first500;
  for (int i = 0; i < 500; ++i) first500 += "\xC3\xA9";
  EXPECT_EQ(j["task"], task.substr(0, 1200));  // the cut character is dropped
  EXPECT_EQ(j["taskPreview"], first500);
  EXPECT_EQ(j["cwd"], "/srv/\xEF\xBF\xBD");
  EXPECT_EQ(j["command"], "run \xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST(SessionDetailJsonTest, RecentOutputMarksStderrLines) {
  wire::OutputRead recent;
  const std::string out = "out1\nerr1\nerr2";
  const std::string out2 = "-cont\nout2\n";
  const std::string err2 = "x\n\ny";
  recent.chunks = {{wire::OutputStream::kStdout, 0, 5},
                   {wire::OutputStream::kStderr, 5, 9},
                   {wire::OutputStream::kStdout, 14, 11},
                   {wire::OutputStream::kStderr, 25, 4}};
  const std::string all = out + out2 + err2;
  recent.data.assign(all.begin(), all.end());
  const ojson j = ojson::parse(SessionDetailJson(RunningInfo(), 1, recent, true));
  EXPECT_EQ(j["recentOutput"],
            "out1\n[stderr] err1\n[stderr] err2-cont\nout2\n[stderr] x\n[stderr] \n[stderr] y");
  EXPECT_EQ(j["transcriptPath"], "/sessions/s-01JD/transcript");
  std::vector<std::string> want = kOriginalKeys;
  want.insert(want.end(), kOurKeys.begin(), kOurKeys.end());
  want.insert(want.end(), {"recentOutput", "transcriptPath"});
  EXPECT_EQ(Keys(j), want);
}

TEST(SessionDetailJsonTest, StartsMidLineAndInvalidBytes) {
  wire::OutputRead recent;
  const std::string data = "tail\nnext\xFF\n";
  recent.chunks = {{wire::OutputStream::kStderr, 100, static_cast<uint32_t>(data.size())}};
  recent.data.assign(data.begin(), data.end());
  EXPECT_EQ(ojson::parse(SessionDetailJson(RunningInfo(), 0, recent, false))["recentOutput"],
            "tail\n[stderr] next\xEF\xBF\xBD\n");
  EXPECT_EQ(ojson::parse(SessionDetailJson(RunningInfo(), 0, recent, true))["recentOutput"],
            "[stderr] tail\n[stderr] next\xEF\xBF\xBD\n");
  // PTY output is never marked.
  recent.chunks[0].stream = wire::OutputStream::kPty;
  EXPECT_EQ(ojson::parse(SessionDetailJson(RunningInfo(), 0, recent, true))["recentOutput"],
            "tail\nnext\xEF\xBF\xBD\n");
  // No output.
  EXPECT_EQ(ojson::parse(SessionDetailJson(RunningInfo(), 0, {}, true))["recentOutput"], "");
}

TEST(SessionListJsonTest, ArrayWithClients) {
  wire::SessionInfo second = RunningInfo();
  second.id = "s-2";
  const ojson j = ojson::parse(SessionListJson({RunningInfo(), second}, {4, 5}));
  ASSERT_TRUE(j.is_array());
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[0]["id"], "s-01JD");
  EXPECT_EQ(j[0]["wsClients"], 4);
  EXPECT_EQ(j[1]["id"], "s-2");
  EXPECT_EQ(j[1]["wsClients"], 5);
  EXPECT_EQ(SessionListJson({}, {}), "[]");
}

TEST(PolicyListJsonTest, Shape) {
  wire::PolicyList list;
  list.policies = {{"exec", wire::SessionType::kExec, "shell commands", false, 2147483648, 512, 200,
                    3600, 900, wire::NetworkMode::kNone},
                   {"claude", wire::SessionType::kPrint, "", true, 4294967296, 2048, std::nullopt,
                    14400, 0, wire::NetworkMode::kHost}};
  EXPECT_EQ(PolicyListJson(list),
            R"({"policies":[{"name":"exec","type":"exec","description":"shell commands",)"
            R"("bypassesAgentPermissions":false,"limits":{"memoryMaxBytes":2147483648,)"
            R"("pidsMax":512,"cpuMaxPercent":200,"wallSeconds":3600,"idleSeconds":900},)"
            R"("network":"none"},{"name":"claude","type":"print",)"
            R"("description":"","bypassesAgentPermissions":true,)"
            R"("limits":{"memoryMaxBytes":4294967296,"pidsMax":2048,"cpuMaxPercent":null,)"
            R"("wallSeconds":14400,"idleSeconds":0},"network":"host"}]})");
  EXPECT_EQ(PolicyListJson({}), R"({"policies":[]})");
}

// ---- WebSocket server messages.

TEST(WsJsonTest, Catchup) {
  EXPECT_EQ(WsCatchupJson(RunningInfo(), "hello\n", 0, 6),
            R"({"type":"catchup","id":"s-01JD","task":"echo hi","status":"running",)"
            R"("exitCode":null,"data":"hello\n","offset":0,"next":6})");
  wire::SessionInfo info = RunningInfo();
  info.state = wire::SessionState::kExited;
  info.end = wire::EndRecord{};
  info.end->exit_code = 0;
  const ojson j = ojson::parse(WsCatchupJson(info, "", 7, 7));
  EXPECT_EQ(j["status"], "exited");
  EXPECT_EQ(j["exitCode"], 0);
}

// The hand-written escaper writes exactly what nlohmann's dump writes, for every byte value
// at every position of the 8-byte blocks, and for random UTF-8 text.
TEST(WsJsonTest, OutputDataIsEscapedExactlyAsTheLibraryDoes) {
  auto library = [](const std::string& s) {
    const std::string quoted = ojson(s).dump();
    return quoted.substr(1, quoted.size() - 2);
  };
  auto ours = [](const std::string& s) {
    std::string out = "keep";
    AppendJsonStringBody(s, &out);
    return out.substr(4);
  };
  for (int c = 0; c < 0x80; ++c) {
    for (size_t at = 0; at < 17; ++at) {
      std::string s(17, 'x');
      s[at] = static_cast<char>(c);
      ASSERT_EQ(ours(s), library(s)) << "byte " << c << " at " << at;
    }
  }
  std::mt19937 rng(5);
  const std::vector<std::string> pieces = {"a",
                                           "\"",
                                           "\\",
                                           "\n",
                                           "\t",
                                           "\x01",
                                           "\x1f",
                                           "\x7f",
                                           "\xc3\xa9",
                                           "\xe2\x82\xac",
                                           "\xf0\x9f\x98\x80",
                                           "0123456789",
                                           " "};
  for (int round = 0; round < 2000; ++round) {
    std::string s;
    const int n = static_cast<int>(rng() % 64);
    for (int k = 0; k < n; ++k) s += pieces[rng() % pieces.size()];
    ASSERT_EQ(ours(s), library(s)) << s;
    const std::string message = WsOutputJson(wire::OutputStream::kStdout, s, 3, 3 + s.size());
    const ojson j = ojson::parse(message);
    ASSERT_EQ(j["data"].get<std::string>(), s);
    ASSERT_EQ(
        message,
        ojson({{"type", "stdout"}, {"data", s}, {"offset", 3}, {"next", 3 + s.size()}}).dump());
  }
}

TEST(WsJsonTest, OutputGapLaggedKilledError) {
  EXPECT_EQ(WsOutputJson(wire::OutputStream::kStdout, "a\"b", 5, 8),
            R"({"type":"stdout","data":"a\"b","offset":5,"next":8})");
  EXPECT_EQ(WsOutputJson(wire::OutputStream::kStderr, "e", 8, 9),
            R"({"type":"stderr","data":"e","offset":8,"next":9})");
  EXPECT_EQ(WsOutputJson(wire::OutputStream::kPty, "\x1b[0m", 0, 4),
            R"({"type":"stdout","data":"\u001b[0m","offset":0,"next":4})");
  EXPECT_EQ(WsGapJson(65536, 98304), R"({"type":"gap","from":65536,"to":98304})");
  EXPECT_EQ(WsLaggedJson(131072), R"({"type":"lagged","resumeFrom":131072})");
  EXPECT_EQ(WsKilledJson(), R"({"type":"killed"})");
  EXPECT_EQ(WsErrorJson(ApiError{409, "wrong_state", "no terminal", ""}),
            R"({"type":"error","error":"no terminal","code":"wrong_state"})");
  EXPECT_EQ(WsErrorJson(BadRequest("data is required", "/data")),
            R"({"type":"error","error":"data is required","code":"bad_request","field":"/data"})");
}

TEST(WsJsonTest, Exit) {
  wire::SessionInfo info = RunningInfo();
  wire::EndRecord end;
  end.exit_code = 0;
  end.ended_at_ms = info.created_at_ms + 1500;
  // duration: whole seconds rounded as the original's Math.round; durationMs: ours, exact.
  EXPECT_EQ(WsExitJson(info, end, 42),
            R"({"type":"exit","code":0,"duration":2,"durationMs":1500,"reason":"exit",)"
            R"("signal":null,"offset":42})");
  end.ended_at_ms = info.created_at_ms + 1499;
  EXPECT_EQ(ojson::parse(WsExitJson(info, end, 0))["duration"], 1);
  end.ended_at_ms = info.created_at_ms + 3600000;
  EXPECT_EQ(ojson::parse(WsExitJson(info, end, 0))["duration"], 3600);

  end = {};
  end.reason = wire::EndReason::kKilledByRequest;
  end.signal = 9;
  end.ended_at_ms = info.created_at_ms + 250;
  ojson j = ojson::parse(WsExitJson(info, end, 0));
  EXPECT_EQ(j["code"], 137);
  EXPECT_EQ(j["signal"], 9);
  EXPECT_EQ(j["reason"], "killed_by_request");
  EXPECT_EQ(j["duration"], 0);
  EXPECT_TRUE(j["duration"].is_number_integer());
  EXPECT_EQ(j["durationMs"], 250);

  end = {};
  end.reason = wire::EndReason::kSpawnError;
  end.ended_at_ms = info.created_at_ms - 5;  // a clock step: never negative
  j = ojson::parse(WsExitJson(info, end, 0));
  EXPECT_EQ(j["code"], -1);
  EXPECT_EQ(j["duration"], 0);
  EXPECT_EQ(j["durationMs"], 0);
  EXPECT_EQ(Keys(j), (std::vector<std::string>{"type", "code", "duration", "durationMs", "reason",
                                               "signal", "offset"}));
}

}  // namespace
}  // namespace mp::http
