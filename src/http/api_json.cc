#include "http/api_json.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <exception>
#include <set>
#include <utility>

#include <nlohmann/json.hpp>

#include "common/json_strict.h"
#include "http/transcript.h"
#include "http/utf8.h"

namespace mp::http {
namespace {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

// Nesting allowed in a request body or client message. Ours need 2; unknown members are
// ignored (compat), so leave room for clients that send a little more structure.
constexpr size_t kMaxBodyDepth = 16;
constexpr size_t kMaxTaskPreviewChars = 500;  // the original's taskPreview
constexpr int64_t kSignalExitBase = 128;      // a signalled process's code: 128 + signal

ApiError Internal(std::string message) { return ApiError{500, "internal", std::move(message), {}}; }

ApiError TooLarge(std::string message, std::string field) {
  return ApiError{413, "too_large", std::move(message), std::move(field)};
}

// Whether any of the 8 bytes in `w` is below 0x20, '"' or '\\': the bytes a JSON string may
// not hold as they are. A byte of 0x80 or more never matches (its complement lacks the high
// bit), so UTF-8 passes through. (Exact: no false positives or negatives.)
bool NeedsEscape(uint64_t w) {
  constexpr uint64_t kOnes = 0x0101010101010101ull;
  constexpr uint64_t kHigh = 0x8080808080808080ull;
  const uint64_t quote = w ^ (kOnes * '"');
  const uint64_t backslash = w ^ (kOnes * '\\');
  const uint64_t below_space = (w - kOnes * 0x20) & ~w;
  const uint64_t zero_quote = (quote - kOnes) & ~quote;
  const uint64_t zero_backslash = (backslash - kOnes) & ~backslash;
  return ((below_space | zero_quote | zero_backslash) & kHigh) != 0;
}

std::string Dump(const ojson& j) {
  // `replace`: strings here come from the supervisor or the kernel (paths, command lines) and
  // need not be valid UTF-8; a bad byte becomes U+FFFD instead of an exception.
  return j.dump(-1, ' ', false, ojson::error_handler_t::replace);
}

// ---- Request parsing helpers.

// Parses `body` as one JSON object (strictly: no duplicate keys, valid UTF-8, bounded depth).
ApiResult<json> ParseObject(std::string_view body) {
  json doc;
  if (auto parsed = wire::ParseJson(body, &doc, {kMaxBodyDepth, false}); !parsed) {
    std::string what = parsed.error().what;
    if (what.starts_with("JSON: ")) what.erase(0, 6);
    return ApiResult<json>(std::in_place_index<1>, BadRequest("body is not valid JSON: " + what));
  }
  if (!doc.is_object()) {
    return ApiResult<json>(std::in_place_index<1>, BadRequest("body must be a JSON object"));
  }
  return ApiResult<json>(std::in_place_index<0>, std::move(doc));
}

// The member `key` of object `obj`, or null when absent or JSON null (both mean "not given").
const json* Member(const json& obj, std::string_view key) {
  const auto it = obj.find(std::string(key));
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

std::string Ptr(std::string_view key) { return wire::AppendPointer("", key); }
std::string Ptr(std::string_view key, size_t index) {
  return wire::AppendPointer(Ptr(key), std::to_string(index));
}

std::optional<uint64_t> AsUint(const json& j) {
  if (j.is_number_unsigned()) return j.get<uint64_t>();
  if (j.is_number_integer() && j.get<int64_t>() >= 0)
    return static_cast<uint64_t>(j.get<int64_t>());
  return std::nullopt;
}

std::optional<uint64_t> UintInRange(const json& j, uint64_t min, uint64_t max) {
  const std::optional<uint64_t> v = AsUint(j);
  if (!v || *v < min || *v > max) return std::nullopt;
  return v;
}

bool HasNul(std::string_view s) { return s.find('\0') != std::string_view::npos; }

bool HasControl(std::string_view s) {
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return true;
  }
  return false;
}

bool IsAsciiSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

using common::IsEnvName;
using common::IsPresetName;

// A string member: nullopt with *error set when it is not a string of min..max bytes free of
// NUL (every string here ends up as argv, envp, a path or log text).
std::optional<std::string> ReadString(const json& j, const std::string& field,
                                      std::string_view name, size_t min_bytes, size_t max_bytes,
                                      std::optional<ApiError>* error) {
  if (!j.is_string()) {
    *error = BadRequest(std::string(name) + " must be a string", field);
    return std::nullopt;
  }
  const auto& s = j.get_ref<const std::string&>();
  if (s.size() < min_bytes) {
    *error = BadRequest(std::string(name) + " must not be empty", field);
    return std::nullopt;
  }
  if (s.size() > max_bytes) {
    *error = BadRequest(
        std::string(name) + " is longer than " + std::to_string(max_bytes) + " bytes", field);
    return std::nullopt;
  }
  if (HasNul(s)) {
    *error = BadRequest(std::string(name) + " must not contain NUL bytes", field);
    return std::nullopt;
  }
  return s;
}

using common::kSessionTypeNames;

std::optional<wire::SessionType> ParseType(const json& j) {
  if (!j.is_string()) return std::nullopt;
  for (size_t i = 0; i < kSessionTypeNames.size(); ++i) {
    if (j.get_ref<const std::string&>() == kSessionTypeNames[i]) {
      return static_cast<wire::SessionType>(i);
    }
  }
  return std::nullopt;
}

std::optional<ApiError> ReadPty(const json& j, std::string_view prefix, wire::PtySize* out) {
  const auto dimension = [&](std::string_view key, uint32_t* value) -> std::optional<ApiError> {
    const std::string field = std::string(prefix) + Ptr(key);
    const json* m = Member(j, key);
    const std::optional<uint64_t> v =
        m == nullptr ? std::nullopt : UintInRange(*m, 1, wire::kMaxPtyDimension);
    if (!v) {
      return BadRequest(std::string(key) + " must be an integer from 1 to " +
                            std::to_string(wire::kMaxPtyDimension),
                        field);
    }
    *value = static_cast<uint32_t>(*v);
    return std::nullopt;
  };
  if (auto e = dimension("rows", &out->rows)) return e;
  return dimension("cols", &out->cols);
}

struct LimitKey {
  std::string_view name;
  std::optional<uint64_t> wire::SpawnLimits::*member;
};
constexpr std::array<LimitKey, 6> kLimitKeys = {{
    {"memoryMaxBytes", &wire::SpawnLimits::memory_max_bytes},
    {"memorySwapMaxBytes", &wire::SpawnLimits::memory_swap_max_bytes},
    {"pidsMax", &wire::SpawnLimits::pids_max},
    {"cpuMaxPercent", &wire::SpawnLimits::cpu_max_percent},
    {"wallSeconds", &wire::SpawnLimits::wall_seconds},
    {"idleSeconds", &wire::SpawnLimits::idle_seconds},
}};

std::optional<ApiError> ReadLimits(const json& j, wire::SpawnLimits* out) {
  if (!j.is_object()) return BadRequest("limits must be an object", "/limits");
  for (const auto& [key, value] : j.items()) {
    const std::string field = wire::AppendPointer("/limits", key);
    const LimitKey* known = nullptr;
    for (const LimitKey& k : kLimitKeys) {
      if (k.name == key) known = &k;
    }
    if (known == nullptr) {
      return BadRequest(
          "unknown limit; known: memoryMaxBytes, memorySwapMaxBytes, pidsMax, "
          "cpuMaxPercent, wallSeconds, idleSeconds",
          field);
    }
    if (value.is_null()) continue;
    const std::optional<uint64_t> v = AsUint(value);
    if (!v) return BadRequest(std::string(key) + " must be a non-negative integer", field);
    out->*(known->member) = *v;
  }
  return std::nullopt;
}

// The spawn body's members in the order the public API documents them. Returns the first
// problem.
std::optional<ApiError> ReadSpawn(const json& body, wire::SpawnRequest* s) {
  std::optional<ApiError> error;

  // task
  const json* task = Member(body, "task");
  if (task == nullptr || (task->is_string() && task->get_ref<const std::string&>().empty())) {
    return BadRequest("task is required", "/task");
  }
  if (!task->is_string()) {
    return BadRequest("task must be a string: the command line (exec) or the prompt", "/task");
  }
  s->task = task->get<std::string>();
  if (s->task.size() > kMaxSpawnTaskBytes) {
    return TooLarge("task of " + std::to_string(s->task.size()) + " bytes exceeds the limit of " +
                        std::to_string(kMaxSpawnTaskBytes) + " bytes for one spawn",
                    "/task");
  }
  if (HasNul(s->task)) return BadRequest("task must not contain NUL bytes", "/task");

  // type / mode
  std::optional<wire::SessionType> type;
  for (const std::string_view key : {"type", "mode"}) {
    const json* m = Member(body, key);
    if (m == nullptr) continue;
    const std::optional<wire::SessionType> t = ParseType(*m);
    if (!t) {
      return BadRequest(std::string(key) + " must be one of exec, print, interactive", Ptr(key));
    }
    if (type && *type != *t) return BadRequest("type and mode disagree", "/mode");
    type = t;
  }
  s->type = type.value_or(wire::SessionType::kExec);

  // preset
  if (const json* m = Member(body, "preset")) {
    if (s->type == wire::SessionType::kExec) {
      return BadRequest("preset is only valid for print and interactive sessions", "/preset");
    }
    if (!m->is_string() || !IsPresetName(m->get_ref<const std::string&>())) {
      return BadRequest("preset must be a policy name ([a-z0-9][a-z0-9-]*, at most 64 bytes)",
                        "/preset");
    }
    s->preset = m->get<std::string>();
  }

  // cwd
  if (const json* m = Member(body, "cwd")) {
    s->cwd = ReadString(*m, "/cwd", "cwd", 1, wire::kMaxPathBytes, &error);
    if (error) return error;
    // A relative cwd is resolved by the supervisor against the default workspace.
  }

  // command, args
  if (const json* m = Member(body, "command")) {
    s->command = ReadString(*m, "/command", "command", 1, wire::kMaxCommandBytes, &error);
    if (error) return error;
  }
  if (const json* m = Member(body, "args")) {
    if (!m->is_array()) return BadRequest("args must be an array of strings", "/args");
    if (m->size() > wire::kMaxArgs) {
      return BadRequest("at most " + std::to_string(wire::kMaxArgs) + " args", "/args");
    }
    s->args.emplace();
    for (size_t i = 0; i < m->size(); ++i) {
      auto arg = ReadString((*m)[i], Ptr("args", i), "each arg", 0, wire::kMaxArgBytes, &error);
      if (error) return error;
      s->args->push_back(std::move(*arg));
    }
  }

  // maxTurns
  if (const json* m = Member(body, "maxTurns")) {
    s->max_turns = UintInRange(*m, 1, wire::kMaxTurns);
    if (!s->max_turns) {
      return BadRequest("maxTurns must be an integer from 1 to " + std::to_string(wire::kMaxTurns),
                        "/maxTurns");
    }
  }

  // env
  if (const json* m = Member(body, "env")) {
    if (!m->is_object()) return BadRequest("env must be an object of strings", "/env");
    if (m->size() > wire::kMaxEnvEntries) {
      return BadRequest("at most " + std::to_string(wire::kMaxEnvEntries) + " env entries", "/env");
    }
    for (const auto& [name, value] : m->items()) {
      const std::string field = wire::AppendPointer("/env", name);
      if (!IsEnvName(name)) {
        return BadRequest("env names must match [A-Za-z_][A-Za-z0-9_]* (at most " +
                              std::to_string(wire::kMaxEnvNameBytes) + " bytes)",
                          field);
      }
      auto v = ReadString(value, field, "each env value", 0, wire::kMaxEnvValueBytes, &error);
      if (error) return error;
      s->env.emplace(name, std::move(*v));
    }
  }

  // owner
  if (const json* m = Member(body, "owner")) {
    auto owner = ReadString(*m, "/owner", "owner", 0, wire::kMaxOwnerBytes, &error);
    if (error) return error;
    if (HasControl(*owner)) {
      return BadRequest("owner must not contain control characters", "/owner");
    }
    s->owner = std::move(*owner);
  }

  // labels: trimmed, lower-cased, empty ones dropped, de-duplicated (first occurrence kept).
  if (const json* m = Member(body, "labels")) {
    if (!m->is_array()) return BadRequest("labels must be an array of strings", "/labels");
    std::set<std::string> seen;
    for (size_t i = 0; i < m->size(); ++i) {
      const json& item = (*m)[i];
      const std::string field = Ptr("labels", i);
      if (!item.is_string()) return BadRequest("labels must be strings", field);
      std::string_view raw = item.get_ref<const std::string&>();
      while (!raw.empty() && IsAsciiSpace(raw.front())) raw.remove_prefix(1);
      while (!raw.empty() && IsAsciiSpace(raw.back())) raw.remove_suffix(1);
      if (raw.empty()) continue;
      if (raw.size() > wire::kMaxLabelBytes) {
        return BadRequest("label is longer than " + std::to_string(wire::kMaxLabelBytes) + " bytes",
                          field);
      }
      if (HasControl(raw)) return BadRequest("label contains control characters", field);
      std::string label(raw);
      for (char& c : label) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
      }
      if (!seen.insert(label).second) continue;
      if (s->labels.size() == wire::kMaxLabels) {
        return BadRequest("at most " + std::to_string(wire::kMaxLabels) + " distinct labels",
                          field);
      }
      s->labels.push_back(std::move(label));
    }
  }

