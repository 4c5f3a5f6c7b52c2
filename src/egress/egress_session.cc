#include "egress/egress_session.h"

#include <sys/socket.h>

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <utility>

#include "egress/address_class.h"
#include "egress/connections.h"
#include "egress/dns_responder.h"

namespace mp::egress {

namespace asio = boost::asio;
using asio::ip::tcp;

ConnectionSlot::~ConnectionSlot() {
  if (!session) return;
  session->live_.erase(id);
  session->counters_.open_connections.fetch_sub(1, std::memory_order_relaxed);
}

namespace {

// The protocol of a listening TCP socket, for acceptor::assign.
Result<tcp> TcpProtocolOf(int fd, const char* which) {
  sockaddr_storage address{};
  socklen_t length = sizeof address;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    return ErrnoError(std::string("getsockname(") + which + " listener)");
  }
  if (address.ss_family == AF_INET) return tcp::v4();
  if (address.ss_family == AF_INET6) return tcp::v6();
  return PlainError(std::string(which) + " listener is not an IPv4/IPv6 socket");
}

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71  // Linux 5.14; older C library headers lack it
#endif

// Whether socket `fd` lives in this process's network namespace (SO_NETNS_COOKIE). A listener
// the supervisor made inside a session's namespace does not: an upstream connect from here can
// never reach it, whatever its address, so its endpoint is no "own listener" to refuse (with
// 0.0.0.0:443 there, every upstream on port 443 would be). Unknown (a kernel before 5.14)
// counts as here: the endpoint is then refused as an upstream (fail closed).
bool InThisNetworkNamespace(int fd) {
  uint64_t theirs = 0;
  uint64_t ours = 0;
  socklen_t length = sizeof theirs;
  if (getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &theirs, &length) != 0) return true;
  UniqueFd probe(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  length = sizeof ours;
  if (!probe || getsockopt(probe.get(), SOL_SOCKET, SO_NETNS_COOKIE, &ours, &length) != 0) {
    return true;
  }
  return theirs == ours;
}

}  // namespace

Result<std::shared_ptr<EgressSession>> EgressSession::Create(asio::io_context& io,
                                                             GatewayConfig config,
                                                             GatewayListeners listeners,
                                                             std::shared_ptr<Resolver> resolver,
                                                             VerdictCallback on_verdict) {
  auto session = std::make_shared<EgressSession>(io, std::move(config), std::move(resolver),
                                                 std::move(on_verdict));
  struct Entry {
    Kind kind;
    size_t endpoint;
    UniqueFd* fd;
    std::string name;
  };
  std::vector<Entry> entries = {Entry{Kind::kProxy, 0, &listeners.proxy, "proxy"},
                                Entry{Kind::kTls, 0, &listeners.tls, "tls"},
                                Entry{Kind::kHttp, 0, &listeners.http, "http"}};
  const std::vector<ModelEndpoint>& endpoints = session->config_.endpoints;
  if (listeners.endpoints.size() != endpoints.size()) {
    return PlainError(std::to_string(listeners.endpoints.size()) + " endpoint listeners for " +
                      std::to_string(endpoints.size()) + " model endpoints")
        .Wrap("egress session " + session->config_.session_id);
  }
  for (size_t i = 0; i < endpoints.size(); ++i) {
    entries.push_back(
        Entry{Kind::kEndpoint, i, &listeners.endpoints[i],
              "endpoint " + std::to_string(i) + " (" + endpoints[i].upstream.host + ")"});
    Result<std::shared_ptr<EndpointTls>> tls =
        MakeEndpointTls(endpoints[i], session->config_.upstream_ca_file);
    if (!tls) return tls.error().Wrap("egress session " + session->config_.session_id);
    session->endpoint_tls_.push_back(std::move(*tls));
  }
  for (Entry& e : entries) {
    if (!*e.fd) continue;
    const bool here = InThisNetworkNamespace(e.fd->get());
    Result<tcp> protocol = TcpProtocolOf(e.fd->get(), e.name.c_str());
    if (!protocol) return protocol.error().Wrap("egress session " + session->config_.session_id);
    auto acceptor = std::make_unique<tcp::acceptor>(io);
    boost::system::error_code ec;
    acceptor->assign(*protocol, e.fd->get(), ec);
    if (ec) {
      return ErrnoError(ec.value(), "assign " + e.name + " listener")
          .Wrap("egress session " + session->config_.session_id);
    }
    (void)e.fd->Release();  // the acceptor owns it now
    if (here) session->own_endpoints_.push_back(acceptor->local_endpoint(ec));
    session->acceptors_.push_back(Listening{e.kind, e.endpoint, std::move(acceptor)});
  }
  if (listeners.dns) {
    Result<std::shared_ptr<DnsResponder>> dns = DnsResponder::Create(
        io, std::move(listeners.dns), session->config_.allow, session->counters_);
    if (!dns) return dns.error().Wrap("egress session " + session->config_.session_id);
    session->dns_ = std::move(*dns);
    if (session->on_verdict_) {
      // DNS answers are verdicts too (the supervisor audits and counts them apart from
      // connections); they bypass Report, which counts refused connections.
      session->dns_->SetVerdictCallback(
          [id = session->config_.session_id, report = session->on_verdict_](Verdict v) {
            v.session_id = id;
            report(v);
          });
    }
  }
  return session;
}

