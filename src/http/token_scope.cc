#include "http/token_scope.h"

#include <algorithm>
#include <array>
#include <csignal>

#include <nlohmann/json.hpp>

#include "common/json_strict.h"
#include "common/messages.h"
#include "common/names.h"

namespace mp::http {
namespace {

using nlohmann::json;

constexpr std::array<std::string_view, 4> kRightNames = {"read", "input", "kill", "create"};
// A POST /tokens body is a few hundred bytes; nesting beyond an array in an object is wrong.
constexpr size_t kMaxMintBodyDepth = 3;
// How much of a bad expression an error quotes.
constexpr size_t kQuoteBytes = 64;

bool IsHexLower(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }
bool IsAlnum(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool HasControl(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f;
  });
}
bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

// Printable and short: a quote of untrusted text inside an error message.
std::string Quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s.substr(0, kQuoteBytes)) {
    const auto u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u >= 0x7f) ? '?' : c;
  }
  if (s.size() > kQuoteBytes) out += "...";
  return out + "\"";
}

ApiError Bad(std::string message, std::string field) {
  return BadRequest(std::move(message), std::move(field));
}

}  // namespace

std::optional<std::string_view> ScopedTokenId(std::string_view token) {
  if (token.size() != kScopedTokenChars || !token.starts_with(kScopedTokenPrefix)) {
    return std::nullopt;
  }
  const std::string_view id = token.substr(kScopedTokenPrefix.size(), kTokenIdChars);
  const size_t sep = kScopedTokenPrefix.size() + kTokenIdChars;
  if (!IsTokenId(id) || token[sep] != '_') return std::nullopt;
  const std::string_view secret = token.substr(sep + 1);
  if (!std::all_of(secret.begin(), secret.end(), IsAlnum)) return std::nullopt;
  return id;
}

bool IsTokenId(std::string_view id) {
  return id.size() == kTokenIdChars && std::all_of(id.begin(), id.end(), IsHexLower);
}

std::string_view ToString(Right right) {
  switch (right) {
    case Right::kRead:
      return kRightNames[0];
    case Right::kInput:
      return kRightNames[1];
    case Right::kKill:
      return kRightNames[2];
    case Right::kCreate:
      return kRightNames[3];
  }
  return "?";
}

std::vector<std::string> RightNames(Rights rights) {
  std::vector<std::string> out;
  for (size_t i = 0; i < kRightNames.size(); ++i) {
    if ((rights & (1u << i)) != 0) out.emplace_back(kRightNames[i]);
  }
  return out;
}

std::optional<Right> ParseRight(std::string_view name) {
  for (size_t i = 0; i < kRightNames.size(); ++i) {
    if (name == kRightNames[i]) return static_cast<Right>(1u << i);
  }
  return std::nullopt;
}

Right SignalRight(int32_t signal) {
  return signal == SIGWINCH || signal == SIGCONT ? Right::kInput : Right::kKill;
}

std::optional<std::string> MissingSignalRight(Rights rights, int32_t signal) {
  const Right needed = SignalRight(signal);
  if ((rights & static_cast<Rights>(needed)) != 0) return std::nullopt;
  const char* abbrev = signal > 0 && signal < NSIG ? sigabbrev_np(signal) : nullptr;
  std::string name = "signal " + std::to_string(signal);
  if (abbrev != nullptr) name += " (" + std::string(abbrev) + ")";
  return "this token lacks the " + std::string(ToString(needed)) + " right, which " + name +
         " needs; only WINCH and CONT need input alone";
}

std::string SessionScope::ToString() const {
  switch (kind) {
    case Kind::kSession:
      return "session:" + value;
    case Kind::kOwner:
      return "owner:" + value;
    case Kind::kLabel:
      return "label:" + value;
  }
  return value;
}