  // limits, pty (ours: unknown members are mistakes, not another client's extensions)
  if (const json* m = Member(body, "limits")) {
    wire::SpawnLimits limits;
    if (auto e = ReadLimits(*m, &limits)) return e;
    s->limits = limits;
  }
  if (const json* m = Member(body, "pty")) {
    if (!m->is_object()) return BadRequest("pty must be an object {rows, cols}", "/pty");
    for (const auto& [key, value] : m->items()) {
      if (key != "rows" && key != "cols") {
        return BadRequest("unknown member of pty", wire::AppendPointer("/pty", key));
      }
    }
    wire::PtySize pty;
    if (auto e = ReadPty(*m, "/pty", &pty)) return e;
    s->pty = pty;
  }
  return std::nullopt;
}

// The spawn as it will go to the supervisor must fit one control message (wire::SplitFrame
// sends it in parts when it is over one record).
std::optional<ApiError> CheckEncodes(const wire::SpawnRequest& spawn) {
  wire::Request request;
  request.id = 1;
  request.body = spawn;
  const Result<std::vector<uint8_t>> encoded = wire::EncodeRequest(request);
  if (encoded) return std::nullopt;
  if (encoded.error().errnum != EMSGSIZE) return Internal("encoding the spawn request failed");
  // Name the member that contributes most.
  size_t args_bytes = 0;
  for (const std::string& a : spawn.args.value_or(std::vector<std::string>{})) {
    args_bytes += a.size();
  }
  size_t env_bytes = 0;
  for (const auto& [name, value] : spawn.env) env_bytes += name.size() + value.size();
  std::string field = "/task";
  size_t largest = spawn.task.size();
  if (args_bytes > largest) {
    field = "/args";
    largest = args_bytes;
  }
  if (env_bytes > largest) field = "/env";
  return TooLarge("request too large for one spawn: task, args and env together, as JSON, exceed " +
                      std::to_string(wire::kMaxMessageBytes) + " bytes",
                  field);
}

// The value of a "signal" member: a name or a number 1..kMaxSignal.
std::optional<int32_t> SignalOf(const json& j) {
  if (j.is_string()) return ParseSignal(j.get_ref<const std::string&>());
  if (const auto v = UintInRange(j, 1, static_cast<uint64_t>(wire::kMaxSignal))) {
    return static_cast<int32_t>(*v);
  }
  return std::nullopt;
}

ApiResult<int32_t> ReadSignalMember(const json& obj) {
  const json* m = Member(obj, "signal");
  if (m == nullptr) return BadRequest("signal is required", "/signal");
  const std::optional<int32_t> signal = SignalOf(*m);
  if (!signal) {
    return BadRequest("signal must be a signal name (TERM, SIGINT, ...) or a number from 1 to " +
                          std::to_string(wire::kMaxSignal),
                      "/signal");
  }
  return *signal;
}

// Runs a parser, turning any escaping exception (allocation failure, a library surprise) into a
// 500: the parsers' callers rely on "no exceptions escape".
template <typename T, typename F>
ApiResult<T> Guard(F&& parse) {
  try {
    return parse();
  } catch (const std::exception& e) {
    return Internal(std::string("parsing the request failed: ") + e.what());
  }
}

// ---- Response helpers.

std::string Valid(std::string_view s) { return ToValidUtf8(s); }

// The task preview is the task's first bytes: a character cut at its end is dropped, not
// shown as U+FFFD.
std::string ValidPreview(std::string_view s) {
  std::string out;
  Utf8Carry carry;
  carry.Feed(s, &out);
  return out;
}

// The first `max_chars` code points of valid UTF-8 `s`.
std::string FirstChars(const std::string& s, size_t max_chars) {
  size_t chars = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) {
      if (chars == max_chars) return s.substr(0, i);
      ++chars;
    }
  }
  return s;
}

