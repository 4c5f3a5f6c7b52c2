// What the route files of monkeyproof-api share (routes.cc, output_routes.cc): answering a
// call, asking the supervisor with the public error mapping, reading query parameters. Runs
// on the io_context thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>

#include "common/messages.h"
#include "http/api_audit.h"
#include "http/api_error.h"
#include "http/routes.h"

namespace mp::http::routes {

using Call = std::shared_ptr<RouteCall>;

void Respond(const Call& c, HttpResponse res);
void RespondJson(const Call& c, int status, std::string body);
// The error as JSON; 429 and 503 carry Retry-After.
void RespondError(const Call& c, const ApiError& error);

// The session routes answer an unknown session exactly as the original did.
ApiError SessionError(const wire::ErrorBody& error);

// Calls the supervisor; on success hands the response to `ok`, else answers with the mapped
// error (`map` lets a route adjust it, e.g. for compatibility).
template <typename Ok>
void Ask(const Call& c, wire::RequestBody body, Ok ok,
         ApiError (*map)(const wire::ErrorBody&) = &SessionError) {
  c->ctx.link.Call(std::move(body), [c, ok = std::move(ok), map](Result<wire::Response> r) {
    if (!r) {
      RespondError(c, TransportError(r.error()));
      return;
    }
    if (!r->ok()) {
      RespondError(c, map(std::get<wire::ErrorBody>(r->body)));
      return;
    }
    ok(*r);
  });
}

// The query parameter `key`, or null when absent.
const std::string* Query(const Call& c, const std::string& key);
// ?key= as an unsigned number within [min, max]; `fallback` when absent. On a bad value it
// answers 400 naming "?key" and returns nullopt.
std::optional<uint64_t> QueryNumber(const Call& c, const std::string& key, uint64_t fallback,
                                    uint64_t min, uint64_t max);
// Answers 404 and returns false when the path's session id is not one ours could be.
bool CheckSessionId(const Call& c);

// Where the call came from, for the audit log.
AuditOrigin OriginOf(const Call& c);

// A 403 naming what the principal lacks.
ApiError Forbidden(std::string message);

// token_routes.cc: POST /tokens, GET /tokens, DELETE /tokens/{id} (admin only).
void CreateTokenRoute(const Call& c);
void ListTokensRoute(const Call& c);
void RevokeTokenRoute(const Call& c);

// output_routes.cc: GET /sessions/{id}/transcript and GET /sessions/{id}/output.
void TranscriptRoute(const Call& c);
void OutputRoute(const Call& c);

}  // namespace mp::http::routes
