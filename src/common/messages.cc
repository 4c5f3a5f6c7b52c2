#include "common/messages.h"

#include <algorithm>
#include <array>
#include <exception>
#include <utility>

#include <nlohmann/json.hpp>

#include "common/json_strict.h"

namespace mp::wire {
namespace {

using json = nlohmann::json;

// ---- Wire names, indexed by enum value (the shared enums' are in common/vocabulary.h and
// common/result.h).

using common::kEndReasonNames;
using common::kNetworkModeNames;
using common::kSessionTypeNames;
using ::mp::kErrorCodeNames;

constexpr std::array<std::string_view, 5> kSessionStateNames = {"starting", "running", "exited",
                                                                "killed", "failed"};
constexpr std::array<std::string_view, 3> kStreamNames = {"stdout", "stderr", "pty"};
constexpr std::array<std::string_view, 15> kRequestTypeNames = {
    "hello",       "spawn",       "list",        "get",    "kill",
    "signal",      "stdin",       "close_stdin", "resize", "subscribe",
    "unsubscribe", "read_output", "policies",    "health", "audit"};
constexpr std::array<std::string_view, 6> kAuditActionNames = {
    "token_create", "token_revoke", "read", "auth_failed", "rate_limited", "audit_suppressed"};
constexpr std::array<std::string_view, 7> kAuthFailureNames = {
    "missing", "invalid", "expired", "revoked", "unlisted_certificate", "ws_timeout", "ws_message"};
constexpr std::array<std::string_view, 6> kEventTypeNames = {"hello",  "output", "gap",
                                                             "lagged", "state",  "exit"};
static_assert(kRequestTypeNames.size() == std::variant_size_v<RequestBody>);
static_assert(kEventTypeNames.size() == std::variant_size_v<Event>);

template <typename E, size_t N>
std::string_view NameOf(E v, const std::array<std::string_view, N>& names) {
  const auto i = static_cast<size_t>(v);
  return i < N ? names[i] : std::string_view("invalid");
}

template <typename E, size_t N>
E ReadEnum(ObjectReader& r, std::string_view key, const std::array<std::string_view, N>& names) {
  return static_cast<E>(r.Enum(key, names));
}

template <typename E, size_t N>
std::optional<E> ReadOptEnum(ObjectReader& r, std::string_view key,
                             const std::array<std::string_view, N>& names) {
  const std::optional<size_t> i = r.OptEnum(key, names);
  if (!i) return std::nullopt;
  return static_cast<E>(*i);
}

// ---- String shapes.

bool NoControl(std::string_view s) {
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return false;
  }
  return true;
}
bool IsAlnum(char c) {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}
bool IsBootId(std::string_view s) {
  for (char c : s) {
    if (!IsAlnum(c) && c != '-') return false;
  }
  return true;
}
using common::IsEnvName;
using common::IsPresetName;
using common::IsPrincipalLabel;
bool IsTokenId(std::string_view s) {
  return s.size() == kTokenIdChars && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}
bool IsPointerOrEmpty(std::string_view s) { return s.empty() || s[0] == '/'; }

constexpr std::string_view kPrintable = "free of control characters";
constexpr StringRule kSessionIdRule{1, 2 + kMaxSessionIdChars, &IsValidSessionId,
                                    "a session id (s-[0-9A-Za-z]{1,40})"};
constexpr StringRule kNameRule{1, kMaxNameBytes, &NoControl, kPrintable};
constexpr StringRule kBootIdRule{1, kMaxBootIdBytes, &IsBootId, "made of [0-9A-Za-z-]"};
constexpr StringRule kTaskRule{1, kMaxTaskBytes};
constexpr StringRule kTaskPreviewRule{0, kMaxTaskPreviewBytes};
constexpr StringRule kPresetRule{1, kMaxPresetBytes, &IsPresetName, common::kPresetNameIs};
constexpr StringRule kCommandRule{1, kMaxCommandBytes};
constexpr StringRule kCommandDisplayRule{0, kMaxCommandBytes};
constexpr StringRule kArgRule{0, kMaxArgBytes};
// A relative cwd is resolved by the supervisor against the policy's default workspace.
constexpr StringRule kCwdRule{1, kMaxPathBytes};
constexpr StringRule kPathRule{0, kMaxPathBytes};
constexpr StringRule kWorkspaceRule{2, common::kMaxWorkspacePathBytes, &common::IsWorkspacePath,
                                    common::kWorkspacePathIs};
constexpr StringRule kEnvNameRule{1, kMaxEnvNameBytes, &IsEnvName, common::kEnvNameIs};
constexpr StringRule kEnvValueRule{0, kMaxEnvValueBytes};
constexpr StringRule kOwnerRule{0, kMaxOwnerBytes, &NoControl, kPrintable};
constexpr StringRule kLabelRule{1, kMaxLabelBytes, &NoControl, kPrintable};
constexpr StringRule kClientRule{1, kMaxClientBytes, &NoControl, kPrintable};
constexpr StringRule kPrincipalRule{1, kMaxPrincipalBytes, &IsPrincipalLabel, common::kPrincipalIs};
constexpr StringRule kViaRule{1, kMaxViaBytes, &NoControl, kPrintable};
constexpr StringRule kRouteRule{1, kMaxRouteBytes, &NoControl, kPrintable};
constexpr StringRule kTokenIdRule{kTokenIdChars, kTokenIdChars, &IsTokenId,
                                  "a token id (16 lowercase hex digits)"};
constexpr StringRule kDescriptionRule{0, kMaxDescriptionBytes};

constexpr StringRule kMessageRule{0, kMaxErrorMessageBytes};
constexpr StringRule kFieldRule{0, kMaxErrorFieldBytes, &IsPointerOrEmpty,
                                "a JSON pointer (\"\" or starting with \"/\")"};
constexpr StringRule kTypeRule{1, 32};

constexpr ParseOptions kEnvelopeParse{kMaxJsonNesting, false};

std::string Str(std::string_view s) { return std::string(s); }

// ---- Shared records.

PtySize ReadPty(ObjectReader& r) {
  PtySize p;
  p.rows = static_cast<uint32_t>(r.Uint("rows", {1, kMaxPtyDimension}));
  p.cols = static_cast<uint32_t>(r.Uint("cols", {1, kMaxPtyDimension}));
  r.RejectUnknown();
  return p;
}
json PtyToJson(const PtySize& p) { return {{"rows", p.rows}, {"cols", p.cols}}; }

SpawnLimits ReadLimits(ObjectReader& r) {
  SpawnLimits l;
  // Ranges are the policy's business (Tighten); here only the type.
  l.memory_max_bytes = r.OptUint("memory_max_bytes", {});
  l.memory_swap_max_bytes = r.OptUint("memory_swap_max_bytes", {});
  l.pids_max = r.OptUint("pids_max", {});
  l.cpu_max_percent = r.OptUint("cpu_max_percent", {});
  l.wall_seconds = r.OptUint("wall_seconds", {});
  l.idle_seconds = r.OptUint("idle_seconds", {});
  r.RejectUnknown();
  return l;
}
json LimitsToJson(const SpawnLimits& l) {
  json j = json::object();
  if (l.memory_max_bytes) j["memory_max_bytes"] = *l.memory_max_bytes;
  if (l.memory_swap_max_bytes) j["memory_swap_max_bytes"] = *l.memory_swap_max_bytes;
  if (l.pids_max) j["pids_max"] = *l.pids_max;
  if (l.cpu_max_percent) j["cpu_max_percent"] = *l.cpu_max_percent;
  if (l.wall_seconds) j["wall_seconds"] = *l.wall_seconds;
  if (l.idle_seconds) j["idle_seconds"] = *l.idle_seconds;
  return j;
}

template <typename T>
std::optional<T> Narrow(std::optional<uint64_t> v) {
  if (!v) return std::nullopt;
  return static_cast<T>(*v);
}

EndRecord ReadEnd(ObjectReader& r) {
  EndRecord e;
  e.reason = ReadEnum<EndReason>(r, "reason", kEndReasonNames);
  e.exit_code = Narrow<int32_t>(r.OptUint("exit_code", {0, 255}));
  e.signal = Narrow<int32_t>(r.OptUint("signal", {1, kMaxSignal}));
  e.ended_at_ms = r.Uint("ended_at_ms", {});
  e.detail = r.OptString("detail", kMessageRule).value_or("");
  e.memory_peak_bytes = r.OptUint("memory_peak_bytes", {});
  e.cpu_usage_usec = r.OptUint("cpu_usage_usec", {});
  e.pids_peak = r.OptUint("pids_peak", {});
  e.output_throttled_ms = r.OptUint("output_throttled_ms", {});
  r.RejectUnknown();
  return e;
}
json EndToJson(const EndRecord& e) {
  json j = {{"reason", Str(ToString(e.reason))}, {"ended_at_ms", e.ended_at_ms}};
  if (e.exit_code) j["exit_code"] = *e.exit_code;
  if (e.signal) j["signal"] = *e.signal;
  if (!e.detail.empty()) j["detail"] = e.detail;
  if (e.memory_peak_bytes) j["memory_peak_bytes"] = *e.memory_peak_bytes;
  if (e.cpu_usage_usec) j["cpu_usage_usec"] = *e.cpu_usage_usec;
  if (e.pids_peak) j["pids_peak"] = *e.pids_peak;
  if (e.output_throttled_ms) j["output_throttled_ms"] = *e.output_throttled_ms;
  return j;
}

EgressCounters ReadEgressCounters(ObjectReader& r) {
  EgressCounters c;
  c.allowed = r.Uint("allowed", {});
  c.denied = r.Uint("denied", {});
  c.bytes_up = r.Uint("bytes_up", {});
  c.bytes_down = r.Uint("bytes_down", {});
  c.dns_answered = r.Uint("dns_answered", {});
  c.dns_refused = r.Uint("dns_refused", {});
  c.gateway_requests = r.Uint("gateway_requests", {});
  return c;
}
json EgressCountersJson(const EgressCounters& c) {
  return {{"allowed", c.allowed},
          {"denied", c.denied},
          {"bytes_up", c.bytes_up},
          {"bytes_down", c.bytes_down},
          {"dns_answered", c.dns_answered},
          {"dns_refused", c.dns_refused},
          {"gateway_requests", c.gateway_requests}};
}

SessionInfo ReadSessionInfo(ObjectReader& r) {
  SessionInfo s;
  s.id = r.String("id", kSessionIdRule);
  s.state = ReadEnum<SessionState>(r, "state", kSessionStateNames);
  s.type = ReadEnum<SessionType>(r, "type", kSessionTypeNames);
  s.preset = r.OptString("preset", kPresetRule);
  s.task_preview = r.String("task_preview", kTaskPreviewRule);
  s.cwd = r.String("cwd", kPathRule);
  s.command = r.String("command", kCommandDisplayRule);
  s.pid = Narrow<uint32_t>(r.OptUint("pid", {1, INT32_MAX}));
  s.created_at_ms = r.Uint("created_at_ms", {});
  s.owner = r.OptString("owner", kOwnerRule).value_or("");
  s.labels = r.StringArray("labels", kMaxLabels, kLabelRule);
  s.output_bytes = r.Uint("output_bytes", {});
  s.output_lines = r.OptUint("output_lines", {}).value_or(0);
  if (auto pty = r.OptObject("pty")) s.pty = ReadPty(*pty);
  if (auto end = r.OptObject("end")) s.end = ReadEnd(*end);
  s.created_by = r.OptString("created_by", kPrincipalRule).value_or("");
  s.supervisor_restarts =
      static_cast<uint32_t>(r.OptUint("supervisor_restarts", {0, UINT32_MAX}).value_or(0));
  if (auto egress = r.OptObject("egress")) {
    s.egress = ReadEgressCounters(*egress);
    egress->RejectUnknown();
  }
  r.RejectUnknown();
  return s;
}
json SessionInfoJson(const SessionInfo& s) {
  json j = {{"id", s.id},
            {"state", Str(ToString(s.state))},
            {"type", Str(ToString(s.type))},
            {"task_preview", s.task_preview},
            {"cwd", s.cwd},
            {"command", s.command},
            {"created_at_ms", s.created_at_ms},
            {"output_bytes", s.output_bytes}};
  if (s.output_lines != 0) j["output_lines"] = s.output_lines;
  if (s.preset) j["preset"] = *s.preset;
  if (s.pid) j["pid"] = *s.pid;
  if (!s.owner.empty()) j["owner"] = s.owner;
  if (!s.labels.empty()) j["labels"] = s.labels;
  if (s.pty) j["pty"] = PtyToJson(*s.pty);
  if (s.end) j["end"] = EndToJson(*s.end);
  if (!s.created_by.empty()) j["created_by"] = s.created_by;
  if (s.supervisor_restarts != 0) j["supervisor_restarts"] = s.supervisor_restarts;
  if (s.egress) j["egress"] = EgressCountersJson(*s.egress);
  return j;
}

// ---- Framing of a JSON document.

Result<std::vector<uint8_t>> Frame(const json& j, std::span<const uint8_t> data = {},
                                   size_t max_bytes = kMaxFrameBytes) {
  std::string text;
  try {
    // `replace`: a string with invalid UTF-8 (say, a cwd read from the filesystem) becomes
    // U+FFFD instead of throwing type_error.316.
    text = j.dump(-1, ' ', false, json::error_handler_t::replace);
  } catch (const std::exception& e) {
    return PlainError(std::string("encode: ") + e.what());
  }
  return EncodeFrame(text, data, max_bytes);
}

// Parses and checks the envelope of `frame`; records problems in `errors`.
Result<void> ParseEnvelope(const FrameView& frame, json* doc) {
  return ParseJson(frame.json, doc, kEnvelopeParse);
}

void CheckNoData(const FrameView& frame, std::string_view what, FieldErrors* errors) {
  if (!frame.data.empty()) {
    errors->Add("", "a data tail (" + std::to_string(frame.data.size()) +
                        " bytes) is not allowed on " + std::string(what));
  }
}
std::vector<uint8_t> TakeData(const FrameView& frame, FieldErrors* errors) {
  if (frame.data.size() > kMaxChunkBytes) {
    errors->Add("", "data tail of " + std::to_string(frame.data.size()) +
                        " bytes exceeds the limit of " + std::to_string(kMaxChunkBytes));
    return {};
  }
  return std::vector<uint8_t>(frame.data.begin(), frame.data.end());
}

// Looks `type` up in `names`; records "unknown <kind> type" when it is not there.
std::optional<size_t> ReadType(ObjectReader& r, std::span<const std::string_view> names,
                               std::string_view kind) {
  const std::string type = r.String("type", kTypeRule);
  if (type.empty()) return std::nullopt;  // missing or mistyped: already recorded
  for (size_t i = 0; i < names.size(); ++i) {
    if (type == names[i]) return i;
  }
  r.Fail("type", "unknown " + std::string(kind) + " type " + QuoteForError(type));
  return std::nullopt;
}

// ---- Requests.

// The optional "principal" of the requests that act on sessions; "" when absent.
std::string ReadPrincipal(ObjectReader& r) {
  return r.OptString("principal", kPrincipalRule).value_or("");
}
void WritePrincipal(const std::string& principal, json& j) {
  if (!principal.empty()) j["principal"] = principal;
}
// Who acts, on the requests that act on a session besides spawn: principal, client and via,
// each optional ("" when absent).
template <typename R>
void ReadActor(ObjectReader& r, R& out) {
  out.principal = ReadPrincipal(r);
  out.client = r.OptString("client", kClientRule).value_or("");
  out.via = r.OptString("via", kViaRule).value_or("");
}
template <typename R>
void WriteActor(const R& in, json& j) {
  WritePrincipal(in.principal, j);
  if (!in.client.empty()) j["client"] = in.client;
  if (!in.via.empty()) j["via"] = in.via;
}

SpawnRequest ReadSpawn(ObjectReader& r) {
  SpawnRequest s;
  s.task = r.String("task", kTaskRule);
  if (auto t = ReadOptEnum<SessionType>(r, "session_type", kSessionTypeNames)) s.type = *t;
  s.preset = r.OptString("preset", kPresetRule);
  s.command = r.OptString("command", kCommandRule);
  // Absent args and empty args differ: `COMMAND -lc TASK` against `COMMAND TASK`.
  if (r.Has("args")) s.args = r.StringArray("args", kMaxArgs, kArgRule);
  s.cwd = r.OptString("cwd", kCwdRule);
  s.env = r.StringMap("env", kMaxEnvEntries, kEnvNameRule, kEnvValueRule);
  s.owner = r.OptString("owner", kOwnerRule).value_or("");
  s.labels = r.StringArray("labels", kMaxLabels, kLabelRule);
  s.max_turns = r.OptUint("max_turns", {1, kMaxTurns});
  if (auto limits = r.OptObject("limits")) s.limits = ReadLimits(*limits);
  if (auto pty = r.OptObject("pty")) s.pty = ReadPty(*pty);
  s.client = r.String("client", kClientRule);
  s.via = r.OptString("via", kViaRule).value_or("");
  s.principal = ReadPrincipal(r);
  s.cwd_within = r.StringArray("cwd_within", common::kMaxTokenWorkspaces, kWorkspaceRule);
  return s;
}

void SpawnToJson(const SpawnRequest& s, json& j) {
  j["task"] = s.task;
  j["session_type"] = Str(ToString(s.type));
  if (s.preset) j["preset"] = *s.preset;
  if (s.command) j["command"] = *s.command;
  if (s.args) j["args"] = *s.args;
  if (s.cwd) j["cwd"] = *s.cwd;
  if (!s.env.empty()) j["env"] = s.env;
  if (!s.owner.empty()) j["owner"] = s.owner;
  if (!s.labels.empty()) j["labels"] = s.labels;
  if (s.max_turns) j["max_turns"] = *s.max_turns;
  if (s.limits) j["limits"] = LimitsToJson(*s.limits);
  if (s.pty) j["pty"] = PtyToJson(*s.pty);
  j["client"] = s.client;
  if (!s.via.empty()) j["via"] = s.via;
  WritePrincipal(s.principal, j);
  if (!s.cwd_within.empty()) j["cwd_within"] = s.cwd_within;
}

// An `audit` request: which members an action takes is fixed (docs/protocol.md "audit"); one
// it does not take is refused as an unknown field would be, and a missing one as required.
AuditRequest ReadAudit(ObjectReader& r) {
  AuditRequest a;
  a.action = ReadEnum<AuditAction>(r, "action", kAuditActionNames);
  enum : unsigned {
    kPrincipal = 1,
    kToken = 2,
    kClient = 4,
    kSession = 8,
    kRoute = 16,
    kReason = 32,
    kOf = 64,
    kCount = 128
  };
  unsigned required = 0;
  unsigned allowed = 0;
  switch (a.action) {
    case AuditAction::kTokenCreate:
    case AuditAction::kTokenRevoke:
      required = kPrincipal | kToken | kClient;
      break;
    case AuditAction::kRead:
      required = kPrincipal | kClient | kSession | kRoute;
      break;
    case AuditAction::kAuthFailed:
      required = kClient | kRoute | kReason;
      break;
    case AuditAction::kRateLimited:
      required = kClient | kRoute;
      break;
    case AuditAction::kSuppressed:
      required = kOf | kCount;
      allowed = kPrincipal | kClient;
      break;
  }
  allowed |= required;
  // A member the action does not take stays unread: RejectUnknown names it.
  auto take = [&](unsigned bit, std::string_view key) {
    if ((allowed & bit) == 0) return false;
    if ((required & bit) != 0) return r.Require(key);
    return r.Has(key);
  };
  if (take(kPrincipal, "principal")) a.principal = r.String("principal", kPrincipalRule);
  if (take(kToken, "token")) a.token = r.String("token", kTokenIdRule);
  if (take(kClient, "client")) a.client = r.String("client", kClientRule);
  a.via = r.OptString("via", kViaRule).value_or("");
  if (take(kSession, "session")) a.session = r.String("session", kSessionIdRule);
  if (take(kRoute, "route")) a.route = r.String("route", kRouteRule);
  if (take(kReason, "reason"))
    a.reason = ReadEnum<AuthFailureReason>(r, "reason", kAuthFailureNames);
  if (take(kOf, "of")) {
    a.of = ReadEnum<AuditAction>(r, "of", kAuditActionNames);
    if (*a.of != AuditAction::kRead && *a.of != AuditAction::kAuthFailed &&
        *a.of != AuditAction::kRateLimited) {
      r.Fail("of", "expected one of read, auth_failed, rate_limited");
    }
  }
  if (take(kCount, "count")) a.count = r.Uint("count", {1, UINT64_MAX});
  return a;
}

RequestBody ReadRequestBody(RequestType type, ObjectReader& r, const FrameView& frame,
                            FieldErrors* errors) {
  if (type != RequestType::kStdin) CheckNoData(frame, ToString(type), errors);
  switch (type) {
    case RequestType::kHello: {
      HelloRequest h;
      h.proto = static_cast<uint32_t>(r.Uint("proto", {1, UINT32_MAX}));
      h.client = r.String("client", kNameRule);
      return h;
    }
    case RequestType::kSpawn:
      return ReadSpawn(r);
    case RequestType::kList: {
      ListRequest l;
      l.owner = r.OptString("owner", kOwnerRule);
      l.label = r.OptString("label", kLabelRule);
      l.state = ReadOptEnum<SessionState>(r, "state", kSessionStateNames);
      l.after = r.OptString("after", kSessionIdRule);
      l.limit = Narrow<uint32_t>(r.OptUint("limit", {1, kMaxListLimit}));
      return l;
    }
    case RequestType::kGet:
      return GetRequest{r.String("session", kSessionIdRule)};
    case RequestType::kKill: {
      KillRequest s{r.String("session", kSessionIdRule)};
      ReadActor(r, s);
      return s;
    }
    case RequestType::kSignal: {
      SignalRequest s{r.String("session", kSessionIdRule)};
      s.signal = static_cast<int32_t>(r.Uint("signal", {1, kMaxSignal}));
      ReadActor(r, s);
      return s;
    }
    case RequestType::kStdin: {
      StdinRequest s{r.String("session", kSessionIdRule), TakeData(frame, errors)};
      ReadActor(r, s);
      return s;
    }
    case RequestType::kCloseStdin: {
      CloseStdinRequest s{r.String("session", kSessionIdRule)};
      ReadActor(r, s);
      return s;
    }
    case RequestType::kResize: {
      ResizeRequest s{r.String("session", kSessionIdRule)};
      s.size.rows = static_cast<uint32_t>(r.Uint("rows", {1, kMaxPtyDimension}));
      s.size.cols = static_cast<uint32_t>(r.Uint("cols", {1, kMaxPtyDimension}));
      ReadActor(r, s);
      return s;
    }
    case RequestType::kSubscribe: {
      SubscribeRequest s{r.String("session", kSessionIdRule)};
      s.since = r.OptUint("since", {});
      return s;
    }
    case RequestType::kUnsubscribe:
      return UnsubscribeRequest{r.String("session", kSessionIdRule)};
    case RequestType::kReadOutput: {
      ReadOutputRequest s{r.String("session", kSessionIdRule)};
      s.since = r.Uint("since", {});
      s.limit =
          static_cast<uint32_t>(r.OptUint("limit", {1, kMaxChunkBytes}).value_or(kMaxChunkBytes));
      return s;
    }
    case RequestType::kPolicies:
      return PoliciesRequest{r.OptString("after", kPresetRule)};
    case RequestType::kHealth:
      return HealthRequest{};
    case RequestType::kAudit:
      return ReadAudit(r);
  }
  return HealthRequest{};  // unreachable: `type` came from the name table
}

// Writes the type-specific members of `body` into `j`.
struct RequestWriter {
  json& j;
  void operator()(const HelloRequest& h) const {
    j["proto"] = h.proto;
    j["client"] = h.client;
  }
  void operator()(const SpawnRequest& s) const { SpawnToJson(s, j); }
  void operator()(const ListRequest& l) const {
    if (l.owner) j["owner"] = *l.owner;
    if (l.label) j["label"] = *l.label;
    if (l.state) j["state"] = Str(ToString(*l.state));
    if (l.after) j["after"] = *l.after;
    if (l.limit) j["limit"] = *l.limit;
  }
  void operator()(const GetRequest& s) const { j["session"] = s.session; }
  void operator()(const KillRequest& s) const {
    j["session"] = s.session;
    WriteActor(s, j);
  }
  void operator()(const SignalRequest& s) const {
    j["session"] = s.session;
    j["signal"] = s.signal;
    WriteActor(s, j);
  }
  void operator()(const StdinRequest& s) const {
    j["session"] = s.session;
    WriteActor(s, j);
  }
  void operator()(const CloseStdinRequest& s) const {
    j["session"] = s.session;
    WriteActor(s, j);
  }
  void operator()(const ResizeRequest& s) const {
    j["session"] = s.session;
    j["rows"] = s.size.rows;
    j["cols"] = s.size.cols;
    WriteActor(s, j);
  }
  void operator()(const SubscribeRequest& s) const {
    j["session"] = s.session;
    if (s.since) j["since"] = *s.since;
  }
  void operator()(const UnsubscribeRequest& s) const { j["session"] = s.session; }
  void operator()(const ReadOutputRequest& s) const {
    j["session"] = s.session;
    j["since"] = s.since;
    j["limit"] = s.limit;
  }
  void operator()(const PoliciesRequest& s) const {
    if (s.after) j["after"] = *s.after;
  }
  void operator()(const HealthRequest&) const {}
  void operator()(const AuditRequest& a) const {
    j["action"] = Str(ToString(a.action));
    if (!a.principal.empty()) j["principal"] = a.principal;
    if (!a.token.empty()) j["token"] = a.token;
    if (!a.client.empty()) j["client"] = a.client;
    if (!a.via.empty()) j["via"] = a.via;
    if (!a.session.empty()) j["session"] = a.session;
    if (!a.route.empty()) j["route"] = a.route;
    if (a.reason) j["reason"] = Str(ToString(*a.reason));
    if (a.of) j["of"] = Str(ToString(*a.of));
    if (a.action == AuditAction::kSuppressed) j["count"] = a.count;
  }
};

// ---- Responses.

OutputRead ReadOutputRead(ObjectReader& r, const FrameView& frame, FieldErrors* errors) {
  OutputRead o;
  const size_t chunks = r.Array("chunks", kMaxReadChunks, true);
  uint64_t covered = 0;  // sum of chunk lengths
  uint64_t end = 0;      // end of the previous chunk
  for (size_t i = 0; i < chunks; ++i) {
    ObjectReader c = r.ObjectItem("chunks", i);
    OutputChunk chunk;
    chunk.stream = ReadEnum<OutputStream>(c, "stream", kStreamNames);
    chunk.offset = c.Uint("offset", {});
    chunk.length = static_cast<uint32_t>(c.Uint("length", {1, kMaxChunkBytes}));
    c.RejectUnknown();
    if (chunk.offset < end || chunk.offset > UINT64_MAX - chunk.length) {
      c.Fail("offset", "chunks overlap, are out of order, or overflow");
    }
    end = chunk.offset + chunk.length;
    covered += chunk.length;
    o.chunks.push_back(chunk);
  }
  const size_t gaps = r.Array("gaps", kMaxReadGaps, false);
  for (size_t i = 0; i < gaps; ++i) {
    ObjectReader g = r.ObjectItem("gaps", i);
    OutputRange range{g.Uint("from", {}), g.Uint("to", {})};
    g.RejectUnknown();
    if (range.from >= range.to) g.Fail("", "empty range: from must be below to");
    o.gaps.push_back(range);
  }
  o.next = r.Uint("next", {});
  o.total = r.Uint("total", {});
  o.ended = r.Bool("ended");
  if (errors->empty()) {
    if (end > o.next) r.Fail("next", "is below the end of the last chunk");
    if (o.next > o.total) r.Fail("next", "is beyond total");
  }
  o.data = TakeData(frame, errors);
  if (errors->empty() && covered != o.data.size()) {
    r.Fail("chunks", "lengths add up to " + std::to_string(covered) + " bytes but the data tail " +
                         "has " + std::to_string(o.data.size()));
  }
  return o;
}

json OutputReadJson(const OutputRead& o) {
  json chunks = json::array();
  for (const OutputChunk& c : o.chunks) {
    chunks.push_back(
        {{"stream", Str(ToString(c.stream))}, {"offset", c.offset}, {"length", c.length}});
  }
  json j = {
      {"chunks", std::move(chunks)}, {"next", o.next}, {"total", o.total}, {"ended", o.ended}};
  if (!o.gaps.empty()) {
    json gaps = json::array();
    for (const OutputRange& g : o.gaps) gaps.push_back({{"from", g.from}, {"to", g.to}});
    j["gaps"] = std::move(gaps);
  }
  return j;
}

// The ok payloads, each under its own member; at most one per response.
constexpr std::array<std::string_view, 5> kPayloadKeys = {"session", "list", "output", "policies",
                                                          "health"};

ResponseBody ReadOkPayload(ObjectReader& r, const FrameView& frame, FieldErrors* errors) {
  size_t present = 0;
  std::string_view key;
  for (std::string_view k : kPayloadKeys) {
    if (r.Has(k)) {
      ++present;
      key = k;
    }
  }
  if (present > 1) {
    r.Fail("", "more than one result member");
    return std::monostate{};
  }
  if (key != "output") CheckNoData(frame, "this response", errors);
  if (key.empty()) return std::monostate{};
  if (key == "session") {
    ObjectReader s = r.Object("session");
    return s.is_object() ? ReadSessionInfo(s) : SessionInfo{};
  }
  if (key == "list") {
    ObjectReader l = r.Object("list");
    SessionList list;
    const size_t n = l.Array("sessions", kMaxListLimit, true);
    for (size_t i = 0; i < n; ++i) {
      ObjectReader s = l.ObjectItem("sessions", i);
      if (s.is_object()) list.sessions.push_back(ReadSessionInfo(s));
    }
    list.more = l.Bool("more");
    l.RejectUnknown();
    return list;
  }
  if (key == "output") {
    ObjectReader o = r.Object("output");
    OutputRead read = ReadOutputRead(o, frame, errors);
    o.RejectUnknown();
    return read;
  }
  if (key == "policies") {
    PolicyList list;
    const size_t n = r.Array("policies", kMaxPolicies, true);
    for (size_t i = 0; i < n; ++i) {
      ObjectReader p = r.ObjectItem("policies", i);
      PolicyInfo info;
      info.name = p.String("name", kPresetRule);
      info.type = ReadEnum<SessionType>(p, "type", kSessionTypeNames);
      info.description = p.OptString("description", kDescriptionRule).value_or("");
      info.bypasses_agent_permissions = p.OptBool("bypasses_agent_permissions").value_or(false);
      // The ranges of the policy fields (docs/policies.md).
      info.memory_max_bytes = p.Uint("memory_max_bytes", common::kMemoryMaxBytesRange);
      info.pids_max = p.Uint("pids_max", common::kPidsMaxRange);
      info.cpu_max_percent = p.OptUint("cpu_max_percent", common::kCpuMaxPercentRange);
      info.wall_seconds = p.Uint("wall_seconds", common::kDeadlineSecondsRange);
      info.idle_seconds = p.Uint("idle_seconds", common::kDeadlineSecondsRange);
      info.network = ReadEnum<NetworkMode>(p, "network", kNetworkModeNames);
      p.RejectUnknown();
      list.policies.push_back(std::move(info));
    }
    list.more = r.OptBool("more").value_or(false);
    return list;
  }
  ObjectReader h = r.Object("health");
  HealthInfo health;
  health.version = h.String("version", kNameRule);
  health.uptime_seconds = h.Uint("uptime_seconds", {});
  health.sessions_active = static_cast<uint32_t>(h.Uint("sessions_active", {0, UINT32_MAX}));
  health.sessions_total = static_cast<uint32_t>(h.Uint("sessions_total", {0, UINT32_MAX}));
  health.max_sessions = static_cast<uint32_t>(h.Uint("max_sessions", {0, UINT32_MAX}));
  health.ready = h.Bool("ready");
  health.reason = h.OptString("reason", kDescriptionRule).value_or("");
  health.sessions_readopted =
      static_cast<uint32_t>(h.OptUint("sessions_readopted", {0, UINT32_MAX}).value_or(0));
  health.readoption_failures =
      static_cast<uint32_t>(h.OptUint("readoption_failures", {0, UINT32_MAX}).value_or(0));
  if (auto egress = h.OptObject("egress")) {
    EgressTotals totals;
    totals.counters = ReadEgressCounters(*egress);
    totals.reports_dropped = egress->Uint("reports_dropped", {});
    totals.reports_refused = egress->Uint("reports_refused", {});
    egress->RejectUnknown();
    health.egress = totals;
  }
  h.RejectUnknown();
  return health;
}

Response ReadResponse(ObjectReader& r, const FrameView& frame, FieldErrors* errors) {
  Response resp;
  resp.id = r.Uint("id", {});
  if (r.Has("error")) {
    ObjectReader e = r.Object("error");
    ErrorBody body;
    body.code = ReadEnum<ErrorCode>(e, "code", kErrorCodeNames);
    body.message = e.String("message", kMessageRule);
    body.field = e.OptString("field", kFieldRule).value_or("");
    e.RejectUnknown();
    CheckNoData(frame, "an error response", errors);
    resp.body = std::move(body);
  } else {
    const bool ok = r.Bool("ok");
    if (errors->empty() && !ok) r.Fail("ok", "must be true (failures carry \"error\")");
    resp.body = ReadOkPayload(r, frame, errors);
  }
  r.RejectUnknown();
  return resp;
}

struct ResponseWriter {
  json& j;
  void operator()(const std::monostate&) const {}
  void operator()(const ErrorBody& e) const {
    j.erase("ok");
    json body = {{"code", Str(ToString(e.code))}, {"message", e.message}};
    if (!e.field.empty()) body["field"] = e.field;
    j["error"] = std::move(body);
  }
  void operator()(const SessionInfo& s) const { j["session"] = SessionInfoJson(s); }
  void operator()(const SessionList& l) const {
    json sessions = json::array();
    for (const SessionInfo& s : l.sessions) sessions.push_back(SessionInfoJson(s));
    j["list"] = {{"sessions", std::move(sessions)}, {"more", l.more}};
  }
  void operator()(const OutputRead& o) const { j["output"] = OutputReadJson(o); }
  void operator()(const PolicyList& l) const {
    json policies = json::array();
    for (const PolicyInfo& p : l.policies) {
      json pj = {{"name", p.name}, {"type", Str(ToString(p.type))}};
      if (!p.description.empty()) pj["description"] = p.description;
      if (p.bypasses_agent_permissions) pj["bypasses_agent_permissions"] = true;
      pj["memory_max_bytes"] = p.memory_max_bytes;
      pj["pids_max"] = p.pids_max;
      if (p.cpu_max_percent) pj["cpu_max_percent"] = *p.cpu_max_percent;
      pj["wall_seconds"] = p.wall_seconds;
      pj["idle_seconds"] = p.idle_seconds;
      pj["network"] = Str(ToString(p.network));
      policies.push_back(std::move(pj));
    }
    j["policies"] = std::move(policies);
    if (l.more) j["more"] = true;
  }
  void operator()(const HealthInfo& h) const {
    json hj = {{"version", h.version},
               {"uptime_seconds", h.uptime_seconds},
               {"sessions_active", h.sessions_active},
               {"sessions_total", h.sessions_total},
               {"max_sessions", h.max_sessions},
               {"ready", h.ready}};
    if (!h.reason.empty()) hj["reason"] = h.reason;
    if (h.sessions_readopted != 0) hj["sessions_readopted"] = h.sessions_readopted;
    if (h.readoption_failures != 0) hj["readoption_failures"] = h.readoption_failures;
    if (h.egress) {
      json ej = EgressCountersJson(h.egress->counters);
      ej["reports_dropped"] = h.egress->reports_dropped;
      ej["reports_refused"] = h.egress->reports_refused;
      hj["egress"] = std::move(ej);
    }
    j["health"] = std::move(hj);
  }
};

// ---- Events.

Event ReadEventBody(size_t type, ObjectReader& r, const FrameView& frame, FieldErrors* errors) {
  if (type != 1) CheckNoData(frame, std::string(kEventTypeNames[type]) + " events", errors);
  switch (type) {
    case 0: {
      ServerHello h;
      h.proto = static_cast<uint32_t>(r.Uint("proto", {1, UINT32_MAX}));
      h.supervisor = r.String("supervisor", kNameRule);
      h.boot_id = r.String("boot_id", kBootIdRule);
      return h;
    }
    case 1: {
      OutputEvent o{r.String("session", kSessionIdRule)};
      o.stream = ReadEnum<OutputStream>(r, "stream", kStreamNames);
      o.offset = r.Uint("offset", {});
      o.data = TakeData(frame, errors);
      if (errors->empty() && o.data.empty()) r.Fail("", "an output event needs a data tail");
      if (errors->empty() && o.offset > UINT64_MAX - o.data.size()) {
        r.Fail("offset", "offset + data length overflows");
      }
      return o;
    }
    case 2: {
      GapEvent g{r.String("session", kSessionIdRule)};
      g.range.from = r.Uint("from", {});
      g.range.to = r.Uint("to", {});
      if (errors->empty() && g.range.from >= g.range.to) {
        r.Fail("to", "must be above from");
      }
      return g;
    }
    case 3: {
      LaggedEvent l{r.String("session", kSessionIdRule)};
      l.resume_from = r.Uint("resume_from", {});
      return l;
    }
    case 4: {
      StateEvent s{r.String("session", kSessionIdRule)};
      s.state = ReadEnum<SessionState>(r, "state", kSessionStateNames);
      return s;
    }
    default: {
      ExitEvent x{r.String("session", kSessionIdRule)};
      ObjectReader end = r.Object("end");
      if (end.is_object()) x.end = ReadEnd(end);
      return x;
    }
  }
}

struct EventWriter {
  json& j;
  void operator()(const ServerHello& h) const {
    j["proto"] = h.proto;
    j["supervisor"] = h.supervisor;
    j["boot_id"] = h.boot_id;
  }
  void operator()(const OutputEvent& o) const {
    j["session"] = o.session;
    j["stream"] = Str(ToString(o.stream));
    j["offset"] = o.offset;
  }
  void operator()(const GapEvent& g) const {
    j["session"] = g.session;
    j["from"] = g.range.from;
    j["to"] = g.range.to;
  }
  void operator()(const LaggedEvent& l) const {
    j["session"] = l.session;
    j["resume_from"] = l.resume_from;
  }
  void operator()(const StateEvent& s) const {
    j["session"] = s.session;
    j["state"] = Str(ToString(s.state));
  }
  void operator()(const ExitEvent& x) const {
    j["session"] = x.session;
    j["end"] = EndToJson(x.end);
  }
};

Result<Response> ResponseFromDoc(const json& doc, const FrameView& frame) {
  FieldErrors errors;
  ObjectReader r(doc, "", &errors);
  Response resp;
  if (r.is_object()) resp = ReadResponse(r, frame, &errors);
  if (!errors.empty()) return errors.ToError();
  return resp;
}

Result<Event> EventFromDoc(const json& doc, const FrameView& frame) {
  FieldErrors errors;
  ObjectReader r(doc, "", &errors);
  Event event;
  if (r.is_object()) {
    // Without a known type there is no member list to check the rest against.
    if (const std::optional<size_t> type = ReadType(r, kEventTypeNames, "event")) {
      event = ReadEventBody(*type, r, frame, &errors);
      r.RejectUnknown();
    }
  }
  if (!errors.empty()) return errors.ToError();
  return event;
}

}  // namespace