ojson OptU64(const std::optional<uint64_t>& v) { return v ? ojson(*v) : ojson(nullptr); }
ojson OptI64(const std::optional<int64_t>& v) { return v ? ojson(*v) : ojson(nullptr); }

// An interactive session ended by DELETE: the original reported it "killed" with no exit code
// (it killed the tmux session, whose end it never saw).
bool InteractiveKilledByRequest(const wire::SessionInfo& info) {
  return info.type == wire::SessionType::kInteractive && info.end &&
         info.end->reason == wire::EndReason::kKilledByRequest;
}

ojson InfoObject(const wire::SessionInfo& info, uint32_t ws_clients) {
  const std::optional<wire::EndRecord>& end = info.end;
  const std::string task = ValidPreview(info.task_preview);
  ojson j = ojson::object();
  // The original's members, in its order.
  j["id"] = info.id;
  j["task"] = task;
  j["taskPreview"] = FirstChars(task, kMaxTaskPreviewChars);
  j["cwd"] = Valid(info.cwd);
  j["command"] = Valid(info.command);
  j["type"] = std::string(wire::ToString(info.type));
  j["status"] = std::string(PublicStatus(info));
  j["exitCode"] = OptI64(PublicExitCode(info));
  j["pid"] = info.pid ? ojson(*info.pid) : ojson(nullptr);
  j["createdAt"] = IsoTime(info.created_at_ms);
  j["endedAt"] = end ? ojson(IsoTime(end->ended_at_ms)) : ojson(nullptr);
  j["outputLines"] = info.output_lines;
  j["wsClients"] = ws_clients;
  j["owner"] = info.owner.empty() ? ojson(nullptr) : ojson(Valid(info.owner));  // as the original
  ojson labels = ojson::array();
  for (const std::string& label : info.labels) labels.push_back(Valid(label));
  j["labels"] = std::move(labels);
  // Ours.
  j["state"] = std::string(wire::ToString(info.state));
  j["preset"] = info.preset ? ojson(Valid(*info.preset)) : ojson(nullptr);
  // Who spawned it (Principal::ToString); null for a session recorded before attribution.
  j["createdBy"] = info.created_by.empty() ? ojson(nullptr) : ojson(info.created_by);
  j["outputBytes"] = info.output_bytes;
  j["supervisorRestarts"] = info.supervisor_restarts;
  j["endReason"] = end ? ojson(std::string(wire::ToString(end->reason))) : ojson(nullptr);
  if (end && !end->detail.empty()) j["endDetail"] = Valid(end->detail);
  j["signal"] = end && end->signal ? ojson(*end->signal) : ojson(nullptr);
  if (info.pty) {
    j["pty"] = ojson{{"rows", info.pty->rows}, {"cols", info.pty->cols}};
  } else {
    j["pty"] = nullptr;
  }
  if (end) {
    ojson r = ojson::object();
    r["memoryPeakBytes"] = OptU64(end->memory_peak_bytes);
    r["cpuUsageUsec"] = OptU64(end->cpu_usage_usec);
    r["pidsPeak"] = OptU64(end->pids_peak);
    j["resources"] = std::move(r);
  } else {
    j["resources"] = nullptr;
  }
  // Allowlist sessions: their egress verdicts so far (null for the other network modes, and
  // from a supervisor of protocol version 4 or older).
  if (info.egress) {
    const wire::EgressCounters& e = *info.egress;
    j["egress"] = ojson{{"allowed", e.allowed},
                        {"denied", e.denied},
                        {"bytesUp", e.bytes_up},
                        {"bytesDown", e.bytes_down},
                        {"dnsAnswered", e.dns_answered},
                        {"dnsRefused", e.dns_refused},
                        {"gatewayRequests", e.gateway_requests}};
  } else {
    j["egress"] = nullptr;
  }
  return j;
}

// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar, by eras of
// 400 years (146097 days); valid for every day count a uint64 of milliseconds can produce.
void CivilFromDays(int64_t days, int64_t* year, unsigned* month, unsigned* day) {
  const int64_t z = days + 719468;  // days since 0000-03-01
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<uint64_t>(z - era * 146097);                    // [0, 146096]
  const uint64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;  // [0, 399]
  const uint64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);                // [0, 365]
  const uint64_t mp = (5 * doy + 2) / 153;                                     // March = 0
  *day = static_cast<unsigned>(doy - (153 * mp + 2) / 5 + 1);
  *month = static_cast<unsigned>(mp < 10 ? mp + 3 : mp - 9);
  *year = static_cast<int64_t>(yoe) + era * 400 + (*month <= 2 ? 1 : 0);
}

void AppendPadded(std::string* out, uint64_t value, size_t width) {
  std::string digits = std::to_string(value);
  if (digits.size() < width) out->append(width - digits.size(), '0');
  *out += digits;
}

}  // namespace

// ---- Request bodies.

ApiResult<wire::SpawnRequest> ParseSpawnBody(std::string_view body, std::string client) {
  return Guard<wire::SpawnRequest>([&]() -> ApiResult<wire::SpawnRequest> {
    ApiResult<json> doc = ParseObject(body);
    if (doc.index() == 1) return std::get<1>(std::move(doc));
    wire::SpawnRequest spawn;
    if (auto e = ReadSpawn(std::get<0>(doc), &spawn)) return *std::move(e);
    spawn.client = std::move(client);
    if (auto e = CheckEncodes(spawn)) return *std::move(e);
    return spawn;
  });
}

