// ControlServer: the supervisor's end of the control socket (AF_UNIX,
// SOCK_SEQPACKET, wire frames). It checks each peer's uid with SO_PEERCRED
// against an allowlist before reading a byte, runs the hello handshake,
// decodes requests and hands them to a RequestHandler, and keeps a bounded
// outbox per connection: responses are never dropped (a connection whose
// outbox passes the hard limit is closed); output events are dropped past the
// soft limit (SendEvent says so) and ControlServerOptions::on_drained says when
// output can flow again, so the session layer can send one `lagged` marker.
// Supervisor only; runs on the EventLoop's thread; not thread-safe.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/messages.h"
#include "common/result.h"
#include "common/unique_fd.h"
#include "supervisor/event_loop.h"

namespace mp::supervisor {

struct PeerInfo {
  uint64_t connection_id = 0;  // unique for the life of the supervisor process
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  std::string client;  // from the peer's hello; a request's own `client` replaces it
  // The protocol version the hello agreed on (the peer's, kMinProtoVersion..kProtoVersion):
  // requests that need a later one are refused (common/proto_version.h).
  uint32_t proto = wire::kProtoVersion;
  std::string via;  // a request's `via` (the trusted proxy it came through), set per request
  // Who one request acts for (wire "principal"), set per request by the dispatcher; empty
  // when the request carried none.
  std::string principal;
};

class ControlServer;

class RequestHandler {
 public:
  virtual ~RequestHandler() = default;
  // Called for every decoded request after the handshake. The handler must
  // answer every request exactly once, now or later, with Send(Response).
  virtual void OnRequest(const PeerInfo& peer, const wire::Request& request) = 0;
  // A connection went away: drop its subscriptions. Called once for every connection that
  // completed the handshake (others never reached OnRequest), never from inside Send or
  // SendEvent: a connection closed there is reported after the current callback returns (or
  // from a zero-delay timer when Send was called outside the server's own callbacks). Not
  // called when the ControlServer itself is destroyed.
  virtual void OnDisconnect(const PeerInfo& peer) = 0;
};

struct ControlServerOptions {
  std::string socket_path;          // e.g. /run/monkeyproof/control.sock (< 108 bytes)
  std::vector<uid_t> allowed_uids;  // peers allowed; root (0) only if listed; not empty
  gid_t socket_group = 0;           // the socket file is chowned root:socket_group (as root)
  uint32_t socket_mode = 0660;      // permission bits of the socket file (& 0777)
  size_t max_connections = 16;      // connections at once, handshaken or not; more: closed
  // Bytes of encoded frames the kernel did not take yet (the socket's own buffer comes first).
  // Start requires 0 < soft <= hard and hard >= wire::kMaxFrameBytes.
  size_t outbox_soft_limit_bytes = wire::kOutboxSoftLimitBytes;  // output events dropped at/above
  size_t outbox_hard_limit_bytes = wire::kOutboxHardLimitBytes;  // connection closed above
  std::string supervisor_version;
  std::string boot_id;  // sent in the server hello
  // Flow control's "resume" signal (may be empty). Called with a handshaken connection's id
  // when its outbox, after reaching outbox_soft_limit_bytes (because an output event was
  // dropped, or any frame took it there), has drained to at most half the soft limit: output
  // can flow again; this is where the session layer queues its `lagged` marker or resumes
  // pumping. Once per such episode, from the loop's EPOLLOUT handling (never from inside
  // Send/SendEvent), so it may call SendEvent directly. Half-way is hysteresis: a slow reader
  // does not flap between full and drained on every frame. Independently, output events are
  // accepted whenever OutboxBytes(id) < outbox_soft_limit_bytes.
  std::function<void(uint64_t connection_id)> on_drained;
};

enum class EventSendResult {
  kQueued,   // sent or queued
  kDropped,  // outbox over the soft limit: the event was dropped, send `lagged` later
  kNoPeer,   // no such connection (or not past its hello, or closed by this very send)
};

class ControlServer {
 public:
  // Binds and listens (unlinking a stale socket file first), registers with `loop`.
  // A stale path is unlinked only if it is a socket; anything else there is an error (EEXIST)
  // and is left alone. The file is created under umask 0177 (root-only until chmod; umask is
  // per process: call Start before other threads exist), chowned root:socket_group when
  // running as root (skipped otherwise, for tests), then chmod socket_mode. `loop` and
  // `handler` must outlive the server. Destroy the server outside its own callbacks; the
  // destructor closes every connection without calling the handler and unlinks the socket
  // file if it is still the one bound here.
  static Result<std::unique_ptr<ControlServer>> Start(EventLoop& loop, ControlServerOptions options,
                                                      RequestHandler& handler);
  ~ControlServer();

  // Queues a response (written at once when the outbox is empty); closes the connection if it
  // would take the outbox above the hard limit. Responses are never dropped otherwise. A
  // response too large to encode is replaced by an `internal` error with the same id. An
  // unknown (e.g. already closed) connection id is ignored.
  void Send(uint64_t connection_id, const wire::Response& response);
  // Output events are dropped (kDropped) while the outbox holds at least the soft limit, or
  // when the frame would take it above the hard limit. Other events (gap, state, exit,
  // lagged) are small and rare and are queued like responses (docs/protocol.md, "Flow
  // control"): never dropped, and a hard-limit overflow closes the connection (kNoPeer).
  EventSendResult SendEvent(uint64_t connection_id, const wire::Event& event);
  // Bytes waiting in a connection's outbox (0 for an unknown id).
  size_t OutboxBytes(uint64_t connection_id) const;
  size_t connection_count() const;

 private:
  struct Connection;
  class CallbackScope;
  enum class EnqueueResult { kQueued, kDropped, kClosed };

  ControlServer(EventLoop& loop, ControlServerOptions options, RequestHandler& handler);
  Result<void> Listen();
  void OnAccept();
  void PauseAccepting();
  void OnConnectionEvent(uint64_t connection_id, uint32_t events);
  void OnReadable(Connection& c);
  void HandleFrame(Connection& c, const wire::FrameView& frame);
  void Flush(Connection& c);
  void UpdateInterest(Connection& c);
  EnqueueResult Enqueue(Connection& c, std::vector<uint8_t> frame, bool droppable);
  void EnqueueResponse(Connection& c, const wire::Response& response);
  // Queues an error response, stops reading, and closes once the outbox is flushed.
  void FailAndClose(Connection& c, uint64_t request_id, std::string message, std::string field,
                    std::string why);
  void Close(Connection& c, const std::string& why);
  void Reap();

  EventLoop& loop_;
  ControlServerOptions options_;
  RequestHandler& handler_;
  UniqueFd listener_;
  dev_t socket_dev_ = 0;  // identity of the socket file we bound, to unlink only our own
  ino_t socket_ino_ = 0;
  uint64_t next_connection_ = 1;
  std::unordered_map<uint64_t, std::unique_ptr<Connection>> connections_;
  // Closed connections whose OnDisconnect is still owed; destroyed by Reap() once no server
  // callback is on the stack, so a Connection& held further up stays valid.
  std::vector<std::unique_ptr<Connection>> graveyard_;
  int depth_ = 0;  // server callbacks on the stack
  EventLoop::TimerId reap_timer_ = 0;
  EventLoop::TimerId accept_timer_ = 0;
  std::vector<uint8_t> receive_buffer_;  // kMaxFrameBytes, shared: requests are decoded at once
};

}  // namespace mp::supervisor
