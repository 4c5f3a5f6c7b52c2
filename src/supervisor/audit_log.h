// AuditLog: one JSON line per control action (spawn, kill, signal, stdin,
// close_stdin, resize, and the API's token_create / token_revoke) with the time,
// the session, the principal the API authenticated, the peer's credentials and
// the client identity the API passed along. Appends with O_APPEND; a failed
// write is reported to stderr and never stops the action. Reopen() (SIGHUP)
// moves to a new file at the same path after logrotate renamed the old one.
// Supervisor only; not thread-safe.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

#include "common/result.h"
#include "common/unique_fd.h"

namespace mp::supervisor {

struct AuditEntry {
  std::string_view action;     // "spawn", "kill", ...
  std::string_view session;    // may be empty when a spawn failed
  std::string_view principal;  // "admin", "token:<id>", ...; empty: not attributed (null)
  pid_t peer_pid = 0;
  uid_t peer_uid = 0;
  std::string_view client;   // the API's identity of the remote caller
  std::string_view outcome;  // "ok" or the error code
  std::string_view detail;   // e.g. the preset, the signal, a byte count
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

 private:
  static Result<UniqueFd> OpenPath(const std::string& path);

  std::string path_;  // "" = stderr
  UniqueFd fd_;
};

// Escapes a string for a JSON string literal (control bytes, quotes, backslash,
// invalid UTF-8 bytes as \u00XX of the byte).
std::string JsonEscape(std::string_view s);

}  // namespace mp::supervisor