std::string_view ToString(SessionState v) { return NameOf(v, kSessionStateNames); }
std::string_view ToString(OutputStream v) { return NameOf(v, kStreamNames); }
std::string_view ToString(RequestType v) { return NameOf(v, kRequestTypeNames); }
std::string_view ToString(AuditAction v) { return NameOf(v, kAuditActionNames); }
std::string_view ToString(AuthFailureReason v) { return NameOf(v, kAuthFailureNames); }

Result<Request> DecodeRequest(const FrameView& frame, DecodeDetail* detail) {
  DecodeDetail scratch;
  if (detail == nullptr) detail = &scratch;
  *detail = {};
  json doc;
  MP_RETURN_IF_ERROR(ParseEnvelope(frame, &doc));
  FieldErrors errors;
  ObjectReader r(doc, "", &errors);
  Request req;
  if (r.is_object()) {
    // Read ahead so a bad_request can echo the id even when the rest is unusable.
    if (const auto it = doc.find("id"); it != doc.end() && it->is_number_unsigned()) {
      detail->id = it->get<uint64_t>();
    }
    if (const std::optional<size_t> type = ReadType(r, kRequestTypeNames, "request")) {
      const auto request_type = static_cast<RequestType>(*type);
      // hello is the handshake and has no id; "id" on it is an unknown field.
      if (request_type != RequestType::kHello) req.id = r.Uint("id", {});
      req.body = ReadRequestBody(request_type, r, frame, &errors);
      r.RejectUnknown();  // without a known type there is no member list to check against
    }
  }
  if (!errors.empty()) {
    detail->field = errors.kept().front().pointer;
    return errors.ToError();
  }
  return req;
}

