// The public routes of monkeyproof-api (docs/api.md): each turns an authenticated, routed
// request into supervisor calls and one HTTP response. Asynchronous: the answer goes to
// `respond` later on the io_context thread. WebSocket upgrades are prepared here (session
// looked up, offset checked) and handed to `upgrade`. Runs in monkeyproof-api.
#pragma once

#include <functional>
#include <string>

#include "common/messages.h"
#include "http/api_context.h"
#include "http/api_error.h"
#include "http/http_session.h"
#include "http/principal.h"
#include "http/router.h"

namespace mp::http {

struct RouteCall {
  ApiContext& ctx;
  const HttpRequest& request;
  RouteMatch match;
  std::string client;   // "api:<address>", for the supervisor's audit log
  std::string via;      // the trusted proxy's address when it reported `client`, else ""
  Principal principal;  // who the credential says the caller is; HandleRoute checks its scope
  std::function<void(HttpResponse)> respond;
  // For kWebSocket: called with the session and ?since instead of respond.
  std::function<void(wire::SessionInfo, std::optional<uint64_t>)> upgrade;
};

// Checks the principal's right for the route (403 naming the missing right) and, for a route
// on one session, that the session is in the token's scope (else answered as an unknown
// session), then runs the route.
void HandleRoute(RouteCall call);

// A JSON response with the request's version and keep-alive.
HttpResponse JsonResponse(const HttpRequest& request, int status, std::string body);
HttpResponse ErrorResponse(const HttpRequest& request, const ApiError& error);

}  // namespace mp::http
