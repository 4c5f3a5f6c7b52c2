#include "cli/token_command.h"

#include <algorithm>
#include <array>
#include <limits>

#include <nlohmann/json.hpp>

#include "cli/format.h"
#include "common/names.h"

namespace mp::cli {
namespace {

using json = nlohmann::json;

constexpr std::string_view kTokenHelp =
    R"(Usage: monkeyproof token create (--session ID | --owner NAME | --label LABEL)
                               --rights RIGHTS [--preset NAME]... [--workspace DIR]...
                               [--ttl DURATION]
       monkeyproof token ls
       monkeyproof token revoke ID...

Scoped tokens (docs/api.md, "Scoped tokens"): tokens limited to some sessions and some rights,
for a CI job, a dashboard or an orchestrator that should not hold the admin token. Minting,
listing and revoking need an admin token (a token of the server's token file) as this
client's token.

create prints the new token on stdout, once: the server keeps only its hash. Its id, scope and
expiry go to stderr. Give the token to the client that needs it, e.g. in its
MONKEYPROOF_TOKEN_FILE.

Options of create:
  --session ID       the scope: this one session
  --owner NAME       the scope: sessions whose owner is NAME (a session this token creates
                     gets NAME as its owner)
  --label LABEL      the scope: sessions carrying LABEL (e.g. team=red)
  --rights RIGHTS    comma-separated: read (list, show, logs, output), input (send, resize,
                     signal, attach's keys), kill, create (run)
  --preset NAME      a preset `create` may start (repeatable; required with create)
  --workspace DIR    a directory `create` may run sessions in, at or below it (repeatable;
                     required with create; absolute, below a preset's workspace_roots, no
                     symlink in it); a session created without --cwd runs in the first
  --ttl DURATION     how long the token lives: seconds, or with s, m, h or d (default 1h;
                     at most the server's token_max_ttl_seconds)

ls lists the tokens not yet expired (never their secrets); revoke ends each ID at once and for
good (it survives a server restart).

Examples:
  monkeyproof token create --owner ci --rights read,input,create --preset claude \
      --workspace /srv/monkeyproof/workspaces/ci --ttl 8h > ci.token
  MONKEYPROOF_TOKEN_FILE=ci.token monkeyproof run --type print --preset claude "fix the test"
  monkeyproof token revoke 3f0c1a2b4c5d6e7f
)";

constexpr std::array<std::string_view, 4> kRights = {"read", "input", "kill", "create"};

bool IsTokenId(std::string_view id) {
  return id.size() == 16 && std::all_of(id.begin(), id.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

std::string Joined(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& i : items) out += (out.empty() ? "" : ",") + i;
  return out.empty() ? "-" : out;
}

// A JSON array of strings as "a,b" (sanitised), "-" when empty or absent.
std::string JoinedMember(const json& object, const char* name) {
  std::vector<std::string> items;
  if (const auto it = object.find(name); it != object.end() && it->is_array()) {
    for (const json& item : *it) {
      if (item.is_string()) items.push_back(Sanitize(item.get<std::string>(), false));
    }
  }
  return Joined(items);
}

std::string StringMember(const json& object, const char* name) {
  const auto it = object.find(name);
  if (it == object.end() || !it->is_string()) return "-";
  const std::string s = Sanitize(it->get<std::string>(), false);
  return s.empty() ? "-" : s;
}

std::variant<TokenCommand, std::string> BuildCreate(
    const std::vector<std::pair<std::string, std::string>>& options) {
  TokenCommand cmd;
  cmd.action = TokenCommand::Action::kCreate;
  for (const auto& [name, value] : options) {
    if (name == "session" || name == "owner" || name == "label") {
      if (!cmd.sessions.empty()) {
        return std::string("give one scope: --session, --owner or --label");
      }
      cmd.sessions = name + ":" + value;
    } else if (name == "rights") {
      size_t start = 0;
      while (start <= value.size()) {
        const size_t comma = std::min(value.find(',', start), value.size());
        const std::string right = value.substr(start, comma - start);
        if (std::find(kRights.begin(), kRights.end(), right) == kRights.end()) {
          return "--rights takes read, input, kill and create, separated by commas; '" + right +
                 "' is not one";
        }
        if (std::find(cmd.rights.begin(), cmd.rights.end(), right) == cmd.rights.end()) {
          cmd.rights.push_back(right);
        }
        start = comma + 1;
      }
    } else if (name == "preset") {
      cmd.presets.push_back(value);
    } else if (name == "workspace") {
      if (!common::IsWorkspacePath(value)) {
        return "--workspace must be " + std::string(common::kWorkspacePathIs) + ", not '" +
               Sanitize(value, false) + "'";
      }
      if (std::find(cmd.workspaces.begin(), cmd.workspaces.end(), value) == cmd.workspaces.end()) {
        cmd.workspaces.push_back(value);
      }
    } else if (name == "ttl") {
      const std::optional<uint64_t> ttl = ParseTtl(value);
      if (!ttl) {
        return "--ttl must be a positive duration like 3600, 90s, 30m, 8h or 7d, not '" + value +
               "'";
      }
      cmd.ttl_seconds = *ttl;
    }
  }
  if (cmd.sessions.empty()) {
    return std::string("token create needs a scope: --session ID, --owner NAME or --label LABEL");
  }
  if (cmd.rights.empty()) {
    return std::string("token create needs --rights (read, input, kill, create)");
  }
  const bool creates =
      std::find(cmd.rights.begin(), cmd.rights.end(), "create") != cmd.rights.end();
  if (creates && cmd.presets.empty()) {
    return std::string("the create right needs the presets it may start: --preset NAME");
  }
  if (!creates && !cmd.presets.empty()) {
    return std::string("--preset goes with the create right (--rights ...,create)");
  }
  if (creates && cmd.workspaces.empty()) {
    return std::string(
        "the create right needs the workspaces its sessions may run in: --workspace DIR");
  }
  if (!creates && !cmd.workspaces.empty()) {
    return std::string("--workspace goes with the create right (--rights ...,create)");
  }
  if (cmd.workspaces.size() > common::kMaxTokenWorkspaces) {
    return "at most " + std::to_string(common::kMaxTokenWorkspaces) + " --workspace";
  }
  return cmd;
}

}  // namespace

std::string_view TokenHelpText() { return kTokenHelp; }

std::optional<uint64_t> ParseTtl(std::string_view text) {
  uint64_t unit = 1;
  if (!text.empty()) {
    switch (text.back()) {
      case 's':
        unit = 1;
        break;
      case 'm':
        unit = 60;
        break;
      case 'h':
        unit = 3600;
        break;
      case 'd':
        unit = 86400;
        break;
      default:
        unit = 0;  // digits only
    }
    if (unit != 0) text.remove_suffix(1);
  }
  const std::optional<uint64_t> n = ParseDecimal(text);
  if (unit == 0) unit = 1;
  if (!n || *n == 0 || *n > std::numeric_limits<uint64_t>::max() / unit) return std::nullopt;
  return *n * unit;
}

std::variant<TokenCommand, std::string> BuildTokenCommand(
    const std::vector<std::pair<std::string, std::string>>& options,
    const std::vector<std::string>& positionals) {
  if (positionals.empty()) return std::string("token needs an action: create, ls or revoke");
  const std::string& action = positionals[0];
  if (action == "create") {
    if (positionals.size() > 1) {
      return "token create takes options only (got '" + positionals[1] + "')";
    }
    return BuildCreate(options);
  }
  if (!options.empty()) {
    return "--" + options.front().first + " is an option of token create, not of token " + action;
  }
  if (action == "ls") {
    if (positionals.size() > 1) return "token ls takes no arguments (got '" + positionals[1] + "')";
    return TokenCommand{};
  }
  if (action == "revoke") {
    if (positionals.size() < 2) return std::string("token revoke needs a token ID");
    TokenCommand cmd;
    cmd.action = TokenCommand::Action::kRevoke;
    for (size_t i = 1; i < positionals.size(); ++i) {
      if (!IsTokenId(positionals[i])) {
        return "'" + positionals[i] +
               "' is not a token id (16 lowercase hex digits, as `token ls` shows; not the token "
               "itself)";
      }
      cmd.ids.push_back(positionals[i]);
    }
    return cmd;
  }
  return "unknown token action '" + action + "' (create, ls or revoke)";
}

std::string MintBody(const TokenCommand& cmd) {
  json j = {{"sessions", cmd.sessions}, {"rights", cmd.rights}, {"ttlSeconds", cmd.ttl_seconds}};
  if (!cmd.presets.empty()) j["presets"] = cmd.presets;
  if (!cmd.workspaces.empty()) j["workspaces"] = cmd.workspaces;
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<std::string> FormatTokenTable(std::string_view json_object, int64_t now_ms) {
  const json doc = json::parse(json_object, nullptr, false);
  if (!doc.is_object()) return PlainError("the server's token list is not a JSON object");
  if (const auto enabled = doc.find("enabled"); enabled != doc.end() && *enabled == false) {
    return std::string(
        "scoped tokens are disabled on this server (token_store is not set in its api.conf)\n");
  }
  const auto tokens = doc.find("tokens");
  if (tokens == doc.end() || !tokens->is_array()) {
    return PlainError("the server's token list has no \"tokens\" array");
  }
  std::vector<std::vector<std::string>> rows;
  for (const json& t : *tokens) {
    if (!t.is_object()) continue;
    std::string expires = "-";
    if (const auto at = t.find("expiresAt"); at != t.end() && at->is_string()) {
      const std::optional<int64_t> ms = ParseIsoTimeMs(at->get<std::string>());
      if (ms) expires = *ms <= now_ms ? "expired" : "in " + FormatAge(*ms - now_ms);
    }
    const auto revoked = t.find("revoked");
    rows.push_back({StringMember(t, "id"), StringMember(t, "sessions"), JoinedMember(t, "rights"),
                    JoinedMember(t, "presets"), JoinedMember(t, "workspaces"), expires,
                    StringMember(t, "createdBy"),
                    revoked != t.end() && *revoked == true ? "revoked" : "active"});
  }
  return FormatTable(
      {"ID", "SESSIONS", "RIGHTS", "PRESETS", "WORKSPACES", "EXPIRES", "CREATED-BY", "STATUS"},
      rows, 0, 0);
}

Result<std::string> FormatMinted(std::string_view json_object) {
  const json doc = json::parse(json_object, nullptr, false);
  if (!doc.is_object()) return PlainError("the server's answer is not a JSON object");
  return "token " + StringMember(doc, "id") + ": sessions " + StringMember(doc, "sessions") +
         ", rights " + JoinedMember(doc, "rights") + ", presets " + JoinedMember(doc, "presets") +
         ", workspaces " + JoinedMember(doc, "workspaces") + ", expires " +
         StringMember(doc, "expiresAt") +
         "\nthe token is on stdout and will not be shown again (the server keeps only its hash)\n";
}

}  // namespace mp::cli
