// Typed control messages (src/common/messages.h) and the strict reader under them
// (src/common/json_strict.h): table tests of round trips and of every refusal, each checked
// for the JSON pointer and the reason it reports.
#include "common/messages.h"

#include <sys/socket.h>

#include <cerrno>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/json_strict.h"
#include "common/unique_fd.h"
#include "common/wire.h"

namespace mp::wire {
namespace {

constexpr char kSid[] = "s-01J9ZQ";

std::vector<uint8_t> Bytes(std::string_view s) { return {s.begin(), s.end()}; }

FrameView View(std::string_view json, std::span<const uint8_t> data = {}) {
  return FrameView{json, data};
}

// Encodes, re-frames and decodes `value`; returns the JSON text that crossed the wire.
template <typename T>
std::string ExpectRoundTrip(const T& value, Result<std::vector<uint8_t>> (*encode)(const T&),
                            Result<T> (*decode)(const FrameView&)) {
  auto frame = encode(value);
  EXPECT_TRUE(frame) << frame.error().ToString();
  if (!frame) return {};
  auto view = DecodeFrame(*frame);
  EXPECT_TRUE(view) << view.error().ToString();
  if (!view) return {};
  auto back = decode(*view);
  EXPECT_TRUE(back) << back.error().ToString() << "\n" << view->json;
  if (back) {
    EXPECT_TRUE(*back == value) << view->json;
  }
  return std::string(view->json);
}

Result<Request> DecodeRequestNoDetail(const FrameView& f) { return DecodeRequest(f); }

std::string RoundTripRequest(const Request& r) {
  return ExpectRoundTrip<Request>(r, &EncodeRequest, &DecodeRequestNoDetail);
}

SpawnRequest FullSpawn() {
  SpawnRequest s;
  s.task = "fix the flaky test in tests/unit\nthen run ctest";
  s.type = SessionType::kPrint;
  s.preset = "claude-sonnet";
  s.command = "/usr/local/bin/claude";
  s.args = std::vector<std::string>{"--print", "", "--model", "sonnet"};
  s.cwd = "/srv/projects/x";
  s.env = {{"LANG", "C.UTF-8"}, {"_X1", "a=b"}};
  s.owner = "ci-bot";
  s.labels = {"nightly", "repo:x"};
  s.max_turns = 12;
  s.limits = SpawnLimits{536870912, 0, 64, 250, 600, 60};
  s.pty = PtySize{40, 120};
  s.client = "token:orchestrator@10.0.0.7";
  s.cwd_within = {"/srv/projects/x", "/srv/projects/y"};
  return s;
}

EndRecord FullEnd() {
  EndRecord e;
  e.reason = EndReason::kTimeoutWall;
  e.signal = 9;
  e.ended_at_ms = 1732217504759;
  e.detail = "wall deadline of 600 s";
  e.memory_peak_bytes = 123456789;
  e.cpu_usage_usec = 4200000;
  e.pids_peak = 17;
  e.output_throttled_ms = 29400;
  return e;
}

SessionInfo FullInfo() {
  SessionInfo s;
  s.id = kSid;
  s.state = SessionState::kKilled;
  s.type = SessionType::kInteractive;
  s.preset = "claude-interactive";
  s.task_preview = "refactor";
  s.cwd = "/srv/projects/x";
  s.command = "claude --permission-mode bypassPermissions refactor";
  s.pid = 21908;
  s.created_at_ms = 1732217404759;
  s.owner = "me";
  s.labels = {"a", "b"};
  s.output_bytes = 65536;
  s.pty = PtySize{24, 80};
  s.end = FullEnd();
  return s;
}

// ---- Requests.

TEST(RequestTest, EveryRequestTypeRoundTrips) {
  const std::vector<Request> requests = {
      {0, HelloRequest{1, "monkeyproof-api/0.1.0"}},
      {1, FullSpawn()},
      {2, SpawnRequest{.task = "ls", .client = "c"}},
      {3, ListRequest{"me", "nightly", SessionState::kRunning, kSid, 100}},
      {4, ListRequest{}},
      {5, GetRequest{kSid}},
      {6, KillRequest{kSid}},
      {7, SignalRequest{kSid, 15}},
      {8, StdinRequest{kSid, Bytes(std::string("y\n\0\xff", 4))}},
      {9, StdinRequest{kSid, {}}},
      {10, CloseStdinRequest{kSid}},
      {11, ResizeRequest{kSid, PtySize{50, 200}}},
      {12, SubscribeRequest{kSid, 4096}},
      {13, SubscribeRequest{kSid, std::nullopt}},
      {14, UnsubscribeRequest{kSid}},
      {15, ReadOutputRequest{kSid, 100, 512}},
      {16, PoliciesRequest{}},
      {17, PoliciesRequest{"codex-worker"}},
      {UINT64_MAX, HealthRequest{}},
      {18, AuditRequest{AuditAction::kTokenRevoke, "admin", "0123456789abcdef", "api:::1"}},
  };
  std::vector<bool> seen(std::variant_size_v<RequestBody>);
  for (const Request& r : requests) {
    SCOPED_TRACE(std::string(ToString(r.type())));
    const std::string json = RoundTripRequest(r);
    EXPECT_NE(json.find("\"type\":\"" + std::string(ToString(r.type())) + "\""), std::string::npos)
        << json;
    seen[r.body.index()] = true;
  }
  for (size_t i = 0; i < seen.size(); ++i) EXPECT_TRUE(seen[i]) << "untested alternative " << i;
}

TEST(RequestTest, WireShapes) {
  EXPECT_EQ(RoundTripRequest({0, HelloRequest{1, "api"}}),
            R"({"client":"api","proto":1,"type":"hello"})");  // no id on hello
  EXPECT_EQ(RoundTripRequest({7, GetRequest{kSid}}),
            R"({"id":7,"session":"s-01J9ZQ","type":"get"})");
  EXPECT_EQ(RoundTripRequest({9, ReadOutputRequest{kSid, 5}}),
            R"({"id":9,"limit":61440,"session":"s-01J9ZQ","since":5,"type":"read_output"})");
  const std::string spawn = RoundTripRequest({1, FullSpawn()});
  EXPECT_NE(spawn.find(R"("session_type":"print")"), std::string::npos) << spawn;
  EXPECT_NE(spawn.find(R"("limits":{"cpu_max_percent":250,"idle_seconds":60,)"
                       R"("memory_max_bytes":536870912,"memory_swap_max_bytes":0,)"),
            std::string::npos)
      << spawn;
}

TEST(RequestTest, StdinBytesTravelInTheDataTail) {
  const std::vector<uint8_t> bytes = Bytes(std::string("\x00\x01\xfe\xff", 4));
  auto frame = EncodeRequest({3, StdinRequest{kSid, bytes}});
  ASSERT_TRUE(frame);
  auto view = DecodeFrame(*frame);
  ASSERT_TRUE(view);
  EXPECT_EQ(view->json, R"({"id":3,"session":"s-01J9ZQ","type":"stdin"})");
  EXPECT_EQ(std::vector<uint8_t>(view->data.begin(), view->data.end()), bytes);
}

TEST(RequestTest, DefaultsWhenOptionalMembersAreAbsent) {
  auto r = DecodeRequest(View(R"({"id":1,"type":"spawn","task":"t","client":"c"})"));
  ASSERT_TRUE(r) << r.error().ToString();
  const auto& s = std::get<SpawnRequest>(r->body);
  EXPECT_EQ(s.type, SessionType::kExec);
  EXPECT_FALSE(s.preset || s.command || s.args || s.cwd || s.max_turns || s.limits || s.pty);
  EXPECT_TRUE(s.env.empty() && s.labels.empty() && s.owner.empty());

  // Empty args are not absent args: `COMMAND TASK` against `COMMAND -lc TASK`.
  auto empty = DecodeRequest(View(R"({"id":1,"type":"spawn","task":"t","client":"c","args":[]})"));
  ASSERT_TRUE(empty) << empty.error().ToString();
  ASSERT_TRUE(std::get<SpawnRequest>(empty->body).args.has_value());
  EXPECT_TRUE(std::get<SpawnRequest>(empty->body).args->empty());
  // A relative cwd travels as given; the supervisor resolves it against the default workspace.
  auto relative =
      DecodeRequest(View(R"({"id":1,"type":"spawn","task":"t","client":"c","cwd":"src/x"})"));
  ASSERT_TRUE(relative) << relative.error().ToString();
  EXPECT_EQ(std::get<SpawnRequest>(relative->body).cwd, "src/x");

  auto read = DecodeRequest(View(R"({"id":2,"type":"read_output","session":"s-1","since":0})"));
  ASSERT_TRUE(read) << read.error().ToString();
  EXPECT_EQ(std::get<ReadOutputRequest>(read->body).limit, kMaxChunkBytes);
}

struct BadRequest {
  const char* name;
  std::string json;
  std::string data;
  std::string what;   // the full error text
  std::string field;  // DecodeDetail::field
};

std::string Spawn(const std::string& members) {
  return R"({"id":1,"type":"spawn","task":"t","client":"c",)" + members + "}";
}

TEST(RequestTest, EveryRefusalNamesItsPointerAndReason) {
  const std::string sid41 = "s-" + std::string(41, 'a');
  const std::vector<BadRequest> cases = {
      {"unknown top-level field", R"({"id":1,"type":"get","session":"s-1","x":1})", "",
       "/x: unknown field", "/x"},
      {"unknown nested field", Spawn(R"("limits":{"memory":1})"), "",
       "/limits/memory: unknown field", "/limits/memory"},
      {"unknown field with / and ~ in its name", R"({"id":1,"type":"health","a/b~":0})", "",
       "/a~1b~0: unknown field", "/a~1b~0"},
      {"string where uint", Spawn(R"("limits":{"memory_max_bytes":"512M"})"), "",
       "/limits/memory_max_bytes: expected unsigned integer, got string",
       "/limits/memory_max_bytes"},
      {"float id", R"({"id":1.0,"type":"health"})", "",
       "/id: expected unsigned integer, got number", "/id"},
      {"negative id", R"({"id":-1,"type":"health"})", "",
       "/id: expected unsigned integer, got negative integer", "/id"},
      {"id beyond uint64", R"({"id":18446744073709551616,"type":"health"})", "",
       "/id: expected unsigned integer, got number", "/id"},
      {"number where string", R"({"id":1,"type":"get","session":7})", "",
       "/session: expected string, got unsigned integer", "/session"},
      {"array item type", Spawn(R"("labels":["a",2])"), "",
       "/labels/1: expected string, got unsigned integer", "/labels/1"},
      {"env value type", Spawn(R"("env":{"A":true})"), "", "/env/A: expected string, got boolean",
       "/env/A"},
      {"env is an array", Spawn(R"("env":["A=1"])"), "", "/env: expected object, got array",
       "/env"},
      {"env name with =", Spawn(R"("env":{"A=B":"1"})"), "",
       R"(/env/A=B: "A=B" is not an environment variable name (^[A-Za-z_][A-Za-z0-9_]{0,255}$))",
       "/env/A=B"},
      {"limits not an object", Spawn(R"("limits":5)"), "",
       "/limits: expected object, got unsigned integer", "/limits"},
      {"bad session id prefix", R"({"id":1,"type":"kill","session":"x-1"})", "",
       R"(/session: "x-1" is not a session id (s-[0-9A-Za-z]{1,40}))", "/session"},
      {"empty session id", R"({"id":1,"type":"kill","session":"s-"})", "",
       R"(/session: "s-" is not a session id (s-[0-9A-Za-z]{1,40}))", "/session"},
      {"session id too long", R"({"id":1,"type":"kill","session":")" + sid41 + "\"}", "",
       "/session: string of 43 bytes exceeds the limit of 42", "/session"},
      {"session id with slash", R"({"id":1,"type":"kill","session":"s-a/b"})", "",
       R"(/session: "s-a/b" is not a session id (s-[0-9A-Za-z]{1,40}))", "/session"},
      {"session id non-ASCII", R"({"id":1,"type":"kill","session":"s-\u00e9"})", "",
       "/session: \"s-\xc3\xa9\" is not a session id (s-[0-9A-Za-z]{1,40})", "/session"},
      {"bad list after", R"({"id":1,"type":"list","after":"s_1"})", "",
       R"(/after: "s_1" is not a session id (s-[0-9A-Za-z]{1,40}))", "/after"},
      {"oversized task",
       R"({"id":1,"type":"spawn","client":"c","task":")" + std::string(kMaxTaskBytes + 1, 'x') +
           "\"}",
       "", "/task: string of 1048577 bytes exceeds the limit of 1048576", "/task"},
      {"empty task", R"({"id":1,"type":"spawn","client":"c","task":""})", "",
       "/task: must not be empty", "/task"},
      {"missing task", R"({"id":1,"type":"spawn","client":"c"})", "",
       "/task: required field is missing", "/task"},
      {"missing client", R"({"id":1,"type":"spawn","task":"t"})", "",
       "/client: required field is missing", "/client"},
      {"unknown type", R"({"id":1,"type":"frobnicate"})", "",
       R"(/type: unknown request type "frobnicate")", "/type"},
      {"type not a string", R"({"id":1,"type":3})", "",
       "/type: expected string, got unsigned integer", "/type"},
      {"missing type", R"({"id":1})", "", "/type: required field is missing", "/type"},
      {"missing id", R"({"type":"get","session":"s-1"})", "", "/id: required field is missing",
       "/id"},
      {"id on hello", R"({"id":1,"type":"hello","proto":1,"client":"api"})", "",
       "/id: unknown field", "/id"},
      {"hello proto 0", R"({"type":"hello","proto":0,"client":"api"})", "",
       "/proto: value 0 is out of range [1, 4294967295]", "/proto"},
      {"control character in owner", Spawn(R"("owner":"a\nb")"), "",
       R"(/owner: "a\x0ab" is not free of control characters)", "/owner"},
      {"unknown session_type", Spawn(R"("session_type":"batch")"), "",
       R"(/session_type: expected one of "exec", "print", "interactive"; got "batch")",
       "/session_type"},
      {"preset with path", Spawn(R"("preset":"../etc/passwd")"), "",
       R"(/preset: "../etc/passwd" is not a preset name (^[a-z0-9][a-z0-9-]{0,63}$))", "/preset"},
      {"NUL in an arg", Spawn(R"("args":["a\u0000b"])"), "", "/args/0: contains a NUL byte",
       "/args/0"},
      {"too many args",
       Spawn(R"("args":[)" +
             [] {
               std::string s;
               for (size_t i = 0; i <= kMaxArgs; ++i) s += i ? ",\"\"" : "\"\"";
               return s;
             }() +
             "]"),
       "", "/args: array of 257 items exceeds the limit of 256", "/args"},
      {"cwd_within not a list", Spawn(R"("cwd_within":"/srv/ws")"), "",
       "/cwd_within: expected array, got string", "/cwd_within"},
      {"cwd_within relative", Spawn(R"("cwd_within":["/srv/ws","ws"])"), "",
       std::string(R"(/cwd_within/1: "ws" is not )") + std::string(common::kWorkspacePathIs),
       "/cwd_within/1"},
      {"cwd_within with ..", Spawn(R"("cwd_within":["/srv/ws/../x"])"), "",
       std::string(R"(/cwd_within/0: "/srv/ws/../x" is not )") +
           std::string(common::kWorkspacePathIs),
       "/cwd_within/0"},
      {"cwd_within /", Spawn(R"("cwd_within":["/"])"), "",
       "/cwd_within/0: string of 1 bytes is shorter than 2", "/cwd_within/0"},
      {"too many cwd_within",
       Spawn(R"("cwd_within":["/1","/2","/3","/4","/5","/6","/7","/8","/9","/10","/11","/12",)"
             R"("/13","/14","/15","/16","/17"])"),
       "", "/cwd_within: array of 17 items exceeds the limit of 16", "/cwd_within"},
      {"max_turns 0", Spawn(R"("max_turns":0)"), "",
       "/max_turns: value 0 is out of range [1, 10000]", "/max_turns"},
      {"negative limit", Spawn(R"("limits":{"pids_max":-8})"), "",
       "/limits/pids_max: expected unsigned integer, got negative integer", "/limits/pids_max"},
      {"preset in capitals", Spawn(R"("preset":"Claude")"), "",
       R"(/preset: "Claude" is not a preset name (^[a-z0-9][a-z0-9-]{0,63}$))", "/preset"},
      {"pty rows 0", Spawn(R"("pty":{"rows":0,"cols":80})"), "",
       "/pty/rows: value 0 is out of range [1, 1000]", "/pty/rows"},
      {"pty missing cols", Spawn(R"("pty":{"rows":1})"), "", "/pty/cols: required field is missing",
       "/pty/cols"},
      {"signal 0", R"({"id":1,"type":"signal","session":"s-1","signal":0})", "",
       "/signal: value 0 is out of range [1, 64]", "/signal"},
      {"signal 65", R"({"id":1,"type":"signal","session":"s-1","signal":65})", "",
       "/signal: value 65 is out of range [1, 64]", "/signal"},
      {"read limit too large",
       R"({"id":1,"type":"read_output","session":"s-1","since":0,"limit":61441})", "",
       "/limit: value 61441 is out of range [1, 61440]", "/limit"},
      {"data tail on get", R"({"id":1,"type":"get","session":"s-1"})", "abc",
       "a data tail (3 bytes) is not allowed on get", ""},
      {"stdin tail too large", R"({"id":1,"type":"stdin","session":"s-1"})",
       std::string(kMaxChunkBytes + 1, 'x'), "data tail of 61441 bytes exceeds the limit of 61440",
       ""},
      {"not an object", "[1,2]", "", "expected object, got array", ""},
      {"invalid JSON", R"({"id":1,)", "",
       "JSON: parse error at line 1, column 9: syntax error "
       "while parsing object key - unexpected end of input; expected string literal",
       ""},
      {"duplicate key", R"({"id":1,"type":"health","id":2})", "", R"(JSON: duplicate key "id")",
       ""},
      {"nested too deep", Spawn(R"("env":{"A":[[[[[[[[1]]]]]]]]})"), "",
       "JSON: nesting deeper than 8 levels", ""},
      {"invalid UTF-8", "{\"id\":1,\"type\":\"get\",\"session\":\"s-\xff\"}", "",
       "JSON: parse error at line 1, column 35: syntax error while parsing value - invalid "
       "string: ill-formed UTF-8 byte; last read: '\"s-\\xff'",
       ""},
      {"two problems", R"({"id":"x","type":"get","session":"bad"})", "",
       "/id: expected unsigned integer, got string (and 1 more)", "/id"},
  };
  for (const BadRequest& c : cases) {
    SCOPED_TRACE(c.name);
    DecodeDetail detail;
    auto r = DecodeRequest(View(c.json, Bytes(c.data)), &detail);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().what, c.what);
    EXPECT_EQ(r.error().errnum, 0);
    EXPECT_EQ(detail.field, c.field);
  }
}