ApiResult<std::string> ParseInputBody(std::string_view body) {
  return Guard<std::string>([&]() -> ApiResult<std::string> {
    ApiResult<json> doc = ParseObject(body);
    if (doc.index() == 1) return std::get<1>(std::move(doc));
    const json* input = Member(std::get<0>(doc), "input");
    // As the original (`if (!body.input)`): an empty string is no input either.
    if (input == nullptr || !input->is_string() || input->get_ref<const std::string&>().empty()) {
      return BadRequest("input is required", "/input");
    }
    return input->get<std::string>();
  });
}

ApiResult<wire::PtySize> ParseResizeBody(std::string_view body) {
  return Guard<wire::PtySize>([&]() -> ApiResult<wire::PtySize> {
    ApiResult<json> doc = ParseObject(body);
    if (doc.index() == 1) return std::get<1>(std::move(doc));
    wire::PtySize size;
    if (auto e = ReadPty(std::get<0>(doc), "", &size)) return *std::move(e);
    return size;
  });
}

ApiResult<int32_t> ParseSignalBody(std::string_view body) {
  return Guard<int32_t>([&]() -> ApiResult<int32_t> {
    ApiResult<json> doc = ParseObject(body);
    if (doc.index() == 1) return std::get<1>(std::move(doc));
    return ReadSignalMember(std::get<0>(doc));
  });
}