Result<std::vector<uint8_t>> EncodeRequest(const Request& request) {
  json j = {{"type", Str(ToString(request.type()))}};
  if (request.type() != RequestType::kHello) j["id"] = request.id;
  std::visit(RequestWriter{j}, request.body);
  if (const auto* stdin_req = std::get_if<StdinRequest>(&request.body)) {
    return Frame(j, stdin_req->data, kMaxMessageBytes);
  }
  // A request may be larger than one record (a spawn with a long task): the sender splits it
  // with SplitFrame.
  return Frame(j, {}, kMaxMessageBytes);
}

Result<Response> DecodeResponse(const FrameView& frame) {
  json doc;
  MP_RETURN_IF_ERROR(ParseEnvelope(frame, &doc));
  return ResponseFromDoc(doc, frame);
}

Result<std::vector<uint8_t>> EncodeResponse(const Response& response) {
  json j = {{"id", response.id}, {"ok", true}};
  std::visit(ResponseWriter{j}, response.body);
  if (const auto* read = std::get_if<OutputRead>(&response.body)) return Frame(j, read->data);
  return Frame(j);
}

Result<Event> DecodeEvent(const FrameView& frame) {
  json doc;
  MP_RETURN_IF_ERROR(ParseEnvelope(frame, &doc));
  return EventFromDoc(doc, frame);
}

