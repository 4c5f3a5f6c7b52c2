// The public API's error: HTTP status, stable code, human message and the offending field, as
// sent to clients ({"error":"…","code":"…","field":"…"}, docs/api.md "Errors"). Runs in
// monkeyproof-api and the CLI. Plain value type; no syscalls.
#pragma once

#include <string>

#include "common/messages.h"

namespace mp::http {

struct ApiError {
  int status = 500;     // HTTP status
  std::string code;     // stable: bad_request, unauthorized, not_found, too_large, ...
  std::string message;  // for humans; becomes "error"
  std::string field;    // JSON pointer ("/task") or "?since" for a query parameter; may be empty

  // {"error":message,"code":code[,"field":field]} as compact JSON.
  [[nodiscard]] std::string ToJson() const;
};

ApiError BadRequest(std::string message, std::string field = {});
ApiError NotFound(std::string message = "Not found");

// The supervisor's error mapped to the public one (docs/protocol.md's table: bad_request 400,
// not_found 404, wrong_state 409, capacity 429, policy_violation 403, internal 500, too_large 413,
// unavailable 503, host_setup 500). The message and field pass through unchanged.
ApiError FromSupervisor(const wire::ErrorBody& error);
// A request that got no answer (the supervisor link is down): 503 unavailable with its reason.
ApiError TransportError(const Error& error);

}  // namespace mp::http