TEST(RequestTest, DetailCarriesTheIdEvenWhenTheRestIsBad) {
  DecodeDetail detail;
  auto r = DecodeRequest(View(R"({"id":41,"type":"kill","session":"nope"})"), &detail);
  ASSERT_FALSE(r);
  ASSERT_TRUE(detail.id);
  EXPECT_EQ(*detail.id, 41u);
  EXPECT_EQ(detail.field, "/session");

  auto no_id = DecodeRequest(View(R"({"id":"41","type":"kill","session":"s-1"})"), &detail);
  ASSERT_FALSE(no_id);
  EXPECT_FALSE(detail.id);
}

TEST(RequestTest, ParserMessagesAreCutAndPrintable) {
  // nlohmann quotes the token it stopped in; here a 50000-byte string with a bad byte at its end.
  const std::string json =
      R"({"id":1,"type":"spawn","task":")" + std::string(50000, 'a') + "\x01\"}";
  auto r = DecodeRequest(View(json));
  ASSERT_FALSE(r);
  EXPECT_LT(r.error().what.size(), 300u);
  EXPECT_EQ(r.error().what.find('\x01'), std::string::npos) << r.error().what;
  EXPECT_EQ(r.error().what.substr(0, 17), "JSON: parse error");
}

TEST(RequestTest, CrossesASocketpairAndDecodes) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds), 0);
  UniqueFd reader(fds[0]), writer(fds[1]);
  const Request sent{42, StdinRequest{kSid, Bytes("input\n")}};
  std::thread thread([&] {
    auto frame = EncodeRequest(sent);
    ASSERT_TRUE(frame);
    ASSERT_TRUE(SendFrame(writer.get(), *frame));
  });
  std::vector<uint8_t> buffer(kMaxFrameBytes);
  auto got = ReceiveFrame(reader.get(), buffer);
  thread.join();
  ASSERT_TRUE(got) << got.error().ToString();
  ASSERT_EQ(got->status, ReceiveStatus::kFrame);
  auto request = DecodeRequest(got->frame);
  ASSERT_TRUE(request) << request.error().ToString();
  EXPECT_EQ(*request, sent);
}