std::variant<SessionScope, std::string> ParseSessionScope(std::string_view text) {
  const size_t colon = text.find(':');
  if (colon == std::string_view::npos) {
    return "scope " + Quote(text) + " is not session:ID, owner:NAME or label:LABEL";
  }
  const std::string_view kind = text.substr(0, colon);
  std::string_view value = text.substr(colon + 1);
  SessionScope scope;
  if (kind == "session") {
    if (!wire::IsValidSessionId(value)) {
      return "scope " + Quote(text) + ": " + Quote(value) + " is not a session id (s-...)";
    }
    scope.kind = SessionScope::Kind::kSession;
    scope.value = std::string(value);
  } else if (kind == "owner") {
    if (value.empty() || value.size() > wire::kMaxOwnerBytes || HasControl(value)) {
      return "scope " + Quote(text) + ": the owner must be 1.." +
             std::to_string(wire::kMaxOwnerBytes) + " bytes without control characters";
    }
    scope.kind = SessionScope::Kind::kOwner;
    scope.value = std::string(value);
  } else if (kind == "label") {
    // The label as a spawn stores it: trimmed and lower-cased.
    while (!value.empty() && IsSpace(value.front())) value.remove_prefix(1);
    while (!value.empty() && IsSpace(value.back())) value.remove_suffix(1);
    if (value.empty() || value.size() > wire::kMaxLabelBytes || HasControl(value)) {
      return "scope " + Quote(text) + ": the label must be 1.." +
             std::to_string(wire::kMaxLabelBytes) + " bytes without control characters";
    }
    scope.kind = SessionScope::Kind::kLabel;
    scope.value = std::string(value);
    for (char& c : scope.value) {
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
  } else {
    return "scope " + Quote(text) + ": " + Quote(kind) + " is not one of session, owner, label";
  }
  return scope;
}

bool TokenScope::Covers(std::string_view id, std::string_view owner,
                        const std::vector<std::string>& labels, std::string_view cwd) const {
  bool named = false;
  switch (sessions.kind) {
    case SessionScope::Kind::kSession:
      named = id == sessions.value;
      break;
    case SessionScope::Kind::kOwner:
      named = owner == sessions.value;
      break;
    case SessionScope::Kind::kLabel:
      named = std::find(labels.begin(), labels.end(), sessions.value) != labels.end();
      break;
  }
  if (!named || workspaces.empty()) return named;
  // The session's cwd is the path monkeyproofd resolved, and a token's workspace is opened
  // without following symlinks: a session the token created has its workspace as a prefix.
  return std::any_of(workspaces.begin(), workspaces.end(), [&](const std::string& w) {
    return cwd == w || (cwd.starts_with(w) && (w.ends_with('/') || cwd[w.size()] == '/'));
  });
}

bool TokenScope::AllowsPreset(std::string_view preset) const {
  return Has(Right::kCreate) && std::binary_search(presets.begin(), presets.end(), preset);
}

namespace {

// The scope members of `doc` (a mint body, or an entry of the client-principals file):
// sessions, rights, presets. Other members are the caller's to check.
std::optional<ApiError> ReadScope(const json& doc, TokenScope* scope) {
  const auto sessions = doc.find("sessions");
  if (sessions == doc.end() || !sessions->is_string()) {
    return Bad("sessions is required: a string session:ID, owner:NAME or label:LABEL", "/sessions");
  }
  auto expression = ParseSessionScope(sessions->get_ref<const std::string&>());
  if (auto* error = std::get_if<std::string>(&expression)) return Bad(*error, "/sessions");
  scope->sessions = std::move(std::get<SessionScope>(expression));

  const auto rights = doc.find("rights");
  if (rights == doc.end() || !rights->is_array() || rights->empty()) {
    return Bad("rights is required: a non-empty array of read, input, kill, create", "/rights");
  }
  for (size_t i = 0; i < rights->size(); ++i) {
    const json& item = (*rights)[i];
    const std::string field = "/rights/" + std::to_string(i);
    if (!item.is_string()) return Bad("each right must be a string", field);
    const auto right = ParseRight(item.get_ref<const std::string&>());
    if (!right) {
      return Bad("unknown right " + Quote(item.get_ref<const std::string&>()) +
                     "; rights are read, input, kill, create",
                 field);
    }
    if (scope->Has(*right))
      return Bad("right " + Quote(ToString(*right)) + " is given twice", field);
    scope->rights |= static_cast<Rights>(*right);
  }

  const auto presets = doc.find("presets");
  if (presets != doc.end() && !presets->is_null()) {
    if (!presets->is_array()) return Bad("presets must be an array of preset names", "/presets");
    if (presets->size() > kMaxTokenPresets) {
      return Bad("at most " + std::to_string(kMaxTokenPresets) + " presets", "/presets");
    }
    for (size_t i = 0; i < presets->size(); ++i) {
      const json& item = (*presets)[i];
      const std::string field = "/presets/" + std::to_string(i);
      if (!item.is_string() || !common::IsPresetName(item.get_ref<const std::string&>())) {
        return Bad("each preset must be a preset name (as GET /policies lists them)", field);
      }
      scope->presets.push_back(item.get<std::string>());
    }
    std::sort(scope->presets.begin(), scope->presets.end());
    scope->presets.erase(std::unique(scope->presets.begin(), scope->presets.end()),
                         scope->presets.end());
  }
  const auto workspaces = doc.find("workspaces");
  if (workspaces != doc.end() && !workspaces->is_null()) {
    if (!workspaces->is_array()) {
      return Bad("workspaces must be an array of absolute directory paths", "/workspaces");
    }
    if (workspaces->size() > common::kMaxTokenWorkspaces) {
      return Bad("at most " + std::to_string(common::kMaxTokenWorkspaces) + " workspaces",
                 "/workspaces");
    }
    for (size_t i = 0; i < workspaces->size(); ++i) {
      const json& item = (*workspaces)[i];
      const std::string field = "/workspaces/" + std::to_string(i);
      if (!item.is_string() || !common::IsWorkspacePath(item.get_ref<const std::string&>())) {
        return Bad("each workspace must be " + std::string(common::kWorkspacePathIs), field);
      }
      const auto& path = item.get_ref<const std::string&>();
      if (std::find(scope->workspaces.begin(), scope->workspaces.end(), path) !=
          scope->workspaces.end()) {
        return Bad("workspace " + Quote(path) + " is given twice", field);
      }
      scope->workspaces.push_back(path);
    }
  }
  if (scope->Has(Right::kCreate) && scope->presets.empty()) {
    return Bad("the create right needs presets: the presets this token may start", "/presets");
  }
  if (!scope->Has(Right::kCreate) && !scope->presets.empty()) {
    return Bad("presets are only for the create right, which rights does not give", "/presets");
  }
  if (scope->Has(Right::kCreate) && scope->workspaces.empty()) {
    return Bad(
        "the create right needs workspaces: the directories (each under a preset's "
        "workspace_roots) this token's sessions may run in, at or below one of them",
        "/workspaces");
  }
  if (!scope->Has(Right::kCreate) && !scope->workspaces.empty()) {
    return Bad("workspaces are only for the create right, which rights does not give",
               "/workspaces");
  }
  if (scope->Has(Right::kCreate) && scope->sessions.kind == SessionScope::Kind::kSession) {
    return Bad(
        "the create right needs sessions owner:NAME or label:LABEL: a new session "
        "can never be the one session a session: scope names",
        "/rights");
  }

  return std::nullopt;
}

ApiResult<json> ParseObject(std::string_view body) {
  json doc;
  if (auto parsed = wire::ParseJson(body, &doc, {kMaxMintBodyDepth, false}); !parsed) {
    std::string what = parsed.error().what;
    if (what.starts_with("JSON: ")) what.erase(0, 6);
    return Bad("body is not valid JSON: " + what, "");
  }
  if (!doc.is_object()) return Bad("body must be a JSON object", "");
  return doc;
}

}  // namespace

ApiResult<MintBody> ParseMintBody(std::string_view body, uint64_t max_ttl_seconds) {
  auto parsed = ParseObject(body);
  if (auto* error = std::get_if<ApiError>(&parsed)) return *error;
  const json& doc = std::get<json>(parsed);
  for (const auto& [key, value] : doc.items()) {
    if (key != "sessions" && key != "rights" && key != "presets" && key != "workspaces" &&
        key != "ttlSeconds") {
      return Bad("unknown member " + Quote(key) +
                     "; a token takes sessions, rights, presets, workspaces and "
                     "ttlSeconds",
                 wire::AppendPointer("", key));
    }
  }
  MintBody out;
  if (auto error = ReadScope(doc, &out.scope)) return *error;

  const auto ttl = doc.find("ttlSeconds");
  const std::string range = "1.." + std::to_string(max_ttl_seconds);
  if (ttl == doc.end() || ttl->is_null()) {
    return Bad("ttlSeconds is required: the token's lifetime in seconds, " + range, "/ttlSeconds");
  }
  if (!ttl->is_number_integer() && !ttl->is_number_unsigned()) {
    return Bad("ttlSeconds must be an integer number of seconds, " + range, "/ttlSeconds");
  }
  const bool negative =
      ttl->is_number_integer() && !ttl->is_number_unsigned() && ttl->get<int64_t>() < 0;
  const uint64_t seconds = negative ? 0 : ttl->get<uint64_t>();
  if (seconds < 1 || seconds > max_ttl_seconds) {
    return Bad("ttlSeconds must be " + range + " (token_max_ttl_seconds in api.conf)",
               "/ttlSeconds");
  }
  out.ttl_seconds = seconds;
  return out;
}

ApiResult<TokenScope> ParseScopeObject(std::string_view text) {
  auto parsed = ParseObject(text);
  if (auto* error = std::get_if<ApiError>(&parsed)) return *error;
  const json& doc = std::get<json>(parsed);
  for (const auto& [key, value] : doc.items()) {
    if (key != "sessions" && key != "rights" && key != "presets" && key != "workspaces") {
      return Bad("unknown member " + Quote(key) +
                     "; a scope takes sessions, rights, presets and workspaces",
                 wire::AppendPointer("", key));
    }
  }
  TokenScope scope;
  if (auto error = ReadScope(doc, &scope)) return *error;
  return scope;
}

std::optional<uint64_t> ParseDuration(std::string_view text) {
  if (text.empty()) return std::nullopt;
  uint64_t unit = 1;
  switch (text.back()) {
    case 's':
      text.remove_suffix(1);
      break;
    case 'm':
      unit = 60;
      text.remove_suffix(1);
      break;
    case 'h':
      unit = 3600;
      text.remove_suffix(1);
      break;
    case 'd':
      unit = 86400;
      text.remove_suffix(1);
      break;
    default:
      break;
  }
  if (text.empty() || text.size() > 12) return std::nullopt;
  uint64_t n = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  if (n == 0) return std::nullopt;
  return n * unit;  // at most 10^12 * 86400 < 2^64
}

}  // namespace mp::http
