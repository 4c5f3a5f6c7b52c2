// EgressSession: the egress gateway's engine for one sandbox session (issue 14), run by the
// monkeyproof-egress daemon (egress_daemon.h; unprivileged, never as root). Unit tests drive it
// in-process over loopback (tests/unit/egress_gateway_test.cc).
//
// It is handed already-listening sockets (in production created by the supervisor inside the
// session's network namespace): an HTTP proxy (CONNECT and absolute-form http://), a
// transparent TLS listener (name from the ClientHello's SNI, port GatewayConfig::tls_port), a
// transparent HTTP listener (name from the Host header, port http_port) and a UDP stub DNS
// (allowed names get a synthetic A record from 198.18.0.0/15, AAAA and other types NODATA,
// anything else NXDOMAIN; nothing is ever forwarded).
//
// Every connection's verdict is AllowList::Permits(destination). A name is resolved on the
// host's side through the Resolver and its address is used only when ClassifyAddress says
// public, or when an address rule names that address:port (or, in tests only,
// GatewayConfig::test_private_upstreams); the gateway connects to the address it checked, never
// resolving twice, and never to its own listeners (those in its own network namespace; the
// supervisor's listeners in a session's namespace are out of reach from here anyway). A
// refusal is immediate: the proxy answers 403 naming the destination, transparent connections
// are reset (SO_LINGER 0), DNS says NXDOMAIN. Deadlines bound the request head / ClientHello,
// the upstream connect and idle relays. Limits: open connections, connection rate, total bytes
// (GatewayLimits).
//
// Model endpoints (credential gateway, endpoint_front.cc): one more listener per
// GatewayConfig::endpoints entry. Each takes plain HTTP/1.1 requests (origin-form only), sets
// the endpoint's credential header (every copy the session sent is removed), Host and the
// path prefix, and forwards them over TLS (SNI, peer and host-name verification, TLS >= 1.2)
// to the pinned upstream on one upstream connection per client connection, streaming bodies
// both ways. Response headers that echo the credential are dropped. An upstream that cannot
// be reached or verified gives 502, a connect timeout 504; neither text names the credential.
//
// Threading: every method runs on the io_context's single thread (post Start/Stop there);
// counters() may be read from any thread.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"
#include "egress/gateway_config.h"
#include "egress/host_name.h"

namespace mp::egress {

class DnsResponder;

// The listening sockets of one session; any may be absent (-1).
struct GatewayListeners {
  UniqueFd proxy;
  UniqueFd tls;
  UniqueFd http;
  UniqueFd dns;                     // a bound UDP socket
  std::vector<UniqueFd> endpoints;  // one per GatewayConfig::endpoints entry, same order
};

class EndpointTls;  // endpoint_front.cc: one endpoint's TLS client context

// One live client connection, tracked so that Stop() can close it. Its destruction releases
// the session's connection slot.
struct ConnectionSlot {
  std::function<void()> close;
  ~ConnectionSlot();
  std::shared_ptr<class EgressSession> session;
  uint64_t id = 0;
};

class EgressSession : public std::enable_shared_from_this<EgressSession> {
 public:
  // Takes the sockets over; an error names the listener that is not usable.
  static Result<std::shared_ptr<EgressSession>> Create(boost::asio::io_context& io,
                                                       GatewayConfig config,
                                                       GatewayListeners listeners,
                                                       std::shared_ptr<Resolver> resolver,
                                                       VerdictCallback on_verdict);
  EgressSession(boost::asio::io_context& io, GatewayConfig config,
                std::shared_ptr<Resolver> resolver, VerdictCallback on_verdict);
  ~EgressSession();

  void Start();  // begins accepting
  void Stop();   // closes the listeners and every connection of the session

  [[nodiscard]] const GatewayCounters& counters() const { return counters_; }
  [[nodiscard]] const GatewayConfig& config() const { return config_; }

  // --- For the connection classes (proxy_connection.cc, tls_connection.cc). ---
  // The result of Open: an empty reason and a connected socket, or why not.
  using OpenHandler = std::function<void(std::string refusal, boost::asio::ip::tcp::socket)>;
  // Decides on `destination` and connects to the address it checked.
  void Open(const Authority& destination, OpenHandler handler);
  // For a pinned upstream (a model endpoint): no allowlist check, but the same address checks
  // (Reachable). `timed_out` says that the refusal is a connect timeout.
  using PinnedHandler =
      std::function<void(std::string refusal, bool timed_out, boost::asio::ip::tcp::socket)>;
  void OpenPinned(const Authority& upstream, PinnedHandler handler);
  // Charges `bytes` to the session's byte budget; false once it is spent.
  bool Account(size_t bytes, bool up);
  // Counts and reports a verdict (refusals here; allowed connections when they close).
  void Report(Verdict verdict);
  // Counts one request a model endpoint forwards.
  void CountGatewayRequest() { counters_.gateway_requests.fetch_add(1, std::memory_order_relaxed); }

 private:
  friend struct ConnectionSlot;
  enum class Kind { kProxy, kTls, kHttp, kEndpoint };
  struct Listening {
    Kind kind;
    size_t endpoint = 0;  // kEndpoint: the index into config_.endpoints
    std::unique_ptr<boost::asio::ip::tcp::acceptor> acceptor;
  };
  void Accept(size_t listening);
  void OnAccept(const Listening& listening, boost::asio::ip::tcp::socket socket);
  std::string Admit();  // "" or the limit a new connection hits
  bool IsOwnListener(const boost::asio::ip::tcp::endpoint& endpoint) const;
  bool Reachable(const boost::asio::ip::address& address, uint16_t port) const;
  void Connect(boost::asio::ip::tcp::endpoint endpoint, PinnedHandler handler);
  void ResolveAndConnect(const Authority& destination, PinnedHandler handler);
  std::shared_ptr<ConnectionSlot> Track();

  boost::asio::io_context& io_;
  GatewayConfig config_;
  std::shared_ptr<Resolver> resolver_;
  VerdictCallback on_verdict_;
  GatewayCounters counters_;
  std::vector<Listening> acceptors_;
  std::vector<std::shared_ptr<EndpointTls>> endpoint_tls_;  // per config_.endpoints entry
  std::vector<boost::asio::ip::tcp::endpoint> own_endpoints_;
  std::shared_ptr<DnsResponder> dns_;
  std::map<uint64_t, std::weak_ptr<ConnectionSlot>> live_;
  uint64_t next_id_ = 1;
  double tokens_ = 0;
  std::chrono::steady_clock::time_point refilled_;
  bool stopped_ = false;
};

// The production resolver: Asio's asynchronous resolver (getaddrinfo on a helper thread).
std::shared_ptr<Resolver> MakeSystemResolver(boost::asio::io_context& io);

}  // namespace mp::egress
