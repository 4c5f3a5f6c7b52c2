#include "http/routes.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <string_view>
#include <utility>

#include <boost/asio/steady_timer.hpp>
#include <boost/beast/http/field.hpp>
#include <nlohmann/json.hpp>

#include "common/version.h"
#include "http/api_json.h"
#include "http/route_helpers.h"

namespace mp::http {
namespace http = boost::beast::http;
using nlohmann::json;

namespace routes {

// Seconds a client is told to wait when the supervisor is at capacity or away.
constexpr int kCapacityRetrySeconds = 5;

void Respond(const Call& c, HttpResponse res) { c->respond(std::move(res)); }

void RespondJson(const Call& c, int status, std::string body) {
  Respond(c, JsonResponse(c->request, status, std::move(body)));
}

void RespondError(const Call& c, const ApiError& error) {
  auto res = ErrorResponse(c->request, error);
  if (error.status == 429) res.set(http::field::retry_after, std::to_string(kCapacityRetrySeconds));
  if (error.status == 503) res.set(http::field::retry_after, "1");
  Respond(c, std::move(res));
}

ApiError SessionError(const wire::ErrorBody& error) {
  if (error.code == wire::ErrorCode::kNotFound) return NotFound();
  return FromSupervisor(error);
}

const std::string* Query(const Call& c, const std::string& key) {
  auto it = c->match.query.find(key);
  return it == c->match.query.end() ? nullptr : &it->second;
}

std::optional<uint64_t> QueryNumber(const Call& c, const std::string& key, uint64_t fallback,
                                    uint64_t min, uint64_t max) {
  const std::string* v = Query(c, key);
  if (v == nullptr) return fallback;
  auto n = ParseUnsigned(*v);
  if (!n || *n < min || *n > max) {
    RespondError(c, BadRequest(key + " must be an integer from " + std::to_string(min) + " to " +
                                   std::to_string(max),
                               "?" + key));
    return std::nullopt;
  }
  return n;
}

ApiError Forbidden(std::string message) {
  return ApiError{403, "forbidden", std::move(message), {}};
}

AuditOrigin OriginOf(const Call& c) { return {c->client, c->via}; }

bool CheckSessionId(const Call& c) {
  if (wire::IsValidSessionId(c->match.session_id)) return true;
  RespondError(c, NotFound());
  return false;
}

}  // namespace routes

namespace {

using routes::Ask;
using routes::Call;
using routes::CheckSessionId;
using routes::Forbidden;
using routes::OutputRoute;
using routes::Query;
using routes::QueryNumber;
using routes::Respond;
using routes::RespondError;
using routes::RespondJson;
using routes::SessionError;
using routes::TranscriptRoute;

// Recent output in GET /sessions/{id}: recentOutput.
constexpr uint64_t kRecentOutputBytes = 8 * 1024;
// Sessions per list request to the supervisor.
constexpr uint32_t kListPageSize = 50;

// ---- Routes.

void Root(const Call& c) {
  json j = {{"name", "monkeyproof"},
            {"version", mp::kVersion},
            {"status", "operational"},
            {"message", "MonkeyProof remote execution host; see GET /openapi.json"}};
  RespondJson(c, 200, j.dump());
}

void Readyz(const Call& c) {
  c->ctx.link.Call(wire::HealthRequest{}, [c](Result<wire::Response> r) {
    json j;
    if (!r || !r->ok()) {
      j = {{"ready", false},
           {"reason", !r ? r.error().what : std::get<wire::ErrorBody>(r->body).message},
           {"supervisor", nullptr}};
      auto res = JsonResponse(c->request, 503, j.dump());
      res.set(http::field::retry_after, "1");
      Respond(c, std::move(res));
      return;
    }
    const auto& h = std::get<wire::HealthInfo>(r->body);
    j = {{"ready", h.ready},
         {"reason", h.ready ? "" : h.reason},
         {"supervisor",
          {{"version", h.version},
           {"uptimeSeconds", h.uptime_seconds},
           {"sessionsActive", h.sessions_active},
           {"sessionsTotal", h.sessions_total},
           {"maxSessions", h.max_sessions}}}};
    auto res = JsonResponse(c->request, h.ready ? 200 : 503, j.dump());
    if (!h.ready) res.set(http::field::retry_after, "1");
    Respond(c, std::move(res));
  });
}

void MetricsRoute(const Call& c) {
  c->ctx.link.Call(wire::HealthRequest{}, [c](Result<wire::Response> r) {
    SupervisorGauges g;
    if (r && r->ok()) {
      const auto& h = std::get<wire::HealthInfo>(r->body);
      g = {true, h.sessions_active, h.sessions_total, h.max_sessions};
      g.sessions_readopted = h.sessions_readopted;
      g.readoption_failures = h.readoption_failures;
      g.egress = h.egress;
    }
    HttpResponse res{http::status::ok, c->request.version()};
    res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
    res.keep_alive(c->request.keep_alive());
    res.body() = c->ctx.metrics.Render(g);
    res.prepare_payload();
    Respond(c, std::move(res));
  });
}

void Version(const Call& c) {
  const auto& hello = c->ctx.link.hello();
  json j = {{"name", "monkeyproof"},
            {"version", mp::kVersion},
            {"supervisor", hello ? json(hello->supervisor) : json(nullptr)},
            {"protocol", c->ctx.link.proto()}};
  RespondJson(c, 200, j.dump());
}

// The supervisor answers a page at a time (as much as fits one frame); this asks for the pages
// after one another and answers with all of them.
struct PolicyLister : std::enable_shared_from_this<PolicyLister> {
  Call call;
  wire::PoliciesRequest request;
  wire::PolicyList found;

