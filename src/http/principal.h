// Who a request acts as, and what each route asks of it (docs/api.md "Scoped tokens"): the
// admin (a token of the token file), a scoped token (its id and scope), or a client certificate
// (mTLS). Authenticate turns a presented token into a principal; RouteAccess says which right a
// route needs. Runs in monkeyproof-api on the io_context thread. Pure but for reading the
// token set and store it is given.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/messages.h"
#include "http/auth.h"
#include "http/router.h"
#include "http/scoped_tokens.h"
#include "http/token_scope.h"

namespace mp::http {

struct Principal {
  enum class Kind { kAdmin, kToken, kCertificate };
  Kind kind = Kind::kAdmin;
  std::string id;                   // the token id, or the certificate's subject
  std::optional<TokenScope> scope;  // a scoped token's; nullopt: every session, every right
  // For the audit log and createdBy: "admin", "token:<id>", "cert:<subject>" (the subject's
  // bytes outside printable ASCII as %XX): always a common::IsPrincipalLabel.
  [[nodiscard]] std::string ToString() const;
  [[nodiscard]] bool unrestricted() const { return !scope.has_value(); }
  // A scoped principal has `right`; an unrestricted one has every right.
  [[nodiscard]] bool Has(Right right) const { return !scope || scope->Has(right); }
  [[nodiscard]] Rights rights() const { return scope ? scope->rights : kAllRights; }
};

// The outcome of checking a presented token.
struct AuthOutcome {
  std::optional<Principal> principal;  // set when the token is good
  std::string reason;  // why not, for the 401 body: "Unauthorized", "token expired", ...
  wire::AuthFailureReason failure = wire::AuthFailureReason::kInvalid;  // its class, for the audit
};

// An admin token, else a scoped token of `store` that is neither expired nor revoked. Every
// admin token is compared (constant time) before the store is asked.
AuthOutcome Authenticate(const TokenSet& admin, const TokenStore& store, std::string_view token,
                         uint64_t now_ms);

// ---- WebSocket credentials besides `Authorization` (docs/api.md "WebSocket auth").
// The subprotocol a client offers and the server echoes; the token travels in a second one,
// `monkeyproof.bearer.<token>`, which is never echoed.
inline constexpr std::string_view kWsProtocol = "monkeyproof";
inline constexpr std::string_view kWsBearerProtocolPrefix = "monkeyproof.bearer.";
// The token in a Sec-WebSocket-Protocol value ("monkeyproof, monkeyproof.bearer.<t>"); nullopt
// when no offered protocol carries one (or two do: which one would be ambiguous).
std::optional<std::string> WsProtocolToken(std::string_view header);
// Whether the Sec-WebSocket-Protocol value offers kWsProtocol.
bool OffersWsProtocol(std::string_view header);
// The first message of a WebSocket that carried no credential:
// {"type":"auth","token":"<token>"} and nothing else; nullopt for anything else.
std::optional<std::string> ParseWsAuthMessage(std::string_view text);

// Unix epoch milliseconds now (the clock token expiry is measured with).
uint64_t WallClockMs();

// What a route requires of the principal.
enum class Access {
  kAny,     // any authenticated principal: service information (/, /health, /policies, ...)
  kAdmin,   // an unrestricted principal: /metrics, /tokens
  kRead,    // read: list, get, transcript, output, WebSocket
  kInput,   // input: input, close-stdin, resize, signal
  kKill,    // kill: DELETE /sessions/{id}
  kCreate,  // create: POST /sessions (the preset is checked against the scope later)
};
Access RouteAccess(Route route);
// Whether the route acts on one session named in the path (its scope is then checked).
bool RouteNamesSession(Route route);

// nullopt when `principal` may use a route needing `access`; else the 403 message naming what
// is missing, e.g. "this token lacks the kill right".
std::optional<std::string> MissingAccess(const Principal& principal, Access access);

}  // namespace mp::http
