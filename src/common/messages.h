// Typed messages of the control protocol between monkeyproof-api and monkeyproofd
// (docs/protocol.md): requests, responses and events as plain structs, with a strict decoder
// and an encoder for each direction. Both daemons use it. Data only, no behaviour: limits are
// checked for shape and size here, against policy later by the supervisor. Pure functions,
// thread-safe; no syscalls; no exceptions escape.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/limits.h"
#include "common/names.h"
#include "common/result.h"
#include "common/vocabulary.h"
#include "common/wire.h"

namespace mp::wire {

// Control-protocol versions (docs/protocol.md, "Versions"; common/proto_version.h says what
// each carries): the newest this build speaks, which the API offers in its hello, and the
// oldest it still speaks with a peer from an earlier release.
inline constexpr uint32_t kProtoVersion = 5;
inline constexpr uint32_t kMinProtoVersion = 1;

// Size and count caps, all checked by the decoders. Bytes are UTF-8 bytes of the JSON string.
inline constexpr size_t kMaxChunkBytes = size_t{60} * 1024;   // any data tail; read_output limit
inline constexpr size_t kMaxTaskBytes = size_t{1024} * 1024;  // spawn task (see protocol.md)
inline constexpr size_t kMaxTaskPreviewBytes = 2048;          // SessionInfo.task_preview
inline constexpr size_t kMaxNameBytes = 128;                  // hello client/supervisor, versions
inline constexpr size_t kMaxBootIdBytes = 64;                 // [0-9A-Za-z-]
inline constexpr size_t kMaxSessionIdChars = common::kMaxSessionIdChars;  // after "s-"
inline constexpr size_t kMaxPresetBytes = common::kMaxPresetNameBytes;    // common::IsPresetName
inline constexpr size_t kMaxCommandBytes = 4096;           // spawn command; SessionInfo.command
inline constexpr size_t kMaxArgs = 256;                    // spawn args entries
inline constexpr size_t kMaxArgBytes = size_t{32} * 1024;  // one arg
inline constexpr size_t kMaxPathBytes = 4095;              // cwd (PATH_MAX - 1)
inline constexpr size_t kMaxEnvEntries = 128;              // spawn env
inline constexpr size_t kMaxEnvNameBytes = common::kMaxEnvNameBytes;  // common::IsEnvName
inline constexpr size_t kMaxEnvValueBytes = common::kMaxEnvValueBytes;
inline constexpr size_t kMaxOwnerBytes = 256;
inline constexpr size_t kMaxLabels = 32;
inline constexpr size_t kMaxLabelBytes = 64;
inline constexpr size_t kMaxClientBytes = 256;  // spawn client identity (audit log)
inline constexpr size_t kMaxPrincipalBytes =
    common::kMaxPrincipalBytes;               // common::IsPrincipalLabel
inline constexpr size_t kTokenIdChars = 16;   // audit token: lowercase hex digits
inline constexpr size_t kMaxViaBytes = 64;    // `via`: the trusted proxy's address (audit log)
inline constexpr size_t kMaxRouteBytes = 64;  // audit `route`: "GET /sessions/{id}/output"
inline constexpr uint64_t kMaxTurns = 10000;  // spawn max_turns, 1..
inline constexpr uint32_t kMaxPtyDimension = 1000;     // pty rows and cols, 1..
inline constexpr int32_t kMaxSignal = 64;              // signal numbers, 1..; SIGRTMAX
inline constexpr size_t kMaxListLimit = 1000;          // list limit; sessions per response
inline constexpr size_t kMaxPolicies = 256;            // policies per response
inline constexpr size_t kMaxDescriptionBytes = 1024;   // policy description, health reason
inline constexpr size_t kMaxReadChunks = 1024;         // read_output chunks per response
inline constexpr size_t kMaxReadGaps = 64;             // read_output gaps per response
inline constexpr size_t kMaxErrorMessageBytes = 4096;  // error.message, end.detail
inline constexpr size_t kMaxErrorFieldBytes = 1024;    // error.field (a JSON pointer)
inline constexpr size_t kMaxJsonNesting = 8;           // objects/arrays in one envelope

// ---- Vocabulary. Each enum's wire strings, in declaration order, are in docs/protocol.md.
// SessionType, EndReason, NetworkMode (common/vocabulary.h) and ErrorCode (common/result.h)
// are shared with the supervisor and the sandbox.

using common::EndReason;
using common::NetworkMode;
using common::SessionType;
using common::ToString;
using ::mp::ErrorCode;
using ::mp::ToString;
enum class SessionState { kStarting, kRunning, kExited, kKilled, kFailed };
enum class OutputStream { kStdout, kStderr, kPty };

std::string_view ToString(SessionState v);
std::string_view ToString(OutputStream v);

// "s-" followed by 1..40 ASCII letters or digits (common/names.h).
using common::IsValidSessionId;

// ---- Shared records.

struct PtySize {
  uint32_t rows = 24;  // 1..kMaxPtyDimension
  uint32_t cols = 80;  // 1..kMaxPtyDimension
  friend bool operator==(const PtySize&, const PtySize&) = default;
};

// Requested limits (common/vocabulary.h); "limits" of a spawn request.
using SpawnLimits = common::RequestedLimits;

// How a session ended, with the cgroup's final figures where the kernel has them.
struct EndRecord {
  EndReason reason = EndReason::kExit;
  std::optional<int32_t> exit_code;           // 0..255, when the command exited
  std::optional<int32_t> signal;              // 1..64, when it was killed by a signal
  uint64_t ended_at_ms = 0;                   // Unix epoch, milliseconds
  std::string detail;                         // e.g. the failed spawn step; may be empty
  std::optional<uint64_t> memory_peak_bytes;  // memory.peak
  std::optional<uint64_t> cpu_usage_usec;     // cpu.stat usage_usec
  std::optional<uint64_t> pids_peak;          // pids.peak
  // How long the supervisor held the output back under output.on_flood "throttle",
  // milliseconds; absent when it never did.
  std::optional<uint64_t> output_throttled_ms;
  friend bool operator==(const EndRecord&, const EndRecord&) = default;
};

// What both daemons know about a session; the API maps it to the public SessionInfo.
// An allowlist session's egress verdicts so far (issue 14), as monkeyproof-egress reported
// them to this supervisor (since the session started or this supervisor adopted it).
struct EgressCounters {
  uint64_t allowed = 0;           // connections allowed (proxy, transparent, gateway requests)
  uint64_t denied = 0;            // connections refused
  uint64_t bytes_up = 0;          // session -> upstream, of allowed connections that closed
  uint64_t bytes_down = 0;        // upstream -> session, likewise
  uint64_t dns_answered = 0;      // stub DNS queries answered (allowed names)
  uint64_t dns_refused = 0;       // stub DNS queries answered NXDOMAIN
  uint64_t gateway_requests = 0;  // requests the credential gateway forwarded
  friend bool operator==(const EgressCounters&, const EgressCounters&) = default;
};
// The same over every session since this supervisor started, and the reports lost on the way.
struct EgressTotals {
  EgressCounters counters;
  uint64_t reports_dropped = 0;  // the daemon's queue was full (the supervisor did not read)
  uint64_t reports_refused = 0;  // malformed reports this supervisor ignored
  friend bool operator==(const EgressTotals&, const EgressTotals&) = default;
};

struct SessionInfo {
  std::string id;
  SessionState state = SessionState::kStarting;
  SessionType type = SessionType::kExec;
  std::optional<std::string> preset;
  std::string task_preview;     // the task's first bytes, <= kMaxTaskPreviewBytes
  std::string cwd;              // as resolved by the supervisor
  std::string command;          // display form of the command line, <= kMaxCommandBytes
  std::optional<uint32_t> pid;  // the command's pid in the host's pid namespace
  uint64_t created_at_ms = 0;   // Unix epoch, milliseconds
  std::string owner;
  std::vector<std::string> labels;
  uint64_t output_bytes = 0;     // output produced so far = the next output offset
  uint64_t output_lines = 0;     // newline bytes in that output (the public outputLines)
  std::optional<PtySize> pty;    // interactive sessions
  std::optional<EndRecord> end;  // once the session has ended
  // The principal that spawned it (SpawnRequest.principal); empty when the spawn carried none
  // (a record from before attribution, or a control client that does not attribute).
  std::string created_by;
  // Restarts of the supervisor this session has lived through (re-adopted after each).
  uint32_t supervisor_restarts = 0;
  // Allowlist sessions only (protocol version 5): their egress verdicts.
  std::optional<EgressCounters> egress;
  friend bool operator==(const SessionInfo&, const SessionInfo&) = default;
};

// ---- Requests (monkeyproof-api -> monkeyproofd). `hello` comes first and carries no id.

struct HelloRequest {
  uint32_t proto = kProtoVersion;
  std::string client;  // e.g. "monkeyproof-api/0.1.0"
  friend bool operator==(const HelloRequest&, const HelloRequest&) = default;
};
struct SpawnRequest {
  std::string task;                       // 1..kMaxTaskBytes
  SessionType type = SessionType::kExec;  // "session_type" on the wire: "type" is the message's
  std::optional<std::string> preset;
  std::optional<std::string> command;
  // Absent and empty differ: an exec session's command without args runs `COMMAND -lc TASK`.
  std::optional<std::vector<std::string>> args;
  // Resolved and checked by the supervisor; a relative one against the default workspace.
  std::optional<std::string> cwd;
  std::map<std::string, std::string> env;
  std::string owner;
  std::vector<std::string> labels;
  std::optional<uint64_t> max_turns;
  std::optional<SpawnLimits> limits;
  std::optional<PtySize> pty;
  std::string client;  // who asked, for the audit log; 1..kMaxClientBytes
  // The TCP peer the request came through when the API believed its forwarding header (a
  // trusted proxy), for the audit log next to `client`; empty: absent (a direct client).
  std::string via;
  // The requests that act on sessions (spawn, kill, signal, stdin, close_stdin, resize) carry
  // `principal`: who the API authenticated ("admin", "token:<id>", "cert:<subject>";
  // common::IsPrincipalLabel), for the audit log and the session's created_by. Empty: absent
  // on the wire (not attributed); monkeyproof-api always sends it.
  std::string principal;
  // Protocol version 4. Where the session may run: when not empty, the resolved cwd must be
  // one of these directories or below one (a scoped token's workspaces, docs/api.md "Scoped
  // tokens"), each opened beneath its workspace root without following any symlink and the
  // cwd then resolved beneath it; an absent cwd is the first of them. At most
  // common::kMaxTokenWorkspaces entries, each common::IsWorkspacePath.
  std::vector<std::string> cwd_within;
  friend bool operator==(const SpawnRequest&, const SpawnRequest&) = default;
};
struct ListRequest {  // filters are ANDed; sessions come in creation order
  std::optional<std::string> owner;
  std::optional<std::string> label;
  std::optional<SessionState> state;
  std::optional<std::string> after;  // resume after this session id (paging)
  std::optional<uint32_t> limit;     // 1..kMaxListLimit
  friend bool operator==(const ListRequest&, const ListRequest&) = default;
};
struct GetRequest {
  std::string session;
  friend bool operator==(const GetRequest&, const GetRequest&) = default;
};
struct KillRequest {
  std::string session;
  std::string principal;  // as in SpawnRequest
  std::string client;     // as in SpawnRequest, optional here
  std::string via;        // as in SpawnRequest
  friend bool operator==(const KillRequest&, const KillRequest&) = default;
};
struct SignalRequest {
  std::string session;
  int32_t signal = 0;     // 1..kMaxSignal
  std::string principal;  // as in SpawnRequest
  std::string client;     // as in SpawnRequest, optional here
  std::string via;        // as in SpawnRequest
  friend bool operator==(const SignalRequest&, const SignalRequest&) = default;
};
struct StdinRequest {
  std::string session;
  std::vector<uint8_t> data;  // the frame's data tail, <= kMaxChunkBytes
  std::string principal;      // as in SpawnRequest
  std::string client;         // as in SpawnRequest, optional here
  std::string via;            // as in SpawnRequest
  friend bool operator==(const StdinRequest&, const StdinRequest&) = default;
};
struct CloseStdinRequest {
  std::string session;
  std::string principal;  // as in SpawnRequest
  std::string client;     // as in SpawnRequest, optional here
  std::string via;        // as in SpawnRequest
  friend bool operator==(const CloseStdinRequest&, const CloseStdinRequest&) = default;
};
struct ResizeRequest {
  std::string session;
  PtySize size;
  std::string principal;  // as in SpawnRequest
  std::string client;     // as in SpawnRequest, optional here
  std::string via;        // as in SpawnRequest
  friend bool operator==(const ResizeRequest&, const ResizeRequest&) = default;
};
struct SubscribeRequest {
  std::string session;
  std::optional<uint64_t> since;  // replay from this output offset; absent: live only
  friend bool operator==(const SubscribeRequest&, const SubscribeRequest&) = default;
};
struct UnsubscribeRequest {
  std::string session;
  friend bool operator==(const UnsubscribeRequest&, const UnsubscribeRequest&) = default;
};
struct ReadOutputRequest {
  std::string session;
  uint64_t since = 0;               // output offset
  uint32_t limit = kMaxChunkBytes;  // bytes, 1..kMaxChunkBytes
  friend bool operator==(const ReadOutputRequest&, const ReadOutputRequest&) = default;
};
struct PoliciesRequest {             // policies come in name order
  std::optional<std::string> after;  // resume after this preset name (paging)
  friend bool operator==(const PoliciesRequest&, const PoliciesRequest&) = default;
};
struct HealthRequest {
  friend bool operator==(const HealthRequest&, const HealthRequest&) = default;
};
// What the API saw or did itself, for the supervisor's audit log (one log for everything):
// minting and revoking scoped tokens, reads of a session, refused credentials, failure-limiter
// refusals, and how many of the last three its throttle held back (kSuppressed). Answered
// with a bare ok once written. Which members each action takes: docs/protocol.md "audit".
enum class AuditAction {
  kTokenCreate,
  kTokenRevoke,
  kRead,
  kAuthFailed,
  kRateLimited,
  kSuppressed
};
std::string_view ToString(AuditAction v);
// Why a credential was refused: a class, never the credential.
enum class AuthFailureReason {
  kMissing,              // no credential at all
  kInvalid,              // not a token the API knows (or malformed)
  kExpired,              // a scoped token past its expiry
  kRevoked,              // a revoked scoped token
  kUnlistedCertificate,  // a client certificate not in tls_client_principals, and no token
  kWsTimeout,            // a WebSocket's first message did not come in time
  kWsMessage,            // a WebSocket's first message was not an auth message
};
std::string_view ToString(AuthFailureReason v);
struct AuditRequest {
  AuditAction action = AuditAction::kTokenCreate;
  std::string principal;  // who (common::IsPrincipalLabel); token_*, read: required
  std::string token;      // token_*: the token's id, kTokenIdChars lowercase hex; never its secret
  std::string client;     // the API's identity of the remote caller, as in SpawnRequest
  std::string via;        // as in SpawnRequest; optional
  std::string session;    // read: the session read
  std::string route;      // read, auth_failed, rate_limited: "GET /sessions/{id}/output"
  std::optional<AuthFailureReason> reason;  // auth_failed
  std::optional<AuditAction> of;            // audit_suppressed: read, auth_failed or rate_limited
  uint64_t count = 0;                       // audit_suppressed: lines held back, >= 1
  friend bool operator==(const AuditRequest&, const AuditRequest&) = default;
};

// Alternatives in the order of RequestType.
using RequestBody = std::variant<HelloRequest, SpawnRequest, ListRequest, GetRequest, KillRequest,
                                 SignalRequest, StdinRequest, CloseStdinRequest, ResizeRequest,
                                 SubscribeRequest, UnsubscribeRequest, ReadOutputRequest,
                                 PoliciesRequest, HealthRequest, AuditRequest>;
enum class RequestType {
  kHello,
  kSpawn,
  kList,
  kGet,
  kKill,
  kSignal,
  kStdin,
  kCloseStdin,
  kResize,
  kSubscribe,
  kUnsubscribe,
  kReadOutput,
  kPolicies,
  kHealth,
  kAudit,
};
std::string_view ToString(RequestType v);

struct Request {
  uint64_t id = 0;  // chosen by the API, echoed in the response; unused (0) for hello
  RequestBody body;
  [[nodiscard]] RequestType type() const { return static_cast<RequestType>(body.index()); }
  friend bool operator==(const Request&, const Request&) = default;
};

// ---- Responses (monkeyproofd -> monkeyproof-api), one per request except hello.

struct ErrorBody {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;
  std::string field;  // JSON pointer of the offending request field; empty when none
  friend bool operator==(const ErrorBody&, const ErrorBody&) = default;
};
struct SessionList {  // list
  std::vector<SessionInfo> sessions;
  bool more = false;  // more sessions match: ask again with after = the last id
  friend bool operator==(const SessionList&, const SessionList&) = default;
};
struct OutputChunk {
  OutputStream stream = OutputStream::kStdout;
  uint64_t offset = 0;  // of the chunk's first byte in the session's output sequence
  uint32_t length = 0;  // bytes of the data tail, 1..
  friend bool operator==(const OutputChunk&, const OutputChunk&) = default;
};
struct OutputRange {
  uint64_t from = 0;  // first offset
  uint64_t to = 0;    // one past the last offset; from < to
  friend bool operator==(const OutputRange&, const OutputRange&) = default;
};
struct OutputRead {  // read_output: chunks in offset order, their bytes back to back in `data`
  std::vector<OutputChunk> chunks;
  std::vector<OutputRange> gaps;  // ranges between `since` and `next` that are no longer held
  uint64_t next = 0;              // offset to ask for next
  uint64_t total = 0;             // bytes produced so far
  bool ended = false;             // the session has ended: `total` is final
  std::vector<uint8_t> data;      // the frame's data tail
  friend bool operator==(const OutputRead&, const OutputRead&) = default;
};
struct PolicyInfo {
  std::string name;  // preset name
  SessionType type = SessionType::kExec;
  std::string description;
  bool bypasses_agent_permissions = false;  // the sandbox is the only boundary (policies.md)
  // The policy's limits and deadlines, the most a request may ask for (the tightening rule).
  uint64_t memory_max_bytes = 0;             // limits.memory_max_bytes
  uint64_t pids_max = 0;                     // limits.pids_max
  std::optional<uint64_t> cpu_max_percent;   // limits.cpu_max_percent; nullopt: no cap
  uint64_t wall_seconds = 0;                 // deadlines.wall_seconds; 0: none
  uint64_t idle_seconds = 0;                 // deadlines.idle_seconds; 0: none
  NetworkMode network = NetworkMode::kNone;  // network
  friend bool operator==(const PolicyInfo&, const PolicyInfo&) = default;
};
struct PolicyList {
  std::vector<PolicyInfo> policies;  // in name order
  bool more = false;                 // more policies follow the last one (ask with `after`)
  friend bool operator==(const PolicyList&, const PolicyList&) = default;
};

// One page of `all` (sorted by name) for a PoliciesRequest: the entries after `after`, at most
// kMaxPolicies of them and no more than fit one response frame whatever its id, with `more`
// set when some were left for the next page. A page holds at least one entry when any is left
// (a single PolicyInfo within the decoder's limits always fits a frame).
PolicyList PolicyPage(const std::vector<PolicyInfo>& all, const std::optional<std::string>& after);
struct HealthInfo {
  std::string version;  // the supervisor's
  uint64_t uptime_seconds = 0;
  uint32_t sessions_active = 0;  // starting or running
  uint32_t sessions_total = 0;   // records held, ended ones included
  uint32_t max_sessions = 0;     // capacity for active sessions
  bool ready = false;            // can spawn now
  std::string reason;            // why not ready; empty when ready
  // Running sessions this supervisor re-adopted at its start, and those it could not (ended
  // as supervisor_restart).
  uint32_t sessions_readopted = 0;
  uint32_t readoption_failures = 0;
  std::optional<EgressTotals> egress;  // protocol version 5
  friend bool operator==(const HealthInfo&, const HealthInfo&) = default;
};

// std::monostate is a bare {"ok":true}; ErrorBody is the failure; the rest are ok payloads.
using ResponseBody = std::variant<std::monostate, ErrorBody, SessionInfo, SessionList, OutputRead,
                                  PolicyList, HealthInfo>;
struct Response {
  uint64_t id = 0;  // the request's
  ResponseBody body;
  [[nodiscard]] bool ok() const { return !std::holds_alternative<ErrorBody>(body); }
  friend bool operator==(const Response&, const Response&) = default;
};

// ---- Events (monkeyproofd -> monkeyproof-api), no id. ServerHello answers HelloRequest.

struct ServerHello {
  uint32_t proto = kProtoVersion;
  std::string supervisor;  // its version, e.g. "0.1.0"
  std::string boot_id;     // new on every supervisor start: resubscribe from offsets
  friend bool operator==(const ServerHello&, const ServerHello&) = default;
};
struct OutputEvent {
  std::string session;
  OutputStream stream = OutputStream::kStdout;
  uint64_t offset = 0;        // of data[0] in the session's output sequence
  std::vector<uint8_t> data;  // the frame's data tail, 1..kMaxChunkBytes
  friend bool operator==(const OutputEvent&, const OutputEvent&) = default;
};
struct GapEvent {  // output [from, to) is lost (transcript cap); offsets continue after it
  std::string session;
  OutputRange range;
  friend bool operator==(const GapEvent&, const GapEvent&) = default;
};
struct LaggedEvent {  // live output was dropped for this connection; re-read from resume_from
  std::string session;
  uint64_t resume_from = 0;
  friend bool operator==(const LaggedEvent&, const LaggedEvent&) = default;
};
struct StateEvent {
  std::string session;
  SessionState state = SessionState::kStarting;
  friend bool operator==(const StateEvent&, const StateEvent&) = default;
};
struct ExitEvent {
  std::string session;
  EndRecord end;
  friend bool operator==(const ExitEvent&, const ExitEvent&) = default;
};
using Event = std::variant<ServerHello, OutputEvent, GapEvent, LaggedEvent, StateEvent, ExitEvent>;

// Everything the supervisor sends: a frame with "id" is a Response, one without is an Event.
using SupervisorMessage = std::variant<Response, Event>;

// ---- Codec. Decoders take a frame from DecodeFrame/ReceiveFrame and copy what they keep.
// They refuse: invalid JSON, nesting over kMaxJsonNesting, duplicate keys, unknown or missing
// fields, wrong types, values out of range, and a data tail on a message that takes none.
// Errors (errnum 0) read "<JSON pointer>: <reason>". Encoders write compact JSON (invalid UTF-8
// in strings becomes U+FFFD) and the frame; they fail only when the frame would exceed
// kMaxFrameBytes (EMSGSIZE), or kMaxMessageBytes for EncodeRequest, whose frame the sender
// passes through SplitFrame. They do not validate: the peer's decoder does.

// Filled by DecodeRequest on failure, for the bad_request response.
struct DecodeDetail {
  std::optional<uint64_t> id;  // the envelope's id, when it was a valid uint64
  std::string field;           // JSON pointer of the first problem; "" for the whole envelope
};

Result<Request> DecodeRequest(const FrameView& frame, DecodeDetail* detail = nullptr);
Result<std::vector<uint8_t>> EncodeRequest(const Request& request);

Result<Response> DecodeResponse(const FrameView& frame);
Result<std::vector<uint8_t>> EncodeResponse(const Response& response);

Result<Event> DecodeEvent(const FrameView& frame);
Result<std::vector<uint8_t>> EncodeEvent(const Event& event);

// For the API's reader: a Response if the envelope has "id", else an Event.
Result<SupervisorMessage> DecodeSupervisorMessage(const FrameView& frame);

// A SessionInfo as a standalone JSON object (e.g. for a state file), same rules as above.
std::string SessionInfoToJson(const SessionInfo& info);
Result<SessionInfo> SessionInfoFromJson(std::string_view json);

}  // namespace mp::wire