EgressSession::EgressSession(asio::io_context& io, GatewayConfig config,
                             std::shared_ptr<Resolver> resolver, VerdictCallback on_verdict)
    : io_(io),
      config_(std::move(config)),
      resolver_(std::move(resolver)),
      on_verdict_(std::move(on_verdict)),
      tokens_(config_.limits.connection_burst),
      refilled_(std::chrono::steady_clock::now()) {}

EgressSession::~EgressSession() = default;

void EgressSession::Start() {
  for (size_t i = 0; i < acceptors_.size(); ++i) Accept(i);
  if (dns_) dns_->Start();
}

void EgressSession::Stop() {
  stopped_ = true;
  boost::system::error_code ignored;
  for (Listening& l : acceptors_) l.acceptor->close(ignored);
  if (dns_) dns_->Stop();
  // Closing may end a connection and erase it from live_: walk a copy.
  std::vector<std::shared_ptr<ConnectionSlot>> slots;
  for (auto& [id, weak] : live_) {
    if (auto slot = weak.lock()) slots.push_back(std::move(slot));
  }
  for (auto& slot : slots) {
    if (slot->close) slot->close();
  }
}

void EgressSession::Accept(size_t listening) {
  acceptors_[listening].acceptor->async_accept(
      [self = shared_from_this(), listening](boost::system::error_code ec, tcp::socket socket) {
        if (self->stopped_) return;
        if (!ec) self->OnAccept(self->acceptors_[listening], std::move(socket));
        // EMFILE and friends: keep listening; the next accept may succeed.
        self->Accept(listening);
      });
}

void EgressSession::OnAccept(const Listening& listening, tcp::socket socket) {
  static constexpr const char* kNames[] = {"proxy", "tls", "http", "endpoint"};
  std::string refusal = Admit();
  if (!refusal.empty()) {
    ResetClose(socket);
    Verdict verdict{.listener = kNames[static_cast<int>(listening.kind)], .reason = refusal};
    if (listening.kind == Kind::kEndpoint) {
      verdict.name = config_.endpoints[listening.endpoint].upstream.host;
      verdict.port = config_.endpoints[listening.endpoint].upstream.port;
    }
    Report(std::move(verdict));
    return;
  }
  std::shared_ptr<ConnectionSlot> slot = Track();
  switch (listening.kind) {
    case Kind::kProxy:
      return StartHttpFront(shared_from_this(), std::move(socket), std::move(slot), false);
    case Kind::kHttp:
      return StartHttpFront(shared_from_this(), std::move(socket), std::move(slot), true);
    case Kind::kTls:
      return StartTlsFront(shared_from_this(), std::move(socket), std::move(slot));
    case Kind::kEndpoint:
      return StartEndpointFront(shared_from_this(), std::move(socket), std::move(slot),
                                listening.endpoint, endpoint_tls_[listening.endpoint]);
  }
}