  void Next() {
    Ask(
        call, request,
        [self = shared_from_this()](const wire::Response& r) {
          const auto& page = std::get<wire::PolicyList>(r.body);
          self->found.policies.insert(self->found.policies.end(), page.policies.begin(),
                                      page.policies.end());
          // Names come in increasing order; anything else would not end.
          if (page.more && !page.policies.empty() &&
              (!self->request.after || page.policies.back().name > *self->request.after)) {
            self->request.after = page.policies.back().name;
            self->Next();
            return;
          }
          RespondJson(self->call, 200, PolicyListJson(self->found));
        },
        &FromSupervisor);
  }
};

void Policies(const Call& c) {
  auto lister = std::make_shared<PolicyLister>();
  lister->call = c;
  lister->Next();
}

void OpenApi(const Call& c) {
  HttpResponse res{http::status::ok, c->request.version()};
  res.set(http::field::content_type, "application/json");
  res.keep_alive(c->request.keep_alive());
  res.body() = kOpenApiDocument;
  res.prepare_payload();
  Respond(c, std::move(res));
}

// The supervisor's error names the wire's field; the client sent the public member.
ApiError SpawnError(const wire::ErrorBody& error) {
  ApiError e = FromSupervisor(error);
  if (e.field == "/session_type") {
    e.field = "/type";
  } else if (e.field == "/max_turns") {
    e.field = "/maxTurns";
  }
  return e;
}

// A scoped token creates only from its presets, and only sessions that fall in its own scope
// and in no other token's because of what it set (docs/api.md "Scoped tokens"): an owner:
// scope sets its owner (a missing owner gets it) and no labels; a label: scope sets its label
// (added when missing) and no owner and no other label. Anything else is 403 naming the field
// and the scope. The token's workspaces go to the supervisor as cwd_within, which it enforces
// while it resolves the cwd (a check of the cwd's text here would follow a symlink that a
// session of the token planted); a create token without workspaces (minted before tokens
// carried them) may not create at all.
std::optional<ApiError> CheckCreateScope(const TokenScope& scope, wire::SpawnRequest* spawn) {
  auto refuse = [&](const std::string& what, const char* field) {
    ApiError e = Forbidden("this token (sessions " + scope.sessions.ToString() + ") " + what);
    e.field = field;
    return e;
  };
  if (!spawn->preset || !scope.AllowsPreset(*spawn->preset)) {
    std::string allowed;
    for (const auto& p : scope.presets) allowed += (allowed.empty() ? "" : ", ") + p;
    return refuse("may create sessions only from the presets " + allowed, "/preset");
  }
  if (scope.workspaces.empty()) {
    return refuse(
        "was minted before tokens carried workspaces and may not create sessions: mint a new "
        "token with the workspaces its sessions may run in (POST /tokens \"workspaces\", "
        "monkeyproof token create --workspace DIR)",
        "/cwd");
  }
  spawn->cwd_within = scope.workspaces;
  switch (scope.sessions.kind) {
    case SessionScope::Kind::kSession:
      // Refused at mint already: a new session is never the one a session: scope names.
      return refuse("may not create sessions", "/preset");
    case SessionScope::Kind::kOwner:
      if (spawn->owner.empty()) spawn->owner = scope.sessions.value;
      if (spawn->owner != scope.sessions.value) {
        return refuse("may create sessions only with owner " + scope.sessions.value +
                          " (or none: it is then set); another owner would put the session "
                          "in that owner's scope",
                      "/owner");
      }
      if (!spawn->labels.empty()) {
        return refuse("may not set labels (here " + spawn->labels.front() +
                          "): a label would put the session in that label's scope; ask an "
                          "admin token or a label: token to label sessions",
                      "/labels");
      }
      return std::nullopt;
    case SessionScope::Kind::kLabel:
      if (!spawn->owner.empty()) {
        return refuse("may not set an owner (here " + spawn->owner +
                          "): an owner would put the session in that owner's scope",
                      "/owner");
      }
      for (const std::string& label : spawn->labels) {
        if (label != scope.sessions.value) {
          return refuse("may set only the label " + scope.sessions.value + ", not " + label +
                            ", which would put the session in that label's scope",
                        "/labels");
        }
      }
      if (spawn->labels.empty()) spawn->labels.push_back(scope.sessions.value);
      return std::nullopt;
  }
  return refuse("has an unknown scope", "/preset");
}

void CreateSession(const Call& c) {
  auto parsed = ParseSpawnBody(c->request.body(), c->client);
  if (auto* error = std::get_if<ApiError>(&parsed)) {
    RespondError(c, *error);
    return;
  }
  auto& spawn = std::get<wire::SpawnRequest>(parsed);
  spawn.principal = c->principal.ToString();
  spawn.via = c->via;
  if (c->principal.scope) {
    if (auto refused = CheckCreateScope(*c->principal.scope, &spawn)) {
      RespondError(c, *refused);
      return;
    }
  }
  // Never without the limit: a supervisor before version 4 cannot enforce cwd_within
  // (SupervisorLink::Call's FitToProto is the backstop for a link that changes meanwhile).
  if (!spawn.cwd_within.empty() && c->ctx.link.up() && c->ctx.link.proto() < 4) {
    RespondError(c, ApiError{503, "unavailable",
                             "this token's sessions are limited to its workspaces, which the "
                             "supervisor enforces from control protocol 4; monkeyproofd speaks " +
                                 std::to_string(c->ctx.link.proto()) +
                                 ": upgrade monkeyproofd, or create with an admin token",
                             "/cwd"});
    return;
  }
  Ask(
      c, std::move(spawn),
      [c](const wire::Response& r) {
        c->ctx.metrics.CountSessionCreated();
        RespondJson(c, 201, SessionInfoJson(std::get<wire::SessionInfo>(r.body), 0));
      },
      &SpawnError);
}

struct Lister : std::enable_shared_from_this<Lister> {
  Call call;
  wire::ListRequest request;
  std::optional<StatusFilter> filter;  // ?status= or ?state=; none: every session
  uint64_t limit = 0;                  // 0: all
  const TokenScope* scope = nullptr;   // a scoped token's: only its sessions are listed
  std::vector<wire::SessionInfo> found;