std::optional<int32_t> ParseSignal(std::string_view text) {
  struct Named {
    std::string_view name;
    int32_t number;
  };
  static constexpr std::array<Named, 31> kSignals = {{
      {"HUP", SIGHUP},   {"INT", SIGINT},       {"QUIT", SIGQUIT}, {"ILL", SIGILL},
      {"TRAP", SIGTRAP}, {"ABRT", SIGABRT},     {"BUS", SIGBUS},   {"FPE", SIGFPE},
      {"KILL", SIGKILL}, {"USR1", SIGUSR1},     {"SEGV", SIGSEGV}, {"USR2", SIGUSR2},
      {"PIPE", SIGPIPE}, {"ALRM", SIGALRM},     {"TERM", SIGTERM}, {"STKFLT", SIGSTKFLT},
      {"CHLD", SIGCHLD}, {"CONT", SIGCONT},     {"STOP", SIGSTOP}, {"TSTP", SIGTSTP},
      {"TTIN", SIGTTIN}, {"TTOU", SIGTTOU},     {"URG", SIGURG},   {"XCPU", SIGXCPU},
      {"XFSZ", SIGXFSZ}, {"VTALRM", SIGVTALRM}, {"PROF", SIGPROF}, {"WINCH", SIGWINCH},
      {"IO", SIGIO},     {"PWR", SIGPWR},       {"SYS", SIGSYS},
  }};
  if (text.empty() || text.size() > 16) return std::nullopt;
  if (text[0] >= '0' && text[0] <= '9') {
    const std::optional<uint64_t> n = ParseUnsigned(text);
    if (!n || *n < 1 || *n > static_cast<uint64_t>(wire::kMaxSignal)) return std::nullopt;
    return static_cast<int32_t>(*n);
  }
  std::string upper(text);
  for (char& c : upper) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  std::string_view name = upper;
  if (name.starts_with("SIG")) name.remove_prefix(3);
  for (const Named& s : kSignals) {
    if (s.name == name) return s.number;
  }
  return std::nullopt;
}

// ---- WebSocket client messages.

ApiResult<WsClientMessage> ParseWsClientMessage(std::string_view text) {
  return Guard<WsClientMessage>([&]() -> ApiResult<WsClientMessage> {
    ApiResult<json> doc = ParseObject(text);
    if (doc.index() == 1) return std::get<1>(std::move(doc));
    const json& msg = std::get<0>(doc);
    const json* type = Member(msg, "type");
    std::string_view kind;
    if (type != nullptr && type->is_string()) kind = type->get_ref<const std::string&>();
    if (kind == "stdin") {
      const json* data = Member(msg, "data");
      if (data == nullptr || !data->is_string()) return BadRequest("data is required", "/data");
      return WsClientMessage{WsStdin{data->get<std::string>()}};
    }
    if (kind == "resize") {
      WsResize resize;
      if (auto e = ReadPty(msg, "", &resize.size)) return *std::move(e);
      return WsClientMessage{resize};
    }
    if (kind == "signal") {
      ApiResult<int32_t> signal = ReadSignalMember(msg);
      if (signal.index() == 1) return std::get<1>(std::move(signal));
      return WsClientMessage{WsSignal{std::get<0>(signal)}};
    }
    if (kind == "close-stdin") return WsClientMessage{WsCloseStdin{}};
    return BadRequest("type must be one of stdin, resize, signal, close-stdin", "/type");
  });
}

// ---- Query strings.

