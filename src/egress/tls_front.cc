// The transparent TLS listener (connections.h): the ClientHello's server name, read under a
// deadline, decides where the connection goes; the bytes read are forwarded unchanged.
#include <boost/asio/steady_timer.hpp>
#include <memory>
#include <string>
#include <utility>

#include "egress/client_hello.h"
#include "egress/connections.h"
#include "egress/egress_session.h"
#include "egress/relay.h"

namespace mp::egress {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

class TlsFront : public std::enable_shared_from_this<TlsFront> {
 public:
  TlsFront(std::shared_ptr<EgressSession> session, tcp::socket client,
           std::shared_ptr<ConnectionSlot> slot)
      : session_(std::move(session)),
        client_(std::move(client)),
        slot_(std::move(slot)),
        deadline_(client_.get_executor()),
        chunk_(new char[4096]) {}

  void Start() {
    slot_->close = [weak = weak_from_this()] {
      if (auto self = weak.lock()) self->Abort();
    };
    deadline_.expires_after(session_->config().limits.head_timeout);
    deadline_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (!ec) self->Abort();
    });
    Read();
  }

 private:
  void Abort() {
    deadline_.cancel();
    ResetClose(client_);
  }

  void Read() {
    size_t room = kMaxClientHelloBytes - hello_.size();
    client_.async_read_some(asio::buffer(chunk_.get(), std::min<size_t>(room, 4096)),
                            [self = shared_from_this()](boost::system::error_code ec, size_t n) {
                              self->OnRead(ec, n);
                            });
  }

  void OnRead(boost::system::error_code ec, size_t n) {
    if (ec) return Abort();
    hello_.append(chunk_.get(), n);
    ClientHelloName read = ReadClientHelloName(hello_);
    if (read.status == ClientHelloName::Status::kNeedMore) {
      if (hello_.size() >= kMaxClientHelloBytes) return Refuse({}, "ClientHello too large");
      return Read();
    }
    deadline_.cancel();
    if (read.status == ClientHelloName::Status::kAbsent) {
      return Refuse({}, "ClientHello without a server name (SNI)");
    }
    if (read.status == ClientHelloName::Status::kMalformed) {
      return Refuse({}, "not a TLS ClientHello: " + read.error);
    }
    destination_ = Authority{read.name, false, session_->config().tls_port};
    session_->Open(destination_,
                   [self = shared_from_this()](std::string refusal, tcp::socket upstream) {
                     self->OnOpen(std::move(refusal), std::move(upstream));
                   });
  }

  void OnOpen(std::string refusal, tcp::socket upstream) {
    if (!refusal.empty()) return Refuse(destination_.host, refusal);
    RelayOptions options;
    options.first_up = std::move(hello_);
    options.idle_timeout = session_->config().limits.idle_timeout;
    StartAccountedRelay(session_, slot_, std::move(client_), std::move(upstream),
                        std::move(options),
                        Verdict{.listener = "tls",
                                .name = destination_.host,
                                .port = destination_.port,
                                .allowed = true});
  }

  void Refuse(std::string name, const std::string& why) {
    deadline_.cancel();
    session_->Report(Verdict{.listener = "tls",
                             .name = std::move(name),
                             .port = session_->config().tls_port,
                             .allowed = false,
                             .reason = why});
    ResetClose(client_);
  }

  std::shared_ptr<EgressSession> session_;
  tcp::socket client_;
  std::shared_ptr<ConnectionSlot> slot_;
  asio::steady_timer deadline_;
  std::unique_ptr<char[]> chunk_;
  std::string hello_;
  Authority destination_;
};

}  // namespace

void StartTlsFront(std::shared_ptr<EgressSession> session, tcp::socket client,
                   std::shared_ptr<ConnectionSlot> slot) {
  std::make_shared<TlsFront>(std::move(session), std::move(client), std::move(slot))->Start();
}

}  // namespace mp::egress
