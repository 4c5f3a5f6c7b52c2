// EgressDaemon: the core of monkeyproof-egress (issue 14). It listens on a Unix SOCK_SEQPACKET
// socket that only the supervisor's uid may use (SO_PEERCRED, checked before the first byte is
// read), takes each session's listening sockets and allow list over the handover protocol
// (handover.h) and runs one EgressSession per session until the supervisor closes it or its
// connection ends. Verdicts go to the VerdictCallback (main.cc logs them) and, on a connection
// whose supervisor said hello with reports (handover.h), back to the supervisor as verdict
// reports (verdict_report.h): sent without blocking, queued up to kMaxQueuedReports while the
// supervisor does not read, dropped and counted beyond that. Runs unprivileged
// (its own system user, no capabilities). Threading: every method on the io_context's one
// thread.
#pragma once

#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "common/result.h"
#include "common/unique_fd.h"
#include "egress/egress_session.h"
#include "egress/gateway_config.h"

namespace mp::egress {

inline constexpr char kDefaultHandoverSocket[] = "/run/monkeyproof-egress/handover.sock";
// Supervisor connections served at once (a restarted supervisor's new one comes while the old
// one may not have closed yet).
inline constexpr size_t kMaxSupervisorConnections = 4;
// Verdict reports queued per supervisor connection while its socket is full; more are dropped
// (and counted in the next report that goes out).
inline constexpr size_t kMaxQueuedReports = 4096;

struct DaemonOptions {
  std::string socket_path = kDefaultHandoverSocket;
  uid_t supervisor_uid = 0;  // the only peer uid accepted
  GatewayLimits limits;      // every session's
  // TEST ONLY (GatewayConfig::test_private_upstreams), from --unsafe-test-private-upstream.
  std::set<boost::asio::ip::tcp::endpoint> test_private_upstreams;
  // TEST ONLY (GatewayConfig::upstream_ca_file), from --upstream-ca: the CAs model endpoints'
  // upstreams must chain to instead of the system store.
  std::string upstream_ca_file;
};

class EgressDaemon {
 public:
  // Binds and listens on options.socket_path (a stale socket there is replaced; mode 0600).
  static Result<std::unique_ptr<EgressDaemon>> Create(boost::asio::io_context& io,
                                                      DaemonOptions options,
                                                      std::shared_ptr<Resolver> resolver,
                                                      VerdictCallback on_verdict);
  ~EgressDaemon();
  void Start();
  void Stop();  // closes the socket, every connection and every session

  [[nodiscard]] size_t session_count() const;
  // Verdict reports dropped so far (queues full), all connections together.
  [[nodiscard]] uint64_t reports_dropped() const { return reports_dropped_; }

 private:
  struct Connection;
  EgressDaemon(boost::asio::io_context& io, DaemonOptions options,
               std::shared_ptr<Resolver> resolver, VerdictCallback on_verdict);
  void WaitAccept();
  void OnAcceptable();
  void WaitRecord(const std::shared_ptr<Connection>& c);
  void OnRecord(const std::shared_ptr<Connection>& c);
  void Drop(const std::shared_ptr<Connection>& c, const std::string& why);
  void SendReport(const std::shared_ptr<Connection>& c, const Verdict& verdict);
  void FlushReports(const std::shared_ptr<Connection>& c);

  boost::asio::io_context& io_;
  DaemonOptions options_;
  std::shared_ptr<Resolver> resolver_;
  VerdictCallback on_verdict_;
  struct Acceptor;
  std::unique_ptr<Acceptor> acceptor_;
  std::map<uint64_t, std::shared_ptr<Connection>> connections_;
  uint64_t next_connection_ = 1;
  uint64_t reports_dropped_ = 0;
  bool stopped_ = false;
};

}  // namespace mp::egress
