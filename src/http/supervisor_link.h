// monkeyproof-api's connection to monkeyproofd's control socket (docs/protocol.md): connects,
// says hello, matches responses to requests by id, hands events to one listener, and
// reconnects with backoff when the supervisor goes away. It offers the newest protocol version
// and falls back to an older supervisor's (docs/protocol.md "Versions"), then fits every
// request to the version agreed (common/proto_version.h). While it is down every call fails at
// once with `unavailable`, which the routes turn into 503. Runs in monkeyproof-api on its
// io_context thread; not thread-safe (all calls from that thread).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include "common/messages.h"
#include "common/result.h"

namespace mp::http {

// Receives what the link learns. Called on the io_context thread, never re-entrantly from Call.
class LinkListener {
 public:
  virtual ~LinkListener() = default;
  virtual void OnLinkUp(const wire::ServerHello& hello) = 0;
  virtual void OnLinkDown() = 0;
  virtual void OnEvent(const wire::Event& event) = 0;
};

class SupervisorLink {
 public:
  // A response, or an Error when the request never got one (link down, encode failure). The
  // callback runs later on the io_context thread, never inside Call.
  using Callback = std::function<void(Result<wire::Response>)>;

  SupervisorLink(boost::asio::io_context& io, std::string socket_path, std::string client_name);
  SupervisorLink(const SupervisorLink&) = delete;
  SupervisorLink& operator=(const SupervisorLink&) = delete;
  ~SupervisorLink();

  void SetListener(LinkListener* listener) { listener_ = listener; }
  // Starts connecting (and reconnecting forever, 50 ms doubling to 2 s).
  void Start();
  // Stops and fails what is pending.
  void Stop();

  void Call(wire::RequestBody body, Callback done);

  [[nodiscard]] bool up() const { return state_ == State::kUp; }
  // The protocol version agreed with the supervisor on the current (or last) connection;
  // kProtoVersion before the first.
  [[nodiscard]] uint32_t proto() const { return proto_; }
  // The supervisor's hello from the current (or last) connection.
  [[nodiscard]] const std::optional<wire::ServerHello>& hello() const { return hello_; }
  // Why the link is down, for 503 messages ("connect /run/...: ENOENT ...").
  [[nodiscard]] const std::string& last_error() const { return last_error_; }
  [[nodiscard]] uint64_t reconnects() const { return reconnects_; }

 private:
  enum class State { kStopped, kDown, kHandshake, kUp };

  void Connect();
  void ScheduleReconnect();
  void Fail(const std::string& why);
  void SendBytes(std::vector<uint8_t> frame);
  void FlushOutbox();
  void WaitReadable();
  void OnReadable();
  void HandleFrame(const wire::FrameView& frame);
  void SendDeferredReads();  // those of deferred_reads_ that fit the budget now

  boost::asio::io_context& io_;
  std::string socket_path_;
  std::string client_name_;
  LinkListener* listener_ = nullptr;
  State state_ = State::kStopped;
  std::optional<boost::asio::posix::stream_descriptor> socket_;
  boost::asio::steady_timer timer_;  // reconnect backoff, handshake deadline
  std::chrono::milliseconds backoff_{50};
  std::deque<std::vector<uint8_t>> outbox_;
  size_t outbox_bytes_ = 0;
  bool write_armed_ = false;
  std::vector<uint8_t> buffer_;
  uint64_t next_id_ = 1;
  std::unordered_map<uint64_t, Callback> pending_;
  // read_output answers may be up to a frame each, and the supervisor closes the connection
  // when its outbox to us would pass 4 MiB (docs/protocol.md, "Flow control"): reads beyond a
  // budget of answer bytes wait here, in order, until earlier answers have arrived.
  std::unordered_map<uint64_t, size_t> read_reserved_;  // request id -> budgeted answer bytes
  size_t read_bytes_in_flight_ = 0;
  std::deque<std::pair<wire::RequestBody, Callback>> deferred_reads_;
  std::optional<wire::ServerHello> hello_;
  uint32_t proto_ = wire::kProtoVersion;    // agreed on the current (or last) connection
  uint32_t offered_ = wire::kProtoVersion;  // what this connection's hello offered
  // An older supervisor answered our hello with its version and closed: the next connection
  // (only that one) offers its version. Later reconnects offer ours again, so an upgraded
  // supervisor is spoken to in full once it restarts.
  std::optional<uint32_t> fallback_;
  std::string last_error_ = "not connected yet";
  uint64_t reconnects_ = 0;
  uint64_t generation_ = 0;  // bumps on every (dis)connect; stale handlers check it
};

// The Error of a call that failed in transport, as an ErrorBody with code `unavailable`.
wire::ErrorBody Unavailable(const std::string& why);

}  // namespace mp::http
