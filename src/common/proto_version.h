// What each version of the control protocol carries (docs/protocol.md, "Versions"), so that the
// two daemons of one host can be upgraded and restarted at different moments. Version 2 added
// `client` and `via` to the acting requests (kill, signal, stdin, close_stdin, resize), `via` to
// spawn and to the token audits, and the audit actions read, auth_failed, rate_limited and
// audit_suppressed. Version 3 added the error code insufficient_storage. Version 4 added a
// spawn's `cwd_within` (the workspaces a scoped token may create in). Version 5 added the egress
// counters of SessionInfo and HealthInfo. The supervisor refuses
// what its connection's version lacks (RequiredProto) and answers in its codes (ErrorCodeIn);
// the API fits what it sends to the version it agreed on (FitToProto). Both daemons; pure
// functions, thread-safe.
#pragma once

#include <cstdint>
#include <string>

#include "common/messages.h"

namespace mp::wire {

// The lowest version that carries a request as it is, and why.
struct ProtoNeed {
  uint32_t version = kMinProtoVersion;
  // When version > kMinProtoVersion: the JSON pointer of the first member that needs it
  // ("/via", "/client", "/action") and a refusal text for a peer of an older version,
  // "<pointer>: <reason>" as the decoder's errors are.
  std::string field;
  std::string what;
};
ProtoNeed RequiredProto(const RequestBody& body);

// Whether version `proto` has the audit action at all.
bool AuditActionIn(AuditAction action, uint32_t proto);

// Fits `body` to version `proto`: drops the optional members that version lacks (they only
// enrich the audit log). False when the request has no form in that version (an audit action it
// lacks): it must not be sent. `body` is left as it was then.
bool FitToProto(RequestBody& body, uint32_t proto);

// Drops what version `proto` lacks from a response: the egress counters of SessionInfo
// (also in a SessionList) and HealthInfo (version 5).
void FitResponseToProto(Response& response, uint32_t proto);

// The error code a peer of version `proto` is told for `code`: the code itself when that version
// has it, else the nearest one it has (insufficient_storage: capacity).
ErrorCode ErrorCodeIn(ErrorCode code, uint32_t proto);

// What a supervisor of version `proto` lacks (lines its audit log does not get, error codes it
// answers as nearer ones), for the API's log line about it; "" when it lacks nothing.
std::string MissingInProto(uint32_t proto);

}  // namespace mp::wire