  void Next() {
    Ask(
        call, request,
        [self = shared_from_this()](const wire::Response& r) {
          const auto& list = std::get<wire::SessionList>(r.body);
          for (const auto& s : list.sessions) {
            if (self->filter && !self->filter->Matches(s)) continue;
            if (self->scope != nullptr && !self->scope->Covers(s.id, s.owner, s.labels, s.cwd)) {
              continue;
            }
            if (self->limit != 0 && self->found.size() >= self->limit) break;
            self->found.push_back(s);
          }
          const bool full = self->limit != 0 && self->found.size() >= self->limit;
          if (list.more && !full && !list.sessions.empty()) {
            self->request.after = list.sessions.back().id;
            self->Next();
            return;
          }
          std::vector<uint32_t> counts;
          counts.reserve(self->found.size());
          for (const auto& s : self->found) counts.push_back(self->call->ctx.hub.ClientCount(s.id));
          RespondJson(self->call, 200, SessionListJson(self->found, counts));
        },
        &FromSupervisor);
  }
};

std::string NormalizeLabel(std::string_view v) {
  const auto* b = v.begin();
  const auto* e = v.end();
  while (b != e && (*b == ' ' || *b == '\t')) ++b;
  while (e != b && (e[-1] == ' ' || e[-1] == '\t')) --e;
  std::string s(b, e);
  for (char& ch : s) {
    if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
  }
  return s;
}

void ListSessions(const Call& c) {
  auto lister = std::make_shared<Lister>();
  lister->call = c;
  if (const auto* owner = Query(c, "owner")) lister->request.owner = *owner;
  if (const auto* label = Query(c, "label")) lister->request.label = NormalizeLabel(*label);
  const std::string* status = Query(c, "status");
  const std::string* state = Query(c, "state");
  if (status != nullptr && state != nullptr) {
    RespondError(c, BadRequest("give status or state, not both", "?state"));
    return;
  }
  if (status != nullptr || state != nullptr) {
    auto filter = status != nullptr ? ParseStatusFilter(*status) : ParseStateFilter(*state);
    if (auto* error = std::get_if<ApiError>(&filter)) {
      RespondError(c, *error);
      return;
    }
    lister->filter = std::get<StatusFilter>(filter);
    // One exact state: the supervisor filters, and fewer pages cross the link.
    lister->request.state = lister->filter->state;
  }
  auto limit = QueryNumber(c, "limit", 0, 1, wire::kMaxListLimit);
  if (!limit) return;
  lister->limit = *limit;
  if (const auto& scope = c->principal.scope) {
    // The supervisor filters by the scope's owner or label; a query asking for another owner
    // or label then matches nothing in scope.
    lister->scope = &*scope;
    const SessionScope& in = scope->sessions;
    auto& wanted = in.kind == SessionScope::Kind::kOwner   ? lister->request.owner
                   : in.kind == SessionScope::Kind::kLabel ? lister->request.label
                                                           : lister->request.owner;
    if (in.kind != SessionScope::Kind::kSession) {
      if (wanted && *wanted != in.value) {
        RespondJson(c, 200, SessionListJson({}, {}));
        return;
      }
      wanted = in.value;
    }
  }
  // Pages small enough that a page of SessionInfo always fits one 64 KiB control frame (a
  // SessionInfo can pass 600 bytes); the loop in Lister::Next asks for the next page.
  lister->request.limit = kListPageSize;
  lister->Next();
}

// Drops the partial first line of a tail read so that recentOutput starts at a line start.
bool TrimToLineStart(wire::OutputRead& read) {
  const auto nl = std::find(read.data.begin(), read.data.end(), uint8_t{'\n'});
  if (nl == read.data.end()) return false;
  size_t drop = static_cast<size_t>(nl - read.data.begin()) + 1;
  read.data.erase(read.data.begin(), read.data.begin() + static_cast<long>(drop));
  std::vector<wire::OutputChunk> kept;
  for (auto chunk : read.chunks) {
    if (drop >= chunk.length) {
      drop -= chunk.length;
      continue;
    }
    chunk.offset += drop;
    chunk.length -= static_cast<uint32_t>(drop);
    drop = 0;
    kept.push_back(chunk);
  }
  read.chunks = std::move(kept);
  return true;
}

void GetSession(const Call& c) {
  if (!CheckSessionId(c)) return;
  Ask(c, wire::GetRequest{c->match.session_id}, [c](const wire::Response& r) {
    auto info = std::get<wire::SessionInfo>(r.body);
    const uint64_t since =
        info.output_bytes > kRecentOutputBytes ? info.output_bytes - kRecentOutputBytes : 0;
    Ask(c, wire::ReadOutputRequest{info.id, since, static_cast<uint32_t>(kRecentOutputBytes)},
        [c, info, since](const wire::Response& rr) {
          auto read = std::get<wire::OutputRead>(rr.body);
          bool at_line = since == 0;
          if (!at_line) at_line = TrimToLineStart(read);
          RespondJson(c, 200,
                      SessionDetailJson(info, c->ctx.hub.ClientCount(info.id), read, at_line));
        });
  });
}

// The original marked a session "killed" at once and "exited" as soon as its process was
// gone. Ours ends a moment after the kill (SIGTERM to the sandbox, then its cleanup), so DELETE
// answers once the session has ended, or after kKillWait if it takes longer (a command that
// ignores SIGTERM until the grace period's SIGKILL): a GET right after DELETE sees the end.
constexpr std::chrono::milliseconds kKillWait{1000};
constexpr std::chrono::milliseconds kKillPoll{10};

struct KillWaiter : std::enable_shared_from_this<KillWaiter> {
  Call call;
  boost::asio::steady_timer timer;
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::now() + kKillWait;