Result<std::vector<uint8_t>> EncodeEvent(const Event& event) {
  json j = {{"type", Str(kEventTypeNames[event.index()])}};
  std::visit(EventWriter{j}, event);
  if (const auto* output = std::get_if<OutputEvent>(&event)) return Frame(j, output->data);
  return Frame(j);
}

Result<SupervisorMessage> DecodeSupervisorMessage(const FrameView& frame) {
  json doc;
  MP_RETURN_IF_ERROR(ParseEnvelope(frame, &doc));
  if (doc.is_object() && doc.contains("id")) {
    MP_TRY(Response response, ResponseFromDoc(doc, frame));
    return SupervisorMessage(std::move(response));
  }
  MP_TRY(Event event, EventFromDoc(doc, frame));
  return SupervisorMessage(std::move(event));
}

std::string SessionInfoToJson(const SessionInfo& info) {
  return SessionInfoJson(info).dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<SessionInfo> SessionInfoFromJson(std::string_view text) {
  json doc;
  MP_RETURN_IF_ERROR(ParseJson(text, &doc, kEnvelopeParse));
  FieldErrors errors;
  ObjectReader r(doc, "", &errors);
  SessionInfo info;
  if (r.is_object()) info = ReadSessionInfo(r);
  if (!errors.empty()) return errors.ToError();
  return info;
}

PolicyList PolicyPage(const std::vector<PolicyInfo>& all, const std::optional<std::string>& after) {
  // Sizes are measured by encoding: the frame of the page with k entries is the frame of the
  // empty page plus each entry's own bytes plus k - 1 commas. The largest id and `more` are
  // counted whatever the real ones, so the page fits any response that carries it.
  const auto frame_bytes = [](std::vector<PolicyInfo> entries) -> std::optional<size_t> {
    auto frame = EncodeResponse({UINT64_MAX, PolicyList{std::move(entries), true}});
    if (!frame) return std::nullopt;
    return frame->size();
  };
  const size_t base = frame_bytes({}).value_or(kMaxFrameBytes);
  PolicyList page;
  size_t used = base;
  size_t i = 0;
  while (i < all.size() && after && all[i].name <= *after) ++i;
  for (; i < all.size(); ++i) {
    if (page.policies.size() == kMaxPolicies) break;
    // One entry within the decoder's limits is a few KiB and always fits; one that does not
    // (which the decoder would refuse anyway) is left out rather than stalling the paging.
    const std::optional<size_t> alone = frame_bytes({all[i]});
    if (!alone) continue;
    const size_t add = *alone - base + (page.policies.empty() ? 0 : 1);
    if (used + add > kMaxFrameBytes) break;
    used += add;
    page.policies.push_back(all[i]);
  }
  page.more = i < all.size();
  return page;
}

}  // namespace mp::wire
