// One WebSocket client of /sessions/{id}/ws (docs/api.md, "WebSocket"). It keeps its own
// output offset and is in one of two modes: live (forwarding the hub's events) or catching up
// (reading from its offset with read_output, as fast as it drains). Its outbox is bounded in
// bytes: when a live client falls behind it is told `lagged` and switched to catching up, so
// it never slows the session or other clients and never loses a byte. A WebSocket opened with
// a scoped token lives only as long as the token: every client message checks that the token is
// still valid, a timer ends it at the token's expiry and a revocation ends it at once
// (EndForToken): an `error` message, then close code 1008 with the reason. Runs in
// monkeyproof-api on the io_context thread; the object lives as long as an operation holds it.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/websocket/stream.hpp>

#include "common/messages.h"
#include "http/api_context.h"
#include "http/client_stream.h"
#include "http/principal.h"
#include "http/principal_connections.h"
#include "http/session_hub.h"
#include "http/utf8.h"

namespace mp::http {

class WsSession : public HubClient,
                  public TokenBoundSocket,
                  public std::enable_shared_from_this<WsSession> {
 public:
  // `since`: resume offset from ?since=, or nullopt for a catchup of recent output.
  // `principal`: who authenticated the upgrade. Without the input right (stdin, resize, signal,
  // close-stdin) those messages are answered with an error and dropped; its name goes with
  // every input request, for the supervisor's audit log; a scoped token's WebSocket ends with
  // the token. `slot`: the principal's connection count this WebSocket holds until it ends.
  // `origin`: where the upgrade came from, sent with every input request (the audit log).
  WsSession(ApiContext& ctx, ClientStream&& stream, wire::SessionInfo info,
            std::optional<uint64_t> since, Principal principal, PrincipalConnections::Slot slot,
            AuditOrigin origin);

  // A WebSocket already accepted (WsAuthGate: the credential came in its first message).
  WsSession(ApiContext& ctx, boost::beast::websocket::stream<ClientStream>&& ws,
            wire::SessionInfo info, std::optional<uint64_t> since, Principal principal,
            PrincipalConnections::Slot slot, AuditOrigin origin);
  ~WsSession() override;

  // Accepts the upgrade `request` and starts. The `monkeyproof` subprotocol is echoed when the
  // request offers it (never the `monkeyproof.bearer.<token>` one).
  void Run(boost::beast::http::request<boost::beast::http::string_body> request);
  // Starts on a WebSocket the second constructor was given.
  void Start();
  // Options of every WebSocket of the API (timeouts, message size, framing); `echo_protocol`
  // answers the offered `monkeyproof` subprotocol.
  static void Configure(boost::beast::websocket::stream<ClientStream>& ws, bool echo_protocol);

  void OnOutput(const wire::OutputEvent& event) override;
  void OnGap(const wire::GapEvent& event) override;
  void OnExit(const wire::EndRecord& end) override;
  void OnLinkDown() override;
  void OnLinkUp() override;
  // The token that opened this WebSocket is revoked or expired: an `error` message with
  // `reason`, then the close (1008, `reason`); nothing else is sent or forwarded.
  void EndForToken(std::string_view reason) override;

 private:
  enum class Mode { kStarting, kCatchUp, kLive, kDone };

  void OnAccept(boost::beast::error_code ec);
  void SendCatchup(const wire::OutputRead& tail);
  void IssueRead();
  // Reads are pipelined; each belongs to an epoch, and a new epoch (RestartReads) drops the
  // answers of the reads before it, so that the pipeline restarts exactly at next_.
  void OnReadOutput(uint64_t epoch, uint64_t since, Result<wire::Response> r);
  void RestartReads();
  void RetryReadsLater();
  void FinishIfDone();
  // Live mode takes the hub's events (the hub subscribes while some client is live); leaving
  // it means reading on our own from next_.
  void EnterLive();
  void LeaveLive(Mode next_mode);
  void SendExit(const wire::EndRecord& end);
  // Forwards bytes [offset, offset+size) of `stream` that start at or before next_.
  void Deliver(wire::OutputStream stream, uint64_t offset, const uint8_t* data, size_t size);
  void DeliverGap(uint64_t from, uint64_t to);
  void FlushCarries();
  [[nodiscard]] uint64_t ResumePoint() const;
  void Enqueue(std::string text);
  void DoWrite();
  void OnWrite(boost::beast::error_code ec, size_t bytes);
  void DoRead();
  void OnRead(boost::beast::error_code ec, size_t bytes);
  void HandleClientMessage(bool binary);
  void SendStdin(std::string data, size_t from);
  void AfterClientCall(Result<wire::Response> r);
  void Close();
  // For a scoped token: why it no longer holds (revoked, expired), or nullopt while it does.
  [[nodiscard]] std::optional<std::string> TokenEnded() const;
  // Ends the WebSocket at the token's expiry (checked again when the timer fires).
  void ArmExpiry(uint64_t expires_at_ms);

  ApiContext& ctx_;
  std::shared_ptr<ApiContext> keep_;
  boost::beast::websocket::stream<ClientStream> ws_;
  boost::beast::flat_buffer read_buffer_;
  wire::SessionInfo info_;
  std::optional<uint64_t> since_;
  bool may_input_ = true;
  Rights rights_ = kAllRights;  // the principal's; which signals it may send
  std::string principal_;       // Principal::ToString()
  std::string token_id_;        // the scoped token's id; empty for other principals
  AuditOrigin origin_;          // client and via, for the input requests' audit lines
  uint64_t token_expires_at_ms_ = 0;
  bool token_registered_ = false;  // in ctx_.principal_connections
  PrincipalConnections::Slot principal_slot_;
  std::unique_ptr<boost::asio::steady_timer> expiry_timer_;
  // The close frame's code and reason (1008 and why, when the token ended).
  boost::beast::websocket::close_reason close_reason_{boost::beast::websocket::close_code::normal};
  Mode mode_ = Mode::kStarting;
  uint64_t next_ = 0;             // first output offset not yet handed to the outbox
  uint32_t reads_in_flight_ = 0;  // read_output requests of this epoch not answered yet
  uint64_t read_epoch_ = 0;
  bool read_retry_pending_ = false;
  bool last_read_full_ = true;  // the last answer had all it was asked for
  uint64_t read_ahead_ = 0;     // where the next pipelined read starts
  uint64_t known_total_ = 0;    // the session's output size at the last answer
  std::optional<wire::EndRecord> end_;
  bool attached_ = false;
  bool closing_ = false;
  std::array<Utf8Carry, 3> carry_;         // per OutputStream
  std::array<uint64_t, 3> carry_start_{};  // offset of each carry's first byte
  std::deque<std::string> outbox_;
  size_t outbox_bytes_ = 0;
  bool writing_ = false;
};

}  // namespace mp::http
