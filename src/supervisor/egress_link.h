// EgressLink: the supervisor's side of "allowlist" networking (issue 14). Per session it
// creates the network namespace (sandbox/session_netns.h) that the sandbox joins, and hands
// fresh listening sockets made inside it, with the policy's allow list, to monkeyproof-egress
// over the handover socket (egress/handover.h). The supervisor keeps no copy of a handed
// socket: when the egress daemon is not running or dies, nobody holds the listeners, so the
// session's connects are refused at once (fail closed); the link retries every
// kEgressRetryInterval and, once connected again, hands every live session new listeners.
// On each connection it first says hello with the verdict report version it reads
// (handover.h); the daemon then sends one verdict report per verdict (verdict_report.h), which
// this side decodes (strictly, without allocating: it runs as root) and passes to the
// ReportHandler. A malformed report is logged (the first kMaxLoggedBadReports per connection)
// and ignored; the link stays up.
// Supervisor only; single-threaded: call on the loop's thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"
#include "egress/handover.h"
#include "egress/verdict_report.h"
#include "sandbox/spawn.h"
#include "supervisor/event_loop.h"

namespace mp::supervisor {

inline constexpr std::chrono::milliseconds kEgressRetryInterval{1000};
// Reports read per wakeup of the loop (the rest on the next turn: other work goes first).
inline constexpr size_t kMaxReportsPerWakeup = 256;
inline constexpr uint32_t kMaxLoggedBadReports = 10;

// The monkeyproof-egress process on the other end (SO_PEERCRED at connect), for the audit log.
struct EgressPeer {
  pid_t pid = 0;
  uid_t uid = 0;
};

class EgressLink {
 public:
  // `socket_path`: monkeyproof-egress's handover socket. `resolv_conf`: the file bound over a
  // session's /etc/resolv.conf (written here when missing; "nameserver 127.0.0.1").
  EgressLink(EventLoop& loop, std::string socket_path, std::string resolv_conf);
  // Every well-formed verdict report, whatever its session (the handler ignores ids it does
  // not know). The report's strings are valid during the call only.
  using ReportHandler = std::function<void(const egress::VerdictReport&, const EgressPeer&)>;
  void SetReportHandler(ReportHandler handler) { on_report_ = std::move(handler); }
  ~EgressLink();
  EgressLink(const EgressLink&) = delete;
  EgressLink& operator=(const EgressLink&) = delete;

  // Creates session `id`'s namespace, hands its listeners over when the daemon is there, and
  // points `request` at it: netns_fd (owned here until End), the proxy variables in the
  // environment (replacing any earlier value of those names), and the resolv.conf bind.
  // `endpoints`: the credential gateway's, secrets included (kept here for every re-hand,
  // never logged); one more listener each, on 127.0.0.1:kEgressEndpointPortBase + i.
  Result<void> Begin(const std::string& id, std::vector<std::string> allow,
                     std::vector<egress::HandoverEndpoint> endpoints,
                     sandbox::SpawnRequest& request);
  // A running session adopted after a restart of the supervisor: finds its namespace through
  // its init (`init_pidfd`) and hands new listeners over with the allow list and endpoints it
  // started with (the secrets read again).
  Result<void> Resume(const std::string& id, std::vector<std::string> allow,
                      std::vector<egress::HandoverEndpoint> endpoints, int init_pidfd);
  // The session ended: the daemon stops serving it, the namespace fd closes.
  void End(const std::string& id);

  [[nodiscard]] bool connected() const { return socket_.valid(); }
  [[nodiscard]] size_t session_count() const { return sessions_.size(); }
  // Reports the daemon said it dropped (its queue was full), over every connection.
  [[nodiscard]] uint64_t reports_dropped() const { return reports_dropped_; }
  // Reports refused as malformed, over every connection.
  [[nodiscard]] uint64_t reports_refused() const { return reports_refused_; }

 private:
  struct Entry {
    UniqueFd netns;
    std::vector<std::string> allow;
    std::vector<egress::HandoverEndpoint> endpoints;
  };
  void HandOrConnect(const std::string& id, const Entry& entry);
  void TryConnect();
  // Hands `id` fresh listeners. A session whose listeners cannot be made is logged and left
  // without (its connections fail; no other session's do); a failed send breaks the link.
  // False when the link broke.
  bool Hand(const std::string& id, const Entry& entry);
  void Disconnect(const std::string& why);
  void ReadReports();
  // One received record (`n` bytes; more than the buffer held when `truncated`).
  void OnReport(std::string_view record, bool truncated);
  void ScheduleRetry();
  Result<void> EnsureResolvConf();

  EventLoop& loop_;
  std::string socket_path_;
  std::string resolv_conf_;
  UniqueFd socket_;
  std::map<std::string, Entry> sessions_;
  std::optional<EventLoop::TimerId> retry_;
  bool warned_absent_ = false;
  ReportHandler on_report_;
  EgressPeer peer_;
  uint64_t peer_dropped_ = 0;     // the last `dropped` this connection reported
  uint32_t bad_logged_ = 0;       // malformed reports logged on this connection
  uint64_t reports_dropped_ = 0;  // over every connection
  uint64_t reports_refused_ = 0;
};

// The environment an allowlist session gets on top of its policy's and request's:
// HTTPS_PROXY, HTTP_PROXY and their lower-case forms, NO_PROXY/no_proxy, NODE_USE_ENV_PROXY.
std::vector<std::string> EgressProxyEnvironment();

}  // namespace mp::supervisor