TEST(RequestTest, RequestsOverOneRecordEncodeUpToTheMessageLimit) {
  // A spawn with the longest task is larger than one record: it encodes (the sender splits
  // it, wire_parts_test.cc) and decodes back; past kMaxMessageBytes, encoding says EMSGSIZE.
  SpawnRequest s;
  s.task = std::string(kMaxTaskBytes, 'x');
  s.client = "c";
  auto frame = EncodeRequest({1, s});
  ASSERT_TRUE(frame) << frame.error().ToString();
  EXPECT_GT(frame->size(), kMaxFrameBytes);
  auto view = DecodeFrame(*frame, kMaxMessageBytes);
  ASSERT_TRUE(view) << view.error().ToString();
  auto back = DecodeRequest(*view);
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(std::get<SpawnRequest>(back->body).task, s.task);
  s.task = std::string(kMaxMessageBytes, 'x');
  frame = EncodeRequest({1, s});
  ASSERT_FALSE(frame);
  EXPECT_EQ(frame.error().errnum, EMSGSIZE);
  // Responses and events stay within one record.
  OutputEvent big;
  big.session = "s-1";
  big.data.assign(kMaxFrameBytes, 'x');
  auto event = EncodeEvent(big);
  ASSERT_FALSE(event);
  EXPECT_EQ(event.error().errnum, EMSGSIZE);
}