std::string EgressSession::Admit() {
  const GatewayLimits& limits = config_.limits;
  if (counters_.open_connections.load() >= limits.max_connections) {
    return "connection limit reached (" + std::to_string(limits.max_connections) + " open)";
  }
  if (counters_.bytes_up.load() + counters_.bytes_down.load() >= limits.max_total_bytes) {
    return "byte budget spent (" + std::to_string(limits.max_total_bytes) + " bytes)";
  }
  auto now = std::chrono::steady_clock::now();
  double elapsed = std::chrono::duration<double>(now - refilled_).count();
  refilled_ = now;
  tokens_ =
      std::min<double>(limits.connection_burst, tokens_ + elapsed * limits.connections_per_second);
  if (tokens_ < 1) return "connection rate limit reached";
  tokens_ -= 1;
  return {};
}

std::shared_ptr<ConnectionSlot> EgressSession::Track() {
  auto slot = std::make_shared<ConnectionSlot>();
  slot->session = shared_from_this();
  slot->id = next_id_++;
  live_[slot->id] = slot;
  counters_.open_connections.fetch_add(1, std::memory_order_relaxed);
  return slot;
}

bool EgressSession::Account(size_t bytes, bool up) {
  uint64_t used = counters_.bytes_up.load() + counters_.bytes_down.load();
  if (used + bytes > config_.limits.max_total_bytes) return false;
  (up ? counters_.bytes_up : counters_.bytes_down).fetch_add(bytes, std::memory_order_relaxed);
  return true;
}

void EgressSession::Report(Verdict verdict) {
  if (!verdict.allowed) counters_.denied.fetch_add(1, std::memory_order_relaxed);
  verdict.session_id = config_.session_id;
  if (on_verdict_) on_verdict_(verdict);
}

namespace {

// An IPv4-mapped IPv6 address as the IPv4 address it reaches.
asio::ip::address Unmapped(const asio::ip::address& address) {
  if (address.is_v6() && address.to_v6().is_v4_mapped()) {
    return asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6());
  }
  return address;
}

}  // namespace

// A connect to 0.0.0.0 or :: reaches the local host, so an unspecified destination counts as
// every own listener on its port; so does an own listener bound to the unspecified address.
bool EgressSession::IsOwnListener(const tcp::endpoint& endpoint) const {
  const asio::ip::address address = Unmapped(endpoint.address());
  for (const tcp::endpoint& own : own_endpoints_) {
    if (own.port() != endpoint.port()) continue;
    const asio::ip::address own_address = Unmapped(own.address());
    if (own_address == address || own_address.is_unspecified() || address.is_unspecified()) {
      return true;
    }
  }
  return false;
}

bool EgressSession::Reachable(const asio::ip::address& address, uint16_t port) const {
  tcp::endpoint endpoint(address, port);
  if (IsOwnListener(endpoint)) return false;
  std::optional<std::string> canonical = CanonicalAddress(address.to_string());
  if (!canonical) return false;
  if (ClassifyAddress(*canonical) == AddressClass::kPublic) return true;
  if (config_.allow.Permits(Authority{*canonical, true, port})) return true;
  return config_.test_private_upstreams.count(endpoint) > 0;
}

void EgressSession::Open(const Authority& destination, OpenHandler handler) {
  if (!config_.allow.Permits(destination)) {
    return handler(destination.ToString() + " is not in this session's allowlist",
                   tcp::socket(io_));
  }
  PinnedHandler done = [handler = std::move(handler)](std::string refusal, bool,
                                                      tcp::socket socket) {
    handler(std::move(refusal), std::move(socket));
  };
  if (destination.is_address) {
    boost::system::error_code ec;
    asio::ip::address address = asio::ip::make_address(destination.host, ec);
    tcp::endpoint endpoint(address, destination.port);
    if (ec || IsOwnListener(endpoint)) {
      return done(destination.ToString() + " is this gateway's own listener", false,
                  tcp::socket(io_));
    }
    return Connect(endpoint, std::move(done));
  }
  ResolveAndConnect(destination, std::move(done));
}

void EgressSession::OpenPinned(const Authority& upstream, PinnedHandler handler) {
  if (upstream.is_address) {
    boost::system::error_code ec;
    asio::ip::address address = asio::ip::make_address(upstream.host, ec);
    if (ec || !Reachable(address, upstream.port)) {
      return handler(upstream.ToString() +
                         " is an address the gateway does not reach (loopback, private, "
                         "link-local, metadata, multicast or its own listener)",
                     false, tcp::socket(io_));
    }
    return Connect(tcp::endpoint(address, upstream.port), std::move(handler));
  }
  ResolveAndConnect(upstream, std::move(handler));
}

