#include "supervisor/dispatcher.h"

#include <type_traits>

namespace mp::supervisor {
namespace {

template <typename>
inline constexpr bool kUnhandled = false;

template <typename T>
wire::ResponseBody ToBody(Answer<T>&& answer) {
  if (auto* err = std::get_if<wire::ErrorBody>(&answer)) return std::move(*err);
  if constexpr (std::is_same_v<T, std::monostate>) {
    return std::monostate{};
  } else {
    return std::move(std::get<T>(answer));
  }
}

// The peer acting for the request's principal, client and via (the audit log's members).
template <typename R>
PeerInfo Acting(const PeerInfo& peer, const R& request) {
  PeerInfo who = peer;
  who.principal = request.principal;
  if (!request.client.empty()) who.client = request.client;
  who.via = request.via;
  return who;
}

}  // namespace

void Dispatcher::OnRequest(const PeerInfo& peer, const wire::Request& request) {
  wire::Response response;
  response.id = request.id;
  SessionManager& m = *manager_;
  bool sent = false;
  std::visit(
      [&](const auto& r) {
        using R = std::decay_t<decltype(r)>;
        if constexpr (std::is_same_v<R, wire::HelloRequest>) {
          response.body = MakeError(wire::ErrorCode::kBadRequest, "hello was already exchanged");
        } else if constexpr (std::is_same_v<R, wire::SpawnRequest>) {
          PeerInfo who = Acting(peer, r);
          // Answered when the child has reported, from the loop; the connection may be gone
          // by then (Send ignores it).
          sent = true;
          if (before_spawn_) before_spawn_();
          m.Spawn(r, who,
                  [server = server_, connection = peer.connection_id,
                   id = request.id](const Answer<wire::SessionInfo>& answer) {
                    wire::Response late;
                    late.id = id;
                    if (const auto* err = std::get_if<wire::ErrorBody>(&answer)) {
                      late.body = *err;
                    } else {
                      late.body = std::get<wire::SessionInfo>(answer);
                    }
                    server->Send(connection, late);
                  });
        } else if constexpr (std::is_same_v<R, wire::ListRequest>) {
          response.body = m.List(r);
        } else if constexpr (std::is_same_v<R, wire::GetRequest>) {
          response.body = ToBody(m.Get(r.session));
        } else if constexpr (std::is_same_v<R, wire::KillRequest>) {
          response.body = ToBody(m.Kill(r.session, Acting(peer, r)));
        } else if constexpr (std::is_same_v<R, wire::SignalRequest>) {
          response.body = ToBody(m.Signal(r.session, r.signal, Acting(peer, r)));
        } else if constexpr (std::is_same_v<R, wire::StdinRequest>) {
          response.body = ToBody(m.Stdin(r.session, r.data, Acting(peer, r)));
        } else if constexpr (std::is_same_v<R, wire::CloseStdinRequest>) {
          response.body = ToBody(m.CloseStdin(r.session, Acting(peer, r)));
        } else if constexpr (std::is_same_v<R, wire::ResizeRequest>) {
          response.body = ToBody(m.Resize(r.session, r.size, Acting(peer, r)));
        } else if constexpr (std::is_same_v<R, wire::SubscribeRequest>) {
          // The response goes out before the replayed output it announces.
          auto check = m.CheckSubscribe(r.session, r.since);
          const bool ok = !std::holds_alternative<wire::ErrorBody>(check);
          response.body = ToBody(std::move(check));
          server_->Send(peer.connection_id, response);
          sent = true;
          if (ok) (void)m.Subscribe(peer.connection_id, r.session, r.since);
        } else if constexpr (std::is_same_v<R, wire::UnsubscribeRequest>) {
          response.body = ToBody(m.Unsubscribe(peer.connection_id, r.session));
        } else if constexpr (std::is_same_v<R, wire::ReadOutputRequest>) {
          response.body = ToBody(m.ReadOutput(r.session, r.since, r.limit));
        } else if constexpr (std::is_same_v<R, wire::PoliciesRequest>) {
          response.body = m.Policies(r);
        } else if constexpr (std::is_same_v<R, wire::HealthRequest>) {
          response.body = m.Health();
        } else if constexpr (std::is_same_v<R, wire::AuditRequest>) {
          m.AuditApiAction(r, peer);
          response.body = std::monostate{};
        } else {
          static_assert(kUnhandled<R>, "the dispatcher does not handle this request type");
        }
      },
      request.body);
  if (!sent) server_->Send(peer.connection_id, response);
}

void Dispatcher::OnDisconnect(const PeerInfo& peer) { manager_->OnDisconnect(peer.connection_id); }

void Dispatcher::OnDrained(uint64_t connection) { manager_->OnDrained(connection); }

bool Dispatcher::CanSend(uint64_t connection) const {
  return server_ != nullptr && server_->OutboxBytes(connection) < wire::kOutboxSoftLimitBytes;
}

void Dispatcher::Send(uint64_t connection, const wire::Event& event) {
  (void)server_->SendEvent(connection, event);
}

}  // namespace mp::supervisor