// ---- Responses.

Result<Response> DecodeResponseFn(const FrameView& f) { return DecodeResponse(f); }

TEST(ResponseTest, EveryResponseBodyRoundTrips) {
  OutputRead read;
  read.chunks = {{OutputStream::kStdout, 10, 3}, {OutputStream::kStderr, 13, 2}};
  read.gaps = {{0, 10}};
  read.next = 15;
  read.total = 20;
  read.ended = true;
  read.data = Bytes(std::string("abc\xff\x00", 5));
  HealthInfo health{"0.1.0", 42, 1, 3, 50, false, "memory controller not delegated"};
  const std::vector<Response> responses = {
      {1, std::monostate{}},
      {2, ErrorBody{ErrorCode::kPolicyViolation, "memory_max_bytes exceeds the preset's",
                    "/limits/memory_max_bytes"}},
      {3, ErrorBody{ErrorCode::kUnavailable, "draining", ""}},
      {4, FullInfo()},
      {5, SessionList{{FullInfo(), SessionInfo{.id = "s-2", .cwd = "/"}}, true}},
      {6, SessionList{}},
      {7, read},
      {8, OutputRead{}},
      {9, PolicyList{{{"claude", SessionType::kPrint, "Claude Code, one-shot", true,
                       uint64_t{4} << 30, 2048, 200, 14400, 0, NetworkMode::kHost},
                      {"exec", SessionType::kExec, "", false, uint64_t{16} << 20, 8, std::nullopt,
                       2592000, 900, NetworkMode::kNone}},
                     true}},
      {10, health},
  };
  std::vector<bool> seen(std::variant_size_v<ResponseBody>);
  for (const Response& r : responses) {
    SCOPED_TRACE(r.id);
    ExpectRoundTrip<Response>(r, &EncodeResponse, &DecodeResponseFn);
    seen[r.body.index()] = true;
  }
  for (size_t i = 0; i < seen.size(); ++i) EXPECT_TRUE(seen[i]) << "untested alternative " << i;
}