void EgressSession::ResolveAndConnect(const Authority& destination, PinnedHandler handler) {
  resolver_->Resolve(
      destination.host, [self = shared_from_this(), destination, handler = std::move(handler)](
                            Result<std::vector<asio::ip::address>> addresses) mutable {
        if (self->stopped_) {
          return handler("the session is stopping", false, tcp::socket(self->io_));
        }
        if (!addresses) {
          return handler(destination.ToString() + " does not resolve: " + addresses.error().what,
                         false, tcp::socket(self->io_));
        }
        for (const asio::ip::address& address : *addresses) {
          if (self->Reachable(address, destination.port)) {
            return self->Connect(tcp::endpoint(address, destination.port), std::move(handler));
          }
        }
        std::string list;
        for (const asio::ip::address& address : *addresses) {
          list += (list.empty() ? "" : ", ") + address.to_string();
        }
        handler(destination.ToString() +
                    " resolves only to addresses the gateway does not reach (" + list +
                    "): loopback, private, link-local, metadata and multicast addresses "
                    "need an address rule",
                false, tcp::socket(self->io_));
      });
}

void EgressSession::Connect(tcp::endpoint endpoint, PinnedHandler handler) {
  auto socket = std::make_shared<tcp::socket>(io_);
  auto timer = std::make_shared<asio::steady_timer>(io_, config_.limits.connect_timeout);
  auto timed_out = std::make_shared<bool>(false);
  timer->async_wait([socket, timed_out](boost::system::error_code ec) {
    if (ec) return;
    *timed_out = true;
    boost::system::error_code ignored;
    socket->close(ignored);
  });
  socket->async_connect(endpoint, [self = shared_from_this(), socket, timer, timed_out, endpoint,
                                   handler = std::move(handler)](boost::system::error_code ec) {
    timer->cancel();
    if (ec) {
      std::string why = *timed_out ? "timed out" : ec.message();
      return handler("connect to " + endpoint.address().to_string() + ":" +
                         std::to_string(endpoint.port()) + " failed: " + why,
                     *timed_out, tcp::socket(self->io_));
    }
    self->counters_.allowed.fetch_add(1, std::memory_order_relaxed);
    handler({}, false, std::move(*socket));
  });
}

namespace {

class SystemResolver : public Resolver {
 public:
  explicit SystemResolver(asio::io_context& io) : io_(io) {}
  void Resolve(const std::string& name, Handler handler) override {
    auto resolver = std::make_shared<tcp::resolver>(io_);
    resolver->async_resolve(name, "",
                            [resolver, handler = std::move(handler)](
                                boost::system::error_code ec, tcp::resolver::results_type results) {
                              if (ec) return handler(ErrnoError(0, ec.message()));
                              std::vector<asio::ip::address> addresses;
                              for (const auto& entry : results)
                                addresses.push_back(entry.endpoint().address());
                              handler(std::move(addresses));
                            });
  }

 private:
  asio::io_context& io_;
};

}  // namespace

std::shared_ptr<Resolver> MakeSystemResolver(asio::io_context& io) {
  return std::make_shared<SystemResolver>(io);
}

void StartAccountedRelay(const std::shared_ptr<EgressSession>& session,
                         const std::shared_ptr<ConnectionSlot>& slot,
                         boost::asio::ip::tcp::socket client, boost::asio::ip::tcp::socket upstream,
                         RelayOptions options, Verdict verdict) {
  auto relay = Relay::Start(
      std::move(client), std::move(upstream), std::move(options),
      [session](size_t n, bool up) { return session->Account(n, up); },
      [session, verdict = std::move(verdict), slot](uint64_t up, uint64_t down) mutable {
        verdict.bytes_up = up;
        verdict.bytes_down = down;
        session->Report(std::move(verdict));
        slot->close = nullptr;
      });
  slot->close = [weak = std::weak_ptr<Relay>(relay)] {
    if (auto r = weak.lock()) r->Close();
  };
}

}  // namespace mp::egress