ApiResult<StatusFilter> ParseStatusFilter(std::string_view value) {
  using S = wire::SessionState;
  StatusFilter filter;
  if (value == "running" || value == "exited" || value == "killed") {
    filter.status = value;
  } else if (value == "starting") {
    filter.state = S::kStarting;
  } else if (value == "failed") {
    filter.state = S::kFailed;
  } else {
    return BadRequest("status must be one of running, exited, killed, starting, failed", "?status");
  }
  return filter;
}

ApiResult<StatusFilter> ParseStateFilter(std::string_view value) {
  using S = wire::SessionState;
  for (const S state : {S::kStarting, S::kRunning, S::kExited, S::kKilled, S::kFailed}) {
    if (value == wire::ToString(state)) {
      StatusFilter filter;
      filter.state = state;
      return filter;
    }
  }
  return BadRequest("state must be one of starting, running, exited, killed, failed", "?state");
}

std::optional<uint64_t> ParseUnsigned(std::string_view text) {
  if (text.empty() || text.size() > 20) return std::nullopt;
  uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    const auto digit = static_cast<uint64_t>(c - '0');
    if (value > (UINT64_MAX - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
  }
  return value;
}

// ---- Responses.

std::string_view PublicStatus(const wire::SessionInfo& info) {
  switch (info.state) {
    case wire::SessionState::kStarting:
    case wire::SessionState::kRunning:
      return "running";
    case wire::SessionState::kExited:
    case wire::SessionState::kFailed:
      return "exited";
    case wire::SessionState::kKilled:
      // The original's "killed" lasted until the process was gone; then it read "exited" with
      // the code Bun reports (128 + signal). Only its interactive sessions stayed "killed".
      if (InteractiveKilledByRequest(info)) return "killed";
      return PublicExitCode(info) ? "exited" : "killed";
  }
  return "exited";
}

std::optional<int64_t> PublicExitCode(const wire::SessionInfo& info) {
  if (!info.end || InteractiveKilledByRequest(info)) return std::nullopt;
  if (info.end->exit_code) return *info.end->exit_code;
  if (info.end->signal) return kSignalExitBase + *info.end->signal;
  return std::nullopt;
}

bool StatusFilter::Matches(const wire::SessionInfo& info) const {
  if (state) return info.state == *state;
  return PublicStatus(info) == status;
}

std::string IsoTime(uint64_t epoch_ms) {
  const uint64_t seconds = epoch_ms / 1000;
  const uint64_t of_day = seconds % 86400;
  int64_t year = 0;
  unsigned month = 0;
  unsigned day = 0;
  CivilFromDays(static_cast<int64_t>(seconds / 86400), &year, &month, &day);
  std::string out;
  out.reserve(24);
  AppendPadded(&out, static_cast<uint64_t>(year), 4);  // year >= 1970
  out += '-';
  AppendPadded(&out, month, 2);
  out += '-';
  AppendPadded(&out, day, 2);
  out += 'T';
  AppendPadded(&out, of_day / 3600, 2);
  out += ':';
  AppendPadded(&out, of_day / 60 % 60, 2);
  out += ':';
  AppendPadded(&out, of_day % 60, 2);
  out += '.';
  AppendPadded(&out, epoch_ms % 1000, 3);
  out += 'Z';
  return out;
}

std::string SessionInfoJson(const wire::SessionInfo& info, uint32_t ws_clients) {
  return Dump(InfoObject(info, ws_clients));
}

std::string SessionDetailJson(const wire::SessionInfo& info, uint32_t ws_clients,
                              const wire::OutputRead& recent, bool starts_at_line) {
  ojson j = InfoObject(info, ws_clients);
  j["recentOutput"] = ToValidUtf8(MarkedText(recent, starts_at_line));
  j["transcriptPath"] = "/sessions/" + info.id + "/transcript";
  return Dump(j);
}

std::string SessionListJson(const std::vector<wire::SessionInfo>& sessions,
                            const std::vector<uint32_t>& ws_clients) {
  ojson j = ojson::array();
  for (size_t i = 0; i < sessions.size(); ++i) {
    j.push_back(InfoObject(sessions[i], i < ws_clients.size() ? ws_clients[i] : 0));
  }
  return Dump(j);
}

std::string PolicyListJson(const wire::PolicyList& policies) {
  ojson list = ojson::array();
  for (const wire::PolicyInfo& p : policies.policies) {
    ojson j = ojson::object();
    j["name"] = Valid(p.name);
    j["type"] = std::string(wire::ToString(p.type));
    j["description"] = Valid(p.description);
    j["bypassesAgentPermissions"] = p.bypasses_agent_permissions;
    // The most a spawn may ask for, in the shape of its `limits` (null / 0: none).
    ojson limits = ojson::object();
    limits["memoryMaxBytes"] = p.memory_max_bytes;
    limits["pidsMax"] = p.pids_max;
    limits["cpuMaxPercent"] = OptU64(p.cpu_max_percent);
    limits["wallSeconds"] = p.wall_seconds;
    limits["idleSeconds"] = p.idle_seconds;
    j["limits"] = std::move(limits);
    j["network"] = std::string(wire::ToString(p.network));
    list.push_back(std::move(j));
  }
  ojson j = ojson::object();
  j["policies"] = std::move(list);
  return Dump(j);
}

// ---- WebSocket server messages.

void AppendJsonStringBody(std::string_view utf8, std::string* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  const char* p = utf8.data();
  const size_t n = utf8.size();
  size_t i = 0;
  size_t run = 0;  // start of the bytes not yet appended
  while (i < n) {
    if (n - i >= 8) {
      uint64_t w;
      std::memcpy(&w, p + i, sizeof w);
      if (!NeedsEscape(w)) {
        i += 8;
        continue;
      }
    }
    const auto c = static_cast<unsigned char>(p[i]);
    if (c >= 0x20 && c != '"' && c != '\\') {
      ++i;
      continue;
    }
    out->append(p + run, i - run);
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\b':
        out->append("\\b");
        break;
      case '\f':
        out->append("\\f");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default: {
        const char u[] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xF]};
        out->append(u, sizeof u);
      }
    }
    run = ++i;
  }
  out->append(p + run, n - run);
}