TEST(ResponseTest, WireShapes) {
  EXPECT_EQ(ExpectRoundTrip<Response>({7, std::monostate{}}, &EncodeResponse, &DecodeResponseFn),
            R"({"id":7,"ok":true})");
  EXPECT_EQ(ExpectRoundTrip<Response>({7, ErrorBody{ErrorCode::kNotFound, "no such session", ""}},
                                      &EncodeResponse, &DecodeResponseFn),
            R"({"error":{"code":"not_found","message":"no such session"},"id":7})");
}

TEST(ResponseTest, Refusals) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"id":1,"ok":true,"error":{"code":"internal","message":"x"}})", "/ok: unknown field"},
      {R"({"id":1,"ok":false})", "/ok: must be true (failures carry \"error\")"},
      {R"({"id":1})", "/ok: required field is missing"},
      {R"({"ok":true})", "/id: required field is missing"},
      {R"({"id":1,"error":{"code":"teapot","message":"x"}})",
       R"(/error/code: expected one of "bad_request", "not_found", "wrong_state", "capacity", )"
       R"("policy_violation", "internal", "unavailable", "too_large", "host_setup", )"
       R"("insufficient_storage"; got "teapot")"},
      {R"({"id":1,"error":{"code":"internal","message":"x","field":"limits.x"}})",
       R"(/error/field: "limits.x" is not a JSON pointer ("" or starting with "/"))"},
      {R"({"id":1,"ok":true,"session":{},"health":{}})",
       "more than one result member (and 2 more)"},
      {R"({"id":1,"ok":true,"list":{"sessions":[{"id":"s-1"}],"more":false}})",
       "/list/sessions/0/state: required field is missing (and 6 more)"},
      {R"({"id":1,"ok":true,"output":{"chunks":[{"stream":"stdout","offset":0,"length":2}],)"
       R"("next":2,"total":2,"ended":false}})",
       "/output/chunks: lengths add up to 2 bytes but the data tail has 0"},
      {R"({"id":1,"ok":true,"output":{"chunks":[{"stream":"stdout","offset":5,"length":2},)"
       R"({"stream":"stdout","offset":6,"length":1}],"next":9,"total":9,"ended":false}})",
       "/output/chunks/1/offset: chunks overlap, are out of order, or overflow"},
      {R"({"id":1,"ok":true,"output":{"chunks":[],"next":9,"total":3,"ended":false}})",
       "/output/next: is beyond total"},
      {R"({"id":1,"ok":true,"policies":[{"name":"a","type":"exec"}]})",
       "/policies/0/memory_max_bytes: required field is missing (and 4 more)"},
      {R"({"id":1,"ok":true,"policies":[{"name":"a","type":"exec","memory_max_bytes":1024,)"
       R"("pids_max":8,"wall_seconds":0,"idle_seconds":0,"network":"bridge"}]})",
       "/policies/0/memory_max_bytes: value 1024 is out of range [16777216, "
       "1152921504606846976] (and 1 more)"},
      {R"({"id":1,"ok":true,"policies":[],"more":1})",
       "/more: expected boolean, got unsigned integer"},
      {R"({"id":1,"ok":true,"output":{"chunks":[],"gaps":[{"from":4,"to":4}],"next":9,)"
       R"("total":9,"ended":false}})",
       "/output/gaps/0: empty range: from must be below to"},
  };
  for (const auto& [json, what] : cases) {
    SCOPED_TRACE(json);
    auto r = DecodeResponse(View(json));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().what, what);
  }
  auto tail = DecodeResponse(View(R"({"id":1,"ok":true})", Bytes("x")));
  ASSERT_FALSE(tail);
  EXPECT_EQ(tail.error().what, "a data tail (1 bytes) is not allowed on this response");
}

