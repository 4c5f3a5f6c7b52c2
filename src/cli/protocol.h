// The client side of the public API (docs/api.md) as pure functions: request paths and
// bodies, the raw-output headers, WebSocket server messages and the resume cursor that keeps
// a reconnecting stream free of losses and duplicates. Runs in the CLI only. No I/O, no
// syscalls, no exceptions escape; plain value types, not shared between threads.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cli/args.h"
#include "common/result.h"

namespace mp::cli {

// An HTTP response as the transport received it (transport.h).
struct HttpResponse {
  int status = 0;
  std::string reason;                                        // "OK", "Not Found", ...
  std::vector<std::pair<std::string, std::string>> headers;  // in order received
  std::string body;

  // The first header of that name (case-insensitive), or nullptr.
  [[nodiscard]] const std::string* Header(std::string_view name) const;
};

// Percent-encodes everything but RFC 3986's unreserved characters.
std::string UrlEncode(std::string_view text);
// "/sessions/<id, percent-encoded><suffix>", e.g. SessionPath("s-1", "/output").
std::string SessionPath(std::string_view id, std::string_view suffix = {});
// "/sessions" with ?owner=&label=&status=&limit= from the filters given.
std::string ListPath(const LsCommand& ls);

// The JSON body of POST /sessions. `pty` (rows, cols) is sent for interactive sessions.
std::string SpawnBody(const RunCommand& run, std::optional<std::pair<int, int>> pty);
// {"input":"…"} for POST /sessions/:id/input; an error when `text` is not valid UTF-8 (JSON
// strings cannot carry other bytes).
Result<std::string> InputBody(std::string_view text);
// WebSocket client messages.
std::string WsResizeJson(int rows, int cols);
std::string WsCloseStdinJson();

// Members of a JSON object answer: the session id of SessionInfo, etc. nullopt when the body
// is not an object or the member is not a string/integer.
std::optional<std::string> JsonStringMember(std::string_view json, std::string_view member);
std::optional<int64_t> JsonIntegerMember(std::string_view json, std::string_view member);

// The headers of GET /sessions/:id/output (docs/api.md, "Transcript and raw output").
struct OutputChunk {
  uint64_t offset = 0;  // where the body starts (later than `since` when the start was cut)
  uint64_t next = 0;    // ask for this next
  uint64_t total = 0;   // bytes produced so far
  bool ended = false;   // total is final
  std::vector<std::pair<uint64_t, uint64_t>> gaps;  // skipped [from, to) ranges
};
Result<OutputChunk> ParseOutputHeaders(const HttpResponse& response);
// "from-to,from-to" (x-output-gaps); empty text is no gaps.
Result<std::vector<std::pair<uint64_t, uint64_t>>> ParseGaps(std::string_view text);

// One WebSocket server message (docs/api.md, "WebSocket").
struct ServerMessage {
  enum class Kind { kCatchup, kStdout, kStderr, kGap, kLagged, kKilled, kExit, kError, kOther };
  Kind kind = Kind::kOther;
  std::string type;  // as sent, for kOther
  // catchup, stdout, stderr
  std::string data;
  bool has_offsets = false;  // offset and next were present (they always are from this server)
  uint64_t offset = 0;
  uint64_t next = 0;
  // gap
  uint64_t from = 0;
  uint64_t to = 0;
  // lagged
  uint64_t resume_from = 0;
  // exit
  int64_t code = -1;
  std::optional<int64_t> signal;
  std::string reason;
  // error
  std::string error;
  std::string error_code;
};
Result<ServerMessage> ParseServerMessage(std::string_view text);

// Tracks the output offset a stream has written up to, so that a resumed stream
// (`?since=next()`) writes each byte once. Messages wholly before next() are dropped; one that
// overlaps it is cut when its data maps byte-for-byte to its offsets.
class OutputCursor {
 public:
  explicit OutputCursor(uint64_t start) : next_(start) {}

  [[nodiscard]] uint64_t next() const { return next_; }
  // For catchup/stdout/stderr: the part of msg.data to write (possibly empty); advances next().
  // For gap: advances next() past the gap and returns empty. Other kinds: empty, no change.
  std::string_view Accept(const ServerMessage& msg);

 private:
  uint64_t next_;
};

// A session's exit code as this process's exit status: 0..255 as is, larger values 255, and
// an unknown code (negative: the session failed to start or its end is unknown) 1.
int ExitStatusFromCode(int64_t code);

}  // namespace mp::cli
