// The egress gateway's byte relay (issue 14): once a connection is allowed and its upstream is
// connected, Relay copies bytes both ways through two fixed 16 KiB buffers (a slow side stalls
// the other, memory never grows), propagates a half-close (EOF from one side becomes a
// shutdown(SHUT_WR) on the other), and closes both ends on an error, on idle_timeout without a
// byte either way, or when the session's byte budget (the `account` callback) says no.
// Runs in monkeyproof-egress on the session's io_context; single-threaded (not thread-safe).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

namespace mp::egress {

struct RelayOptions {
  std::string first_up;  // bytes already read from the client, sent upstream first
  // Copy at most this many further client bytes upstream, then stop reading the client (a
  // forwarded request's body: a pipelined second request stays unread). nullopt: no limit.
  std::optional<uint64_t> up_limit;
  std::chrono::milliseconds idle_timeout{300'000};
};

// `account(bytes, up)` is called before each chunk is forwarded; false closes the relay.
// `done(bytes_up, bytes_down)` is called once when both ends are closed.
using RelayAccount = std::function<bool(size_t bytes, bool up)>;
using RelayDone = std::function<void(uint64_t bytes_up, uint64_t bytes_down)>;

class Relay : public std::enable_shared_from_this<Relay> {
 public:
  // Starts relaying; the returned handle closes it (Close) and may be dropped: pending
  // operations keep the relay alive until it is done.
  static std::shared_ptr<Relay> Start(boost::asio::ip::tcp::socket client,
                                      boost::asio::ip::tcp::socket upstream, RelayOptions options,
                                      RelayAccount account, RelayDone done);
  Relay(boost::asio::ip::tcp::socket client, boost::asio::ip::tcp::socket upstream,
        RelayOptions options, RelayAccount account, RelayDone done);
  void Close();

 private:
  void Begin();
  void Pump(bool up);
  void OnRead(bool up, boost::system::error_code ec, size_t n);
  void EndDirection(bool up, bool shutdown_peer);
  void ArmIdle();
  void Finish();

  boost::asio::ip::tcp::socket client_;
  boost::asio::ip::tcp::socket upstream_;
  RelayOptions options_;
  RelayAccount account_;
  RelayDone done_;
  boost::asio::steady_timer idle_;
  std::chrono::steady_clock::time_point last_activity_;
  static constexpr size_t kBufferSize = 16 * 1024;
  std::unique_ptr<char[]> buf_up_;
  std::unique_ptr<char[]> buf_down_;
  uint64_t bytes_up_ = 0;
  uint64_t bytes_down_ = 0;
  bool up_done_ = false;
  bool down_done_ = false;
  bool finished_ = false;
};

}  // namespace mp::egress