TEST(ResponseTest, PolicyInfoWireShape) {
  PolicyInfo p{"codex-worker", SessionType::kPrint, "",   true, 4294967296,
               2048,           std::nullopt,        7200, 1800, NetworkMode::kHost};
  EXPECT_EQ(
      ExpectRoundTrip<Response>({3, PolicyList{{p}, false}}, &EncodeResponse, &DecodeResponseFn),
      R"({"id":3,"ok":true,"policies":[{"bypasses_agent_permissions":true,)"
      R"("idle_seconds":1800,"memory_max_bytes":4294967296,"name":"codex-worker",)"
      R"("network":"host","pids_max":2048,"type":"print","wall_seconds":7200}]})");
  EXPECT_EQ(RoundTripRequest({4, PoliciesRequest{"claude"}}),
            R"({"after":"claude","id":4,"type":"policies"})");
}

// ---- PolicyPage: the supervisor's pages of GET /policies.

PolicyInfo PolicyNamed(std::string name, size_t description_bytes, char fill = 'd') {
  PolicyInfo p;
  p.name = std::move(name);
  p.type = SessionType::kInteractive;
  p.description = std::string(description_bytes, fill);
  p.bypasses_agent_permissions = true;
  p.memory_max_bytes = uint64_t{1} << 60;  // every number at its widest
  p.pids_max = 4194304;
  p.cpu_max_percent = 100000;
  p.wall_seconds = 2592000;
  p.idle_seconds = 2592000;
  p.network = NetworkMode::kHost;
  return p;
}

// Pages through `all` as the API does; checks every page's frame and returns the pages.
std::vector<PolicyList> AllPages(const std::vector<PolicyInfo>& all) {
  std::vector<PolicyList> pages;
  std::optional<std::string> after;
  for (;;) {
    PolicyList page = PolicyPage(all, after);
    auto frame = EncodeResponse({UINT64_MAX, page});
    EXPECT_TRUE(frame) << "page " << pages.size() << " does not fit a frame";
    if (frame) {
      EXPECT_LE(frame->size(), wire::kMaxFrameBytes);
    }
    EXPECT_LE(page.policies.size(), kMaxPolicies);
    pages.push_back(page);
    if (!page.more || page.policies.empty() || pages.size() > all.size()) break;
    after = page.policies.back().name;
  }
  return pages;
}

std::vector<PolicyInfo> Concat(const std::vector<PolicyList>& pages) {
  std::vector<PolicyInfo> out;
  for (const PolicyList& p : pages) out.insert(out.end(), p.policies.begin(), p.policies.end());
  return out;
}

TEST(PolicyPageTest, WorstCaseEntriesArePagedWithinTheFrameLimit) {
  // 300 names of 64 bytes, 1024-byte descriptions of control characters (six bytes each once
  // escaped), every number at its widest: about 6.5 KiB per entry, 2 MiB in all.
  std::vector<PolicyInfo> all;
  for (int i = 0; i < 300; ++i) {
    std::string name = std::to_string(1000 + i);
    name.resize(wire::kMaxPresetBytes, 'x');
    all.push_back(PolicyNamed(name, wire::kMaxDescriptionBytes, '\x01'));
  }
  const auto pages = AllPages(all);
  EXPECT_EQ(Concat(pages), all);
  EXPECT_GE(pages.size(), 30u);  // ten entries a page
  EXPECT_FALSE(pages.back().more);
  for (size_t i = 0; i + 1 < pages.size(); ++i) {
    EXPECT_TRUE(pages[i].more) << i;
    EXPECT_FALSE(pages[i].policies.empty()) << i;
  }
  // Each page is as full as the frame allows: one more entry would not have fitted.
  auto fuller = pages[0];
  fuller.policies.push_back(pages[1].policies.front());
  EXPECT_FALSE(EncodeResponse({UINT64_MAX, fuller}));
}

TEST(PolicyPageTest, SmallEntriesStopAtMaxPolicies) {
  std::vector<PolicyInfo> all;
  for (int i = 0; i < 600; ++i) {
    PolicyInfo p;
    p.name = "p" + std::to_string(1000 + i);
    p.memory_max_bytes = uint64_t{16} << 20;
    p.pids_max = 8;
    all.push_back(p);
  }
  const auto pages = AllPages(all);
  ASSERT_EQ(pages.size(), 3u);
  EXPECT_EQ(pages[0].policies.size(), kMaxPolicies);
  EXPECT_EQ(pages[1].policies.size(), kMaxPolicies);
  EXPECT_EQ(pages[2].policies.size(), 600 - 2 * kMaxPolicies);
  EXPECT_EQ(Concat(pages), all);
}

TEST(PolicyPageTest, AfterSkipsByNameAndEmptyListsHaveNoMore) {
  const std::vector<PolicyInfo> all = {PolicyNamed("claude", 10), PolicyNamed("codex", 10),
                                       PolicyNamed("exec", 10)};
  EXPECT_EQ(PolicyPage(all, std::nullopt), (PolicyList{all, false}));
  EXPECT_EQ(PolicyPage(all, "claude").policies, (std::vector<PolicyInfo>{all[1], all[2]}));
  // A name that is not listed (a policy removed by a reload between two pages) still resumes
  // at the next name.
  EXPECT_EQ(PolicyPage(all, "cm").policies, (std::vector<PolicyInfo>{all[1], all[2]}));
  EXPECT_EQ(PolicyPage(all, "exec"), PolicyList{});
  EXPECT_EQ(PolicyPage({}, std::nullopt), PolicyList{});
}

// ---- Events.

Result<Event> DecodeEventFn(const FrameView& f) { return DecodeEvent(f); }

TEST(EventTest, EveryEventRoundTrips) {
  const std::vector<Event> events = {
      ServerHello{1, "0.1.0", "6f1c2d3e-4b5a-6978-8a9b-0c1d2e3f4a5b"},
      OutputEvent{kSid, OutputStream::kPty, 4096, Bytes("\x1b[31mred\r\n")},
      GapEvent{kSid, {65536, 98304}},
      LaggedEvent{kSid, 131072},
      StateEvent{kSid, SessionState::kRunning},
      ExitEvent{kSid, FullEnd()},
      ExitEvent{kSid, EndRecord{.reason = EndReason::kExit, .exit_code = 0}},
  };
  for (const Event& e : events) {
    SCOPED_TRACE(e.index());
    ExpectRoundTrip<Event>(e, &EncodeEvent, &DecodeEventFn);
  }
  EXPECT_EQ(ExpectRoundTrip<Event>(LaggedEvent{kSid, 7}, &EncodeEvent, &DecodeEventFn),
            R"({"resume_from":7,"session":"s-01J9ZQ","type":"lagged"})");
}

