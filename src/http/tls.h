// TLS of monkeyproof-api's listeners (OpenSSL through Boost.Asio): the server context built
// from api.conf's tls_* files, the slot new connections take it from (replaced on SIGHUP), and
// the principal of a verified client certificate. Runs in monkeyproof-api on the io_context
// thread; not thread-safe (post to the io_context).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <utility>

#include <openssl/ssl.h>
#include <boost/asio/ssl/context.hpp>

#include "common/result.h"
#include "http/api_config.h"

namespace mp::http {

// TLS 1.2 suites: ECDHE key exchange (forward secrecy) with AEAD ciphers only, as in Mozilla's
// "intermediate" profile without its DHE suites. TLS 1.3 uses OpenSSL's three (AES-GCM and
// ChaCha20-Poly1305). Older protocols, compression, renegotiation are off.
inline constexpr char kTls12Ciphers[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
inline constexpr char kTls13Suites[] =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";
// Chain depth accepted for client certificates (client, intermediates, root).
inline constexpr int kClientVerifyDepth = 4;

// A server context from `config`'s files: the certificate chain and its key (which must match,
// and must not be readable by others), the client CA and mode. Errors name the key of api.conf,
// the file and OpenSSL's reason, e.g. `tls_key "/etc/monkeyproof/tls/key.pem" does not belong
// to tls_cert "..."`. Reads the files: at start and on reload only.
Result<std::shared_ptr<boost::asio::ssl::context>> MakeServerTlsContext(const TlsConfig& config);

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