  explicit KillWaiter(Call c) : call(std::move(c)), timer(call->ctx.io) {}

  void Check(const wire::SessionInfo& info) {
    if (info.end || std::chrono::steady_clock::now() >= deadline) {
      RespondJson(call, 200, R"({"killed":true})");
      return;
    }
    timer.expires_after(kKillPoll);
    timer.async_wait([self = shared_from_this()](boost::system::error_code) {
      self->call->ctx.link.Call(wire::GetRequest{self->call->match.session_id},
                                [self](Result<wire::Response> r) {
                                  // The kill succeeded; a failed look afterwards changes nothing.
                                  if (!r || !r->ok()) {
                                    RespondJson(self->call, 200, R"({"killed":true})");
                                    return;
                                  }
                                  self->Check(std::get<wire::SessionInfo>(r->body));
                                });
    });
  }
};

void KillSession(const Call& c) {
  if (!CheckSessionId(c)) return;
  Ask(c, wire::KillRequest{c->match.session_id, c->principal.ToString(), c->client, c->via},
      [c](const wire::Response& r) {
        std::make_shared<KillWaiter>(c)->Check(std::get<wire::SessionInfo>(r.body));
      });
}

// The original answered input to an unknown session, or one that is not running, with 400
// {"error":"Session not found or not running"}; keep that status (the code tells them apart).
ApiError InputError(const wire::ErrorBody& error) {
  if (error.code == wire::ErrorCode::kNotFound) {
    return ApiError{400, "not_found", "Session not found or not running", {}};
  }
  ApiError e = SessionError(error);
  if (error.code == wire::ErrorCode::kWrongState) e.status = 400;
  return e;
}

void SendInput(const Call& c, std::shared_ptr<std::string> data, size_t from) {
  if (from >= data->size() && from > 0) {
    RespondJson(c, 200, R"({"sent":true})");
    return;
  }
  const size_t n = std::min(wire::kMaxChunkBytes, data->size() - from);
  wire::StdinRequest request{c->match.session_id,
                             std::vector<uint8_t>(data->begin() + static_cast<long>(from),
                                                  data->begin() + static_cast<long>(from + n)),
                             c->principal.ToString(), c->client, c->via};
  Ask(
      c, std::move(request),
      [c, data, from, n](const wire::Response&) {
        if (from + n >= data->size()) {
          RespondJson(c, 200, R"({"sent":true})");
        } else {
          SendInput(c, data, from + n);
        }
      },
      &InputError);
}

void Input(const Call& c) {
  if (!wire::IsValidSessionId(c->match.session_id)) {
    RespondError(c, InputError(wire::ErrorBody{wire::ErrorCode::kNotFound, "no such session", {}}));
    return;
  }
  auto parsed = ParseInputBody(c->request.body());
  if (auto* error = std::get_if<ApiError>(&parsed)) {
    RespondError(c, *error);
    return;
  }
  SendInput(c, std::make_shared<std::string>(std::move(std::get<std::string>(parsed))), 0);
}

void CloseStdin(const Call& c) {
  if (!CheckSessionId(c)) return;
  Ask(c, wire::CloseStdinRequest{c->match.session_id, c->principal.ToString(), c->client, c->via},
      [c](const wire::Response&) { RespondJson(c, 200, R"({"closed":true})"); });
}

void Resize(const Call& c) {
  if (!CheckSessionId(c)) return;
  auto parsed = ParseResizeBody(c->request.body());
  if (auto* error = std::get_if<ApiError>(&parsed)) {
    RespondError(c, *error);
    return;
  }
  Ask(c,
      wire::ResizeRequest{c->match.session_id, std::get<wire::PtySize>(parsed),
                          c->principal.ToString(), c->client, c->via},
      [c](const wire::Response&) { RespondJson(c, 200, R"({"resized":true})"); });
}

void Signal(const Call& c) {
  if (!CheckSessionId(c)) return;
  auto parsed = ParseSignalBody(c->request.body());
  if (auto* error = std::get_if<ApiError>(&parsed)) {
    RespondError(c, *error);
    return;
  }
  if (auto missing = MissingSignalRight(c->principal.rights(), std::get<int32_t>(parsed))) {
    ApiError e = Forbidden(std::move(*missing));
    e.field = "/signal";
    RespondError(c, e);
    return;
  }
  Ask(c,
      wire::SignalRequest{c->match.session_id, std::get<int32_t>(parsed), c->principal.ToString(),
                          c->client, c->via},
      [c](const wire::Response&) { RespondJson(c, 200, R"({"signaled":true})"); });
}

void WebSocket(const Call& c) {
  if (!CheckSessionId(c)) return;
  std::optional<uint64_t> since;
  if (Query(c, "since") != nullptr) {
    since = QueryNumber(c, "since", 0, 0, UINT64_MAX);
    if (!since) return;
  }
  Ask(c, wire::GetRequest{c->match.session_id}, [c, since](const wire::Response& r) {
    const auto& info = std::get<wire::SessionInfo>(r.body);
    // Past the end, the stream's reads would fail forever: refuse before the upgrade.
    if (since && *since > info.output_bytes) {
      RespondError(c, BadRequest("since is past the end of the output (" +
                                     std::to_string(info.output_bytes) + " bytes)",
                                 "?since"));
      return;
    }
    c->upgrade(info, since);
  });
}

}  // namespace

HttpResponse JsonResponse(const HttpRequest& request, int status, std::string body) {
  HttpResponse res{static_cast<http::status>(status), request.version()};
  res.set(http::field::content_type, "application/json");
  res.keep_alive(request.keep_alive());
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

HttpResponse ErrorResponse(const HttpRequest& request, const ApiError& error) {
  return JsonResponse(request, error.status, error.ToJson());
}

namespace {

// How a route answers a session it does not know (input keeps the original's 400): a session
// outside a token's scope is answered the same way, so a token cannot probe for others.
ApiError OutOfScope(Route route) {
  if (route == Route::kInput)
    return ApiError{400, "not_found", "Session not found or not running", {}};
  return NotFound();
}

void Dispatch(const Call& c);

// The session of the path must be in the token's scope: by id at once, by owner or label after
// asking the supervisor for the session.
void CheckSessionScope(const Call& c) {
  const TokenScope& scope = *c->principal.scope;
  const std::string& id = c->match.session_id;
  if (scope.sessions.kind == SessionScope::Kind::kSession) {
    if (id == scope.sessions.value) return Dispatch(c);
    return RespondError(c, OutOfScope(c->match.route));
  }
  if (!wire::IsValidSessionId(id)) return RespondError(c, OutOfScope(c->match.route));
  c->ctx.link.Call(wire::GetRequest{id}, [c](Result<wire::Response> r) {
    if (!r) return RespondError(c, TransportError(r.error()));
    const auto* info = std::get_if<wire::SessionInfo>(&r->body);
    if (info != nullptr &&
        c->principal.scope->Covers(info->id, info->owner, info->labels, info->cwd)) {
      return Dispatch(c);
    }
    const auto* error = std::get_if<wire::ErrorBody>(&r->body);
    if (error != nullptr && error->code != wire::ErrorCode::kNotFound) {
      return RespondError(c, FromSupervisor(*error));
    }
    RespondError(c, OutOfScope(c->match.route));
  });
}

}  // namespace

void HandleRoute(RouteCall call) {
  auto c = std::make_shared<RouteCall>(std::move(call));
  if (auto missing = MissingAccess(c->principal, RouteAccess(c->match.route))) {
    return RespondError(c, Forbidden(*missing));
  }
  if (c->principal.scope && RouteNamesSession(c->match.route)) return CheckSessionScope(c);
  Dispatch(c);
}

namespace {

// Reads of one session go to the audit log (throttled per principal, ApiAudit) once auth and
// scope let them through, before the session is looked up.
bool IsSessionRead(Route route) {
  return route == Route::kGetSession || route == Route::kTranscript || route == Route::kOutput ||
         route == Route::kWebSocket;
}

void Dispatch(const Call& c) {
  if (IsSessionRead(c->match.route) && wire::IsValidSessionId(c->match.session_id)) {
    c->ctx.audit.Read(c->principal.ToString(), routes::OriginOf(c), c->match.session_id,
                      AuditRouteName(c->match.route));
  }
  switch (c->match.route) {
    case Route::kRoot:
      return Root(c);
    case Route::kHealth:
    case Route::kLivez:
      return RespondJson(c, 200, R"({"ok":true})");
    case Route::kReadyz:
      return Readyz(c);
    case Route::kMetrics:
      return MetricsRoute(c);
    case Route::kVersion:
      return Version(c);
    case Route::kPolicies:
      return Policies(c);
    case Route::kOpenApi:
      return OpenApi(c);
    case Route::kCreateSession:
      return CreateSession(c);
    case Route::kListSessions:
      return ListSessions(c);
    case Route::kGetSession:
      return GetSession(c);
    case Route::kKillSession:
      return KillSession(c);
    case Route::kInput:
      return Input(c);
    case Route::kCloseStdin:
      return CloseStdin(c);
    case Route::kResize:
      return Resize(c);
    case Route::kSignal:
      return Signal(c);
    case Route::kTranscript:
      return TranscriptRoute(c);
    case Route::kOutput:
      return OutputRoute(c);
    case Route::kWebSocket:
      return WebSocket(c);
    case Route::kCreateToken:
      return routes::CreateTokenRoute(c);
    case Route::kListTokens:
      return routes::ListTokensRoute(c);
    case Route::kRevokeToken:
      return routes::RevokeTokenRoute(c);
  }
}

}  // namespace

}  // namespace mp::http