TEST(EventTest, Refusals) {
  const std::vector<std::tuple<std::string, std::string, std::string>> cases = {
      {R"({"type":"output","session":"s-1","stream":"stdout","offset":0})", "",
       "an output event needs a data tail"},
      {R"({"type":"output","session":"s-1","stream":"stdin","offset":0})", "x",
       R"(/stream: expected one of "stdout", "stderr", "pty"; got "stdin")"},
      {R"({"type":"output","session":"s-1","stream":"stdout","offset":18446744073709551615})", "xy",
       "/offset: offset + data length overflows"},
      {R"({"type":"gap","session":"s-1","from":9,"to":9})", "", "/to: must be above from"},
      {R"({"type":"state","session":"s-1","state":"running"})", "x",
       "a data tail (1 bytes) is not allowed on state events"},
      {R"({"type":"exit","session":"s-1","end":{"reason":"exit","exit_code":256,"ended_at_ms":1}})",
       "", "/end/exit_code: value 256 is out of range [0, 255]"},
      {R"({"type":"exit","session":"s-1","end":{"reason":"bored","ended_at_ms":1}})", "",
       R"(/end/reason: expected one of "exit", "killed_by_request", "timeout_wall", )"
       R"("timeout_idle", "oom", "output_flood", "pids_limit", "spawn_error", )"
       R"("supervisor_restart"; got "bored")"},
      {R"({"type":"exit","session":"s-1"})", "", "/end: required field is missing"},
      {R"({"type":"hello","proto":1,"supervisor":"0.1.0","boot_id":"a b"})", "",
       R"(/boot_id: "a b" is not made of [0-9A-Za-z-])"},
      {R"({"type":"spawn"})", "", R"(/type: unknown event type "spawn")"},
      {R"({"id":1,"type":"state","session":"s-1","state":"running"})", "", "/id: unknown field"},
  };
  for (const auto& [json, data, what] : cases) {
    SCOPED_TRACE(json);
    auto r = DecodeEvent(View(json, Bytes(data)));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().what, what);
  }
}

TEST(SupervisorMessageTest, IdMeansResponseNoIdMeansEvent) {
  auto response = DecodeSupervisorMessage(View(R"({"id":3,"ok":true})"));
  ASSERT_TRUE(response) << response.error().ToString();
  ASSERT_TRUE(std::holds_alternative<Response>(*response));
  EXPECT_EQ(std::get<Response>(*response).id, 3u);

  auto event =
      DecodeSupervisorMessage(View(R"({"type":"state","session":"s-1","state":"exited"})"));
  ASSERT_TRUE(event) << event.error().ToString();
  ASSERT_TRUE(std::holds_alternative<Event>(*event));
  EXPECT_EQ(std::get<StateEvent>(std::get<Event>(*event)).state, SessionState::kExited);

  auto hello = DecodeSupervisorMessage(
      View(R"({"type":"hello","proto":1,"supervisor":"0.1.0","boot_id":"abc"})"));
  ASSERT_TRUE(hello) << hello.error().ToString();
  EXPECT_TRUE(std::holds_alternative<ServerHello>(std::get<Event>(*hello)));

  auto bad = DecodeSupervisorMessage(View(R"({"id":3,"type":"state"})"));
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().what, "/ok: required field is missing (and 1 more)");
}

// ---- SessionInfo standalone, encoding edge cases, vocabulary.

TEST(SessionInfoTest, RoundTripsAsStandaloneJson) {
  const SessionInfo info = FullInfo();
  const std::string json = SessionInfoToJson(info);
  auto back = SessionInfoFromJson(json);
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(*back, info);

  auto bad = SessionInfoFromJson(R"({"id":"s-1","state":"zombie"})");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().what.substr(0, 23), "/state: expected one of");
}

TEST(EncodeTest, InvalidUtf8BecomesReplacementCharacter) {
  SessionInfo info = FullInfo();
  info.cwd = "/srv/\xff\xfe";
  auto frame = EncodeResponse({1, info});
  ASSERT_TRUE(frame) << frame.error().ToString();
  auto view = DecodeFrame(*frame);
  ASSERT_TRUE(view);
  auto back = DecodeResponse(*view);
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(std::get<SessionInfo>(back->body).cwd, "/srv/\xef\xbf\xbd\xef\xbf\xbd");
}

TEST(VocabularyTest, WireStringsMatchTheDesign) {
  EXPECT_EQ(ToString(EndReason::kKilledByRequest), "killed_by_request");
  EXPECT_EQ(ToString(EndReason::kSupervisorRestart), "supervisor_restart");
  EXPECT_EQ(ToString(ErrorCode::kPolicyViolation), "policy_violation");
  EXPECT_EQ(ToString(ErrorCode::kUnavailable), "unavailable");
  EXPECT_EQ(ToString(ErrorCode::kTooLarge), "too_large");
  EXPECT_EQ(ToString(ErrorCode::kHostSetup), "host_setup");
  EXPECT_EQ(ToString(ErrorCode::kInsufficientStorage), "insufficient_storage");
  EXPECT_EQ(ToString(RequestType::kCloseStdin), "close_stdin");
  EXPECT_EQ(ToString(RequestType::kReadOutput), "read_output");
  EXPECT_EQ(ToString(SessionState::kFailed), "failed");
  EXPECT_EQ(ToString(OutputStream::kPty), "pty");
  EXPECT_EQ(ToString(NetworkMode::kHost), "host");
  EXPECT_EQ(ToString(NetworkMode::kNone), "none");
  EXPECT_EQ(ToString(NetworkMode::kAllowlist), "allowlist");
  EXPECT_EQ(ToString(static_cast<EndReason>(99)), "invalid");
}

