// POST /tokens, GET /tokens and DELETE /tokens/{id} (docs/api.md "Scoped tokens"): minting,
// listing and revoking scoped tokens in the context's TokenStore. Admin only (HandleRoute has
// checked). Every mint and revocation is logged with its principal, here and in the
// supervisor's audit log (an `audit` control request); a secret or hash never is, and GET
// never shows either. Mints and revocations are written by the context's TokenWriter on its
// thread, and answered once durable (token_writer.h). Runs in monkeyproof-api on the
// io_context thread.
#include <cerrno>
#include <chrono>
#include <string>

#include <nlohmann/json.hpp>

#include "common/log.h"
#include "http/api_json.h"
#include "http/route_helpers.h"

namespace mp::http::routes {
namespace {

using nlohmann::json;

uint64_t NowMs() { return WallClockMs(); }

json TokenJson(const TokenRecord& r) {
  return {{"id", r.id},
          {"sessions", r.scope.sessions.ToString()},
          {"rights", RightNames(r.scope.rights)},
          {"presets", r.scope.presets},
          {"workspaces", r.scope.workspaces},
          {"createdAt", IsoTime(r.created_at_ms)},
          {"expiresAt", IsoTime(r.expires_at_ms)},
          {"createdBy", r.created_by},
          {"revoked", r.revoked_at_ms.has_value()},
          {"revokedAt", r.revoked_at_ms ? json(IsoTime(*r.revoked_at_ms)) : json(nullptr)}};
}

// Printable words for a log line: the scope's value is client text.
std::string LogValue(std::string_view s) {
  std::string out;
  for (char ch : s.substr(0, 128)) {
    const auto u = static_cast<unsigned char>(ch);
    out += (u <= 0x20 || u >= 0x7f || ch == '"') ? '?' : ch;
  }
  return out;
}

// Sends a token operation to the supervisor's audit log, the one log of who did what. The
// operation is done already (the store is the API's); when the supervisor is away the line
// logged here is the record, and the failure is logged next to it.
void AuditTokenAction(const Call& c, wire::AuditAction action, const std::string& id) {
  c->ctx.audit.Token(action, c->principal.ToString(), OriginOf(c), id);
}

// "a,b,c" ("-" when empty); the items are right and preset names (no spaces or quotes).
std::string Joined(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : ",") + i;
  return out.empty() ? "-" : out;
}

// The answer to a mint once the writer is done with it.
void AnswerMint(const Call& c, const std::string& by, const Result<MintedToken>& minted) {
  if (!minted) {
    const Error& e = minted.error();
    common::Log(common::LogLevel::kWarning,
                "event=token_mint_failed by=" + by + " client=" + c->client + " reason=\"" +
                    LogValue(e.what) + "\"",
                e.errnum);
    if (e.errnum == EMFILE) {
      RespondError(c, ApiError{429, "capacity", e.what, {}});
    } else {
      RespondError(c, ApiError{500, "internal", "could not store the token: " + e.what, {}});
    }
    return;
  }
  const TokenRecord& r = minted->record;
  common::Log(common::LogLevel::kInfo,
              "event=token_minted id=" + r.id + " by=" + by + " client=" + c->client +
                  " sessions=" + LogValue(r.scope.sessions.ToString()) + " rights=" +
                  Joined(RightNames(r.scope.rights)) + " presets=" + Joined(r.scope.presets) +
                  " expires_at_ms=" + std::to_string(r.expires_at_ms));
  AuditTokenAction(c, wire::AuditAction::kTokenCreate, r.id);
  json j = TokenJson(r);
  j["token"] = minted->token;  // the only time the secret leaves the API
  RespondJson(c, 201, j.dump());
}

// The answer to a revocation once the writer is done with it.
void AnswerRevoke(const Call& c, const std::string& id, const std::string& by,
                  const Result<bool>& revoked) {
  if (!revoked) {
    // The store kept the token as its file has it: valid. Say so, so that nobody relies on
    // a revocation that did not happen.
    common::Log(common::LogLevel::kError,
                "event=token_revoke_failed id=" + id + " by=" + by + " reason=\"" +
                    LogValue(revoked.error().what) + "\"",
                revoked.error().errnum);
    RespondError(c, ApiError{500,
                             "internal",
                             "the token is NOT revoked and still works: the token store could "
                             "not be written (" +
                                 revoked.error().what + "); fix that and send the DELETE again",
                             {}});
    return;
  }
  if (!*revoked) {
    RespondError(c, NotFound("no token with this id"));
    return;
  }
  // Its WebSockets end now, not at their next message (ws_session.h).
  c->ctx.principal_connections.EndToken(id, "token revoked");
  common::Log(common::LogLevel::kInfo,
              "event=token_revoked id=" + id + " by=" + by + " client=" + c->client);
  AuditTokenAction(c, wire::AuditAction::kTokenRevoke, id);
  RespondJson(c, 200, json({{"revoked", true}, {"id", id}}).dump());
}

}  // namespace

void CreateTokenRoute(const Call& c) {
  TokenStore& store = c->ctx.token_store;
  if (!store.enabled()) {
    RespondError(c, ApiError{503,
                             "unavailable",
                             "scoped tokens are disabled: set token_store in api.conf (the "
                             "package's unit gives the API a StateDirectory for it)",
                             {}});
    return;
  }
  auto parsed = ParseMintBody(c->request.body(), store.options().max_ttl_seconds);
  if (auto* error = std::get_if<ApiError>(&parsed)) {
    RespondError(c, *error);
    return;
  }
  const MintBody& body = std::get<MintBody>(parsed);
  std::string by = c->principal.ToString();
  // Answered once the record is durable; the writer's thread waits for the disk, this one not.
  c->ctx.token_writer.Mint(store, body.scope, body.ttl_seconds, by, NowMs(),
                           [c, by](Result<MintedToken> minted) { AnswerMint(c, by, minted); });
}

void ListTokensRoute(const Call& c) {
  json list = json::array();
  for (const auto& r : c->ctx.token_store.List(NowMs())) list.push_back(TokenJson(r));
  json j = {{"enabled", c->ctx.token_store.enabled()}, {"tokens", std::move(list)}};
  RespondJson(c, 200, j.dump());
}

void RevokeTokenRoute(const Call& c) {
  const std::string& id = c->match.session_id;  // the {id} of /tokens/{id}
  if (!IsTokenId(id)) {
    RespondError(c, NotFound("no token with this id (ids are 16 lowercase hex digits)"));
    return;
  }
  std::string by = c->principal.ToString();
  c->ctx.token_writer.Revoke(c->ctx.token_store, id, NowMs(), [c, id, by](Result<bool> revoked) {
    AnswerRevoke(c, id, by, revoked);
  });
}

}  // namespace mp::http::routes
