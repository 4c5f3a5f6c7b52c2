// AuditLog: one JSON line per audited event: the control actions (spawn, kill, signal, stdin,
// close_stdin, resize) and what monkeyproof-api reports through `audit` requests (token_create,
// token_revoke, read, auth_failed, rate_limited, audit_suppressed). Each line has the common
// members, then the action's own named members (docs/api.md "Audit log" lists them). Appends
// with O_APPEND, one write per line; a failed write is reported to stderr and never stops the
// action. Reopen() (SIGHUP) moves to a new file at the same path after logrotate renamed the
// old one. Supervisor only; not thread-safe.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"

namespace mp::supervisor {

// One named member of a line after the common ones. The name is a constant of the code
// ([a-z_]+), never outside input; the value is escaped (JsonEscape).
struct AuditField {
  enum class Kind { kString, kNumber, kBool, kStrings };
  std::string_view name;
  Kind kind = Kind::kString;
  std::string_view text;                           // kString
  uint64_t number = 0;                             // kNumber
  bool flag = false;                               // kBool
  const std::vector<std::string>* list = nullptr;  // kStrings

  static AuditField String(std::string_view name, std::string_view value) {
    return {name, Kind::kString, value};
  }
  static AuditField Number(std::string_view name, uint64_t value) {
    return {name, Kind::kNumber, {}, value};
  }
  static AuditField Bool(std::string_view name, bool value) {
    return {name, Kind::kBool, {}, 0, value};
  }
  static AuditField Strings(std::string_view name, const std::vector<std::string>& value) {
    return {name, Kind::kStrings, {}, 0, false, &value};
  }
};

struct AuditEntry {
  std::string_view action;     // "spawn", "kill", ...
  std::string_view session;    // may be empty: a failed spawn, an event on no session
  std::string_view principal;  // "admin", "token:<id>", ...; empty: not attributed (null)
  pid_t peer_pid = 0;
  uid_t peer_uid = 0;
  std::string_view client;         // the API's identity of the remote caller ("api:<address>")
  std::string_view via;            // the trusted proxy the request came through; empty: none (null)
  std::string_view outcome;        // "ok" or the error code
  std::vector<AuditField> fields;  // the action's own members, in this order
};

class AuditLog {
 public:
  // An empty path writes to stderr (dev mode).
  static Result<AuditLog> Open(const std::string& path);
  void Write(const AuditEntry& entry);
  // Opens the path again (creating it when missing) and writes there from now on: after a
  // rotation by rename, lines go to the new file, and none is lost (each line is one write,
  // to the old file or the new one). On failure the old file stays in use. Nothing to do for
  // stderr.
  Result<void> Reopen();

  // The line Write appends, without its newline.
  static std::string Format(const AuditEntry& entry, int64_t unix_ms);

 private:
  static Result<UniqueFd> OpenPath(const std::string& path);

  std::string path_;  // "" = stderr
  UniqueFd fd_;
};

// Escapes a string for a JSON string literal (control bytes, quotes, backslash,
// invalid UTF-8 bytes as \u00XX of the byte).
std::string JsonEscape(std::string_view s);

}  // namespace mp::supervisor
