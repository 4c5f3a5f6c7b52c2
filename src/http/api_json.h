// Translation between the public JSON API (docs/api.md, compatible with the original
// MonkeyProof server) and the control protocol's typed messages (common/messages.h): request
// bodies and WebSocket client messages in, SessionInfo/detail/events out. Runs in
// monkeyproof-api (and the CLI reads the same shapes). Pure functions: no syscalls, no
// exceptions escape; every parser sees untrusted input and has a fuzz target (tests/fuzz).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/messages.h"
#include "common/result.h"
#include "http/api_error.h"

namespace mp::http {

template <typename T>
using ApiResult = std::variant<T, ApiError>;  // index 0: the value; 1: the error

// ---- Request bodies (all JSON objects; unknown members ignored as in the original, wrong
// types rejected naming the member, e.g. field "/labels/2").

// POST /sessions. `client` goes to SpawnRequest.client (audit). Maps type/mode, preset, cwd,
// command, args, maxTurns, env, owner, labels (trimmed, lower-cased, <=64 chars,
// de-duplicated, empty ones dropped), limits {memoryMaxBytes,...}, pty {rows,cols}.
// Refuses exec + preset (400, field "/preset"), type and mode that disagree, a missing or
// empty task ("task is required"), a task over kMaxSpawnTaskBytes and a spawn whose control
// message would exceed wire::kMaxMessageBytes (413 too_large, field "/task", "/args" or
// "/env").
ApiResult<wire::SpawnRequest> ParseSpawnBody(std::string_view body, std::string client);

// The largest task (bytes, after JSON decoding) the API accepts: the supervisor's limit. The
// control protocol carries it in parts when it does not fit one record; the supervisor hands
// a shell task over 128 KiB (one execve argument) in through a file (docs/api.md, "Limits").
inline constexpr size_t kMaxSpawnTaskBytes = wire::kMaxTaskBytes;

// POST /sessions/:id/input {"input":"…"}: the bytes to send. Missing, non-string or empty input
// is 400 {"error":"input is required"}, as in the original.
ApiResult<std::string> ParseInputBody(std::string_view body);
// POST /sessions/:id/resize {"rows":N,"cols":N}, each 1..wire::kMaxPtyDimension.
ApiResult<wire::PtySize> ParseResizeBody(std::string_view body);
// POST /sessions/:id/signal {"signal":"TERM"|"SIGTERM"|15}; names are case-insensitive.
ApiResult<int32_t> ParseSignalBody(std::string_view body);
// A signal name ("TERM", "SIGTERM", "term") or decimal number 1..64; nullopt when neither.
std::optional<int32_t> ParseSignal(std::string_view text);

// ---- WebSocket client messages (text frames): {"type":"stdin","data":"…"},
// {"type":"resize","rows","cols"}, {"type":"signal","signal":…}, {"type":"close-stdin"}.
struct WsStdin {
  std::string data;
};
struct WsResize {
  wire::PtySize size;
};
struct WsSignal {
  int32_t signal = 0;
};
struct WsCloseStdin {};
using WsClientMessage = std::variant<WsStdin, WsResize, WsSignal, WsCloseStdin>;
ApiResult<WsClientMessage> ParseWsClientMessage(std::string_view text);

// ---- Query strings.

// Which sessions a list request wants: those whose public status (PublicStatus) is `status`,
// or, when `state` is set, those in that exact state.
struct StatusFilter {
  std::string_view status;  // running, exited or killed
  std::optional<wire::SessionState> state;
  [[nodiscard]] bool Matches(const wire::SessionInfo& info) const;
};
// GET /sessions ?status= : running, exited, killed (the public status), or the exact states
// starting and failed (as before). Error names "?status".
ApiResult<StatusFilter> ParseStatusFilter(std::string_view value);
// GET /sessions ?state= : an exact state (starting, running, exited, killed, failed).
ApiResult<StatusFilter> ParseStateFilter(std::string_view value);
// An unsigned decimal offset/limit ("?since"): digits only, no sign, fits uint64.
std::optional<uint64_t> ParseUnsigned(std::string_view text);

// ---- Responses.

// The original's status (docs/api.md, SessionInfo): running while starting or running;
// killed for an interactive session ended by DELETE, or an end with neither exit code nor
// signal after a kill; else exited.
std::string_view PublicStatus(const wire::SessionInfo& info);
// The original's exitCode: the exit status, or 128 + the signal that ended the command (what
// Bun reported); null while running, for a failed start, and for an interactive session ended
// by DELETE.
std::optional<int64_t> PublicExitCode(const wire::SessionInfo& info);
// "2026-11-21T19:31:44.759Z" from Unix epoch milliseconds.
std::string IsoTime(uint64_t epoch_ms);

// SessionInfo as public JSON (compact), with the original's members first and ours after
// (docs/api.md). `ws_clients` is the API's own count of WebSocket clients on the session.
std::string SessionInfoJson(const wire::SessionInfo& info, uint32_t ws_clients);
// SessionDetail: SessionInfo + recentOutput + transcriptPath. `recent` is a read_output
// answer covering the tail (its data is marked per chunk: stderr lines get "[stderr] " at
// each line start; `starts_at_line` says whether the first byte begins a line).
std::string SessionDetailJson(const wire::SessionInfo& info, uint32_t ws_clients,
                              const wire::OutputRead& recent, bool starts_at_line);
// A JSON array of SessionInfo objects; ws_clients[i] belongs to sessions[i].
std::string SessionListJson(const std::vector<wire::SessionInfo>& sessions,
                            const std::vector<uint32_t>& ws_clients);
// {"policies":[{"name","type","description","bypassesAgentPermissions"}]}
std::string PolicyListJson(const wire::PolicyList& policies);

// Appends `utf8` as the inside of a JSON string (no quotes), as nlohmann::json's dump writes
// it: `"` and `\` escaped, control characters as \b \f \n \r \t or \u00xx, everything else
// as is. `utf8` must be valid UTF-8 (see Utf8Carry): it is not checked.
void AppendJsonStringBody(std::string_view utf8, std::string* out);

// ---- WebSocket server messages (compact JSON text).
// {"type":"catchup","id","task","status","exitCode","data","offset","next"}; `data` must be
// valid UTF-8 already (see Utf8Carry).
std::string WsCatchupJson(const wire::SessionInfo& info, std::string_view data, uint64_t offset,
                          uint64_t next);
// {"type":"stdout"|"stderr","data","offset","next"}; pty output is "stdout".
std::string WsOutputJson(wire::OutputStream stream, std::string_view utf8_data, uint64_t offset,
                         uint64_t next);
std::string WsGapJson(uint64_t from, uint64_t to);
std::string WsLaggedJson(uint64_t resume_from);
std::string WsKilledJson();
// {"type":"exit","code","duration","durationMs","reason","signal","offset"}: code =
// exit_code, or 128 + signal, or -1 when neither is known; duration in whole seconds from
// created_at, rounded as the original did; durationMs the same in milliseconds.
std::string WsExitJson(const wire::SessionInfo& info, const wire::EndRecord& end,
                       uint64_t final_offset);
std::string WsErrorJson(const ApiError& error);

}  // namespace mp::http