TEST(VocabularyTest, SessionIds) {
  EXPECT_TRUE(IsValidSessionId("s-0"));
  EXPECT_TRUE(IsValidSessionId("s-" + std::string(40, 'Z')));
  EXPECT_FALSE(IsValidSessionId("s-" + std::string(41, 'Z')));
  EXPECT_FALSE(IsValidSessionId("s-"));
  EXPECT_FALSE(IsValidSessionId("S-1"));
  EXPECT_FALSE(IsValidSessionId("s-1-2"));
  EXPECT_FALSE(IsValidSessionId(std::string("s-1\0", 4)));
}

// ---- The strict reader on its own.

TEST(JsonStrictTest, ParseLimitsDepthAndDuplicatesAndAllowsCommentsOnlyWhenAsked) {
  nlohmann::json j;
  EXPECT_TRUE(ParseJson(R"({"a":{"b":1}})", &j, {2, false}));
  auto deep = ParseJson(R"({"a":{"b":1}})", &j, {1, false});
  ASSERT_FALSE(deep);
  EXPECT_EQ(deep.error().what, "JSON: nesting deeper than 1 levels");
  auto dup = ParseJson(R"({"a":{"b":1,"b":2}})", &j);
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().what, R"(JSON: duplicate key "b" in /a)");
  auto dup_in_array = ParseJson(R"({"a":[1,{"c":{}},{"b":1,"b":2}]})", &j);
  ASSERT_FALSE(dup_in_array);
  EXPECT_EQ(dup_in_array.error().what, R"(JSON: duplicate key "b" in /a/2)");
  EXPECT_TRUE(ParseJson(R"({"a":{"b":1},"b":{"b":2}})", &j));  // same key, different objects
  EXPECT_FALSE(ParseJson("{} // c", &j));
  EXPECT_TRUE(ParseJson("{} // c", &j, {16, true}));
  EXPECT_FALSE(ParseJson("{} {}", &j));
}

TEST(JsonStrictTest, ReaderCollectsEveryErrorAndKeepsTheFirstSixteen) {
  nlohmann::json j;
  std::string text = "{";
  for (int i = 0; i < 20; ++i) text += (i ? "," : "") + ("\"k" + std::to_string(i) + "\":0");
  text += "}";
  ASSERT_TRUE(ParseJson(text, &j));
  FieldErrors errors;
  ObjectReader r(j, "/root", &errors);
  r.RejectUnknown();
  EXPECT_EQ(errors.count(), 20u);
  EXPECT_EQ(errors.kept().size(), FieldErrors::kMaxKept);
  EXPECT_EQ(errors.ToError().what, "/root/k0: unknown field (and 19 more)");
}

TEST(JsonStrictTest, TypesRangesAndEnums) {
  nlohmann::json j;
  ASSERT_TRUE(ParseJson(
      R"({"u":5,"neg":-3,"zero":-0,"big":18446744073709551615,"b":true,"e":"two","s":"abc"})", &j));
  FieldErrors errors;
  ObjectReader r(j, "", &errors);
  EXPECT_EQ(r.Uint("u", {0, 5}), 5u);
  EXPECT_EQ(r.Uint("zero", {}), 0u);
  EXPECT_EQ(r.Int("neg", {-3, 0}), -3);
  EXPECT_EQ(r.Uint("big", {}), UINT64_MAX);
  EXPECT_TRUE(r.Bool("b"));
  constexpr std::string_view kNames[] = {"one", "two"};
  EXPECT_EQ(r.Enum("e", kNames), 1u);
  EXPECT_EQ(r.String("s", {0, 3}), "abc");
  EXPECT_FALSE(r.OptString("absent", {0, 3}));
  r.RejectUnknown();
  EXPECT_TRUE(errors.empty()) << errors.ToError().what;

  FieldErrors more;
  ObjectReader r2(j, "", &more);
  EXPECT_EQ(r2.Int("big", {}), 0);
  EXPECT_EQ(r2.Uint("u", {6, 9}), 0u);
  EXPECT_EQ(r2.String("s", {0, 2}), "");
  ASSERT_EQ(more.kept().size(), 3u);
  EXPECT_EQ(more.kept()[0].ToString(),
            "/big: value 18446744073709551615 is out of range [-9223372036854775808, "
            "9223372036854775807]");
  EXPECT_EQ(more.kept()[1].ToString(), "/u: value 5 is out of range [6, 9]");
  EXPECT_EQ(more.kept()[2].ToString(), "/s: string of 3 bytes exceeds the limit of 2");
}

TEST(JsonStrictTest, ErrorTextStaysSmallAndPrintable) {
  EXPECT_EQ(AppendPointer("/a", "x/y~z"), "/a/x~1y~0z");
  EXPECT_EQ(AppendPointer("", std::string(100, 'k')), "/" + std::string(64, 'k') + "...");
  EXPECT_EQ(QuoteForError("a\"b\\c\n\x7f"), R"("a\"b\\c\x0a\x7f")");
  // A cut never splits a UTF-8 sequence: "é" is 2 bytes, 64 is even, so cut at 63 + 1.
  const std::string accents = "x" + std::string(40, ' ') +
                              "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                              "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9";
  EXPECT_EQ(TruncateUtf8(accents, 64).size(), 63u);
  EXPECT_EQ(TruncateUtf8("abc", 64), "abc");
}

}  // namespace
}  // namespace mp::wire
