#include "egress/relay.h"

#include <algorithm>
#include <utility>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

namespace mp::egress {

namespace asio = boost::asio;
using asio::ip::tcp;

std::shared_ptr<Relay> Relay::Start(tcp::socket client, tcp::socket upstream, RelayOptions options,
                                    RelayAccount account, RelayDone done) {
  auto relay = std::make_shared<Relay>(std::move(client), std::move(upstream), std::move(options),
                                       std::move(account), std::move(done));
  relay->Begin();
  return relay;
}

Relay::Relay(tcp::socket client, tcp::socket upstream, RelayOptions options, RelayAccount account,
             RelayDone done)
    : client_(std::move(client)),
      upstream_(std::move(upstream)),
      options_(std::move(options)),
      account_(std::move(account)),
      done_(std::move(done)),
      idle_(client_.get_executor()),
      last_activity_(std::chrono::steady_clock::now()),
      buf_up_(new char[kBufferSize]),
      buf_down_(new char[kBufferSize]) {}

void Relay::Begin() {
  ArmIdle();
  Pump(/*up=*/false);
  if (options_.first_up.empty()) {
    Pump(/*up=*/true);
    return;
  }
  if (!account_(options_.first_up.size(), true)) return Close();
  bytes_up_ += options_.first_up.size();
  asio::async_write(upstream_, asio::buffer(options_.first_up),
                    [self = shared_from_this()](boost::system::error_code ec, size_t) {
                      if (ec) return self->Close();
                      self->Pump(/*up=*/true);
                    });
}

void Relay::Pump(bool up) {
  if (finished_) return;
  tcp::socket& from = up ? client_ : upstream_;
  size_t want = kBufferSize;
  if (up && options_.up_limit) {
    uint64_t left = *options_.up_limit;
    if (left == 0) return EndDirection(/*up=*/true, /*shutdown_peer=*/false);
    want = static_cast<size_t>(std::min<uint64_t>(want, left));
  }
  from.async_read_some(asio::buffer(up ? buf_up_.get() : buf_down_.get(), want),
                       [self = shared_from_this(), up](boost::system::error_code ec, size_t n) {
                         self->OnRead(up, ec, n);
                       });
}

void Relay::OnRead(bool up, boost::system::error_code ec, size_t n) {
  if (finished_) return;
  if (ec == asio::error::eof) return EndDirection(up, /*shutdown_peer=*/true);
  if (ec) return Close();
  last_activity_ = std::chrono::steady_clock::now();
  if (!account_(n, up)) return Close();
  (up ? bytes_up_ : bytes_down_) += n;
  if (up && options_.up_limit) *options_.up_limit -= n;
  tcp::socket& to = up ? upstream_ : client_;
  asio::async_write(to, asio::buffer(up ? buf_up_.get() : buf_down_.get(), n),
                    [self = shared_from_this(), up](boost::system::error_code wec, size_t) {
                      if (wec) return self->Close();
                      self->last_activity_ = std::chrono::steady_clock::now();
                      self->Pump(up);
                    });
}

void Relay::EndDirection(bool up, bool shutdown_peer) {
  (up ? up_done_ : down_done_) = true;
  if (shutdown_peer) {
    boost::system::error_code ignored;
    (up ? upstream_ : client_).shutdown(tcp::socket::shutdown_send, ignored);
  }
  if (up_done_ && down_done_) Close();
}

void Relay::ArmIdle() {
  idle_.expires_after(options_.idle_timeout);
  idle_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (ec || self->finished_) return;
    if (std::chrono::steady_clock::now() - self->last_activity_ >= self->options_.idle_timeout) {
      return self->Close();
    }
    self->ArmIdle();
  });
}

void Relay::Close() {
  if (finished_) return;
  finished_ = true;
  boost::system::error_code ignored;
  client_.close(ignored);
  upstream_.close(ignored);
  idle_.cancel();
  if (done_) std::exchange(done_, nullptr)(bytes_up_, bytes_down_);
}

}  // namespace mp::egress
