// TLS of monkeyproof-api's listeners (OpenSSL through Boost.Asio): the slot holding the server
// context that new connections take, and the principal of a verified client certificate. Runs
// in monkeyproof-api on the io_context thread; not thread-safe (post to the io_context).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <utility>

#include <openssl/ssl.h>
#include <boost/asio/ssl/context.hpp>

namespace mp::http {

// The server context new TLS connections take. Replace() installs another (a reload on
// SIGHUP); connections keep the context they started with (ClientStream holds it).
class TlsContextSlot {
 public:
  explicit TlsContextSlot(std::shared_ptr<boost::asio::ssl::context> context)
      : current_(std::move(context)) {}
  [[nodiscard]] std::shared_ptr<boost::asio::ssl::context> current() const { return current_; }
  void Replace(std::shared_ptr<boost::asio::ssl::context> context) {
    current_ = std::move(context);
  }

 private:
  std::shared_ptr<boost::asio::ssl::context> current_;
};

// The subject CN of the client certificate that `ssl`'s finished handshake verified, when the
// context asked for one (mTLS); nullopt without a certificate, without verification, or when
// the CN is missing, repeated, empty, longer than 64 bytes or holds control characters.
std::optional<std::string> VerifiedClientPrincipal(SSL* ssl);

}  // namespace mp::http
