// One WebSocket client of /sessions/{id}/ws (docs/api.md, "WebSocket"). It keeps its own
// output offset and is in one of two modes: live (forwarding the hub's events) or catching up
// (reading from its offset with read_output, as fast as it drains). Its outbox is bounded in
// bytes: when a live client falls behind it is told `lagged` and switched to catching up, so
// it never slows the session or other clients and never loses a byte. Runs in
// monkeyproof-api on the io_context thread; the object lives as long as an operation holds it.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/websocket/stream.hpp>

#include "common/messages.h"
#include "http/api_context.h"
#include "http/client_stream.h"
#include "http/session_hub.h"
#include "http/utf8.h"

namespace mp::http {

class WsSession : public HubClient, public std::enable_shared_from_this<WsSession> {
 public:
  // `since`: resume offset from ?since=, or nullopt for a catchup of recent output.
  // `may_input`: the principal has the input right (stdin, resize, signal, close-stdin);
  // without it those messages are answered with an error and dropped. `principal`
  // (Principal::ToString) goes with every input request, for the supervisor's audit log.
  WsSession(ApiContext& ctx, ClientStream&& stream, wire::SessionInfo info,
            std::optional<uint64_t> since, bool may_input, std::string principal);

  // A WebSocket already accepted (WsAuthGate: the credential came in its first message).
  WsSession(ApiContext& ctx, boost::beast::websocket::stream<ClientStream>&& ws,
            wire::SessionInfo info, std::optional<uint64_t> since, bool may_input,
            std::string principal);
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

  ApiContext& ctx_;
  std::shared_ptr<ApiContext> keep_;
  boost::beast::websocket::stream<ClientStream> ws_;
  boost::beast::flat_buffer read_buffer_;
  wire::SessionInfo info_;
  std::optional<uint64_t> since_;
  bool may_input_ = true;
  std::string principal_;
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