std::string WsCatchupJson(const wire::SessionInfo& info, std::string_view data, uint64_t offset,
                          uint64_t next) {
  ojson j = ojson::object();
  j["type"] = "catchup";
  j["id"] = info.id;
  j["task"] = ValidPreview(info.task_preview);
  j["status"] = std::string(PublicStatus(info));
  j["exitCode"] = OptI64(PublicExitCode(info));
  j["data"] = std::string(data);
  j["offset"] = offset;
  j["next"] = next;
  return Dump(j);
}

std::string WsOutputJson(wire::OutputStream stream, std::string_view utf8_data, uint64_t offset,
                         uint64_t next) {
  // Written by hand rather than through nlohmann::json: this is every output byte of every
  // WebSocket message, and the library escapes byte by byte (bench/README.md, api_bench).
  // The result is the same text Dump() gives for {type, data, offset, next}.
  std::string out;
  out.reserve(utf8_data.size() + utf8_data.size() / 8 + 80);
  out += stream == wire::OutputStream::kStderr ? R"({"type":"stderr","data":")"
                                               : R"({"type":"stdout","data":")";
  AppendJsonStringBody(utf8_data, &out);
  out += R"(","offset":)";
  out += std::to_string(offset);
  out += R"(,"next":)";
  out += std::to_string(next);
  out += '}';
  return out;
}

std::string WsGapJson(uint64_t from, uint64_t to) {
  ojson j = ojson::object();
  j["type"] = "gap";
  j["from"] = from;
  j["to"] = to;
  return Dump(j);
}

std::string WsLaggedJson(uint64_t resume_from) {
  ojson j = ojson::object();
  j["type"] = "lagged";
  j["resumeFrom"] = resume_from;
  return Dump(j);
}

std::string WsKilledJson() { return R"({"type":"killed"})"; }

std::string WsExitJson(const wire::SessionInfo& info, const wire::EndRecord& end,
                       uint64_t final_offset) {
  int64_t code = -1;
  if (end.exit_code) {
    code = *end.exit_code;
  } else if (end.signal) {
    code = kSignalExitBase + *end.signal;
  }
  // A clock step could put the end before the start; report 0 rather than wrap.
  const uint64_t elapsed_ms =
      end.ended_at_ms > info.created_at_ms ? end.ended_at_ms - info.created_at_ms : 0;
  ojson j = ojson::object();
  j["type"] = "exit";
  j["code"] = code;
  j["duration"] = (elapsed_ms + 500) / 1000;  // whole seconds, rounded as the original did
  j["durationMs"] = elapsed_ms;
  j["reason"] = std::string(wire::ToString(end.reason));
  j["signal"] = end.signal ? ojson(*end.signal) : ojson(nullptr);
  j["offset"] = final_offset;
  return Dump(j);
}

std::string WsErrorJson(const ApiError& error) {
  ojson j = ojson::object();
  j["type"] = "error";
  j["error"] = error.message;
  j["code"] = error.code;
  if (!error.field.empty()) j["field"] = error.field;
  return Dump(j);
}

}  // namespace mp::http
