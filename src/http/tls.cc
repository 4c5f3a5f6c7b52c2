#include "http/tls.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

#include <openssl/err.h>
#include <openssl/x509.h>

#include "common/unique_fd.h"

namespace mp::http {
namespace {

// OpenSSL's queued reasons, oldest first, "; "-separated; empties the queue.
std::string OpenSslReasons() {
  std::string out;
  while (const unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "no reason given by OpenSSL" : out;
}

// Before OpenSSL reads `path`: an error naming the api.conf key and errno when it cannot be
// opened, and, for the private key, when others may read it.
Result<void> CheckFile(const char* key, const std::string& path, bool secret) {
  const std::string what = std::string(key) + " \"" + path + "\"";
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd.valid()) return ErrnoError("open " + what + " (it must be readable by the API's user)");
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return ErrnoError("fstat " + what);
  if (!S_ISREG(st.st_mode)) return PlainError(what + " is not a regular file");
  if (secret && (st.st_mode & (S_IROTH | S_IWOTH)) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return PlainError(what + " is readable by others (mode " + mode + "); run chmod o-rwx " + path);
  }
  return Ok();
}

Result<void> Fail(const std::string& what) { return PlainError(what + ": " + OpenSslReasons()); }

}  // namespace

Result<std::shared_ptr<boost::asio::ssl::context>> MakeServerTlsContext(const TlsConfig& config) {
  ERR_clear_error();
  auto context = std::make_shared<boost::asio::ssl::context>(boost::asio::ssl::context::tls_server);
  SSL_CTX* ctx = context->native_handle();
  const std::string cert = "tls_cert \"" + config.cert_file + "\"";
  const std::string key = "tls_key \"" + config.key_file + "\"";
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
      SSL_CTX_set_cipher_list(ctx, kTls12Ciphers) != 1 ||
      SSL_CTX_set_ciphersuites(ctx, kTls13Suites) != 1 ||
      SSL_CTX_set1_groups_list(ctx, "X25519:P-256:P-384") != 1) {
    MP_RETURN_IF_ERROR(Fail("TLS protocol settings"));
  }
  SSL_CTX_set_options(
      ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  // An encrypted key would make OpenSSL prompt on a terminal: refuse it instead.
  SSL_CTX_set_default_passwd_cb(ctx, [](char*, int, int, void*) { return 0; });

  MP_RETURN_IF_ERROR(CheckFile("tls_cert", config.cert_file, /*secret=*/false));
  MP_RETURN_IF_ERROR(CheckFile("tls_key", config.key_file, /*secret=*/true));
  if (SSL_CTX_use_certificate_chain_file(ctx, config.cert_file.c_str()) != 1) {
    MP_RETURN_IF_ERROR(Fail(cert + " is not a PEM certificate chain"));
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, config.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    MP_RETURN_IF_ERROR(
        Fail(key + " is not an unencrypted PEM private key (or does not belong to " + cert + ")"));
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    MP_RETURN_IF_ERROR(Fail(key + " does not belong to " + cert));
  }

  if (config.client_certs != ClientCerts::kNone) {
    MP_RETURN_IF_ERROR(CheckFile("tls_client_ca", config.client_ca_file, /*secret=*/false));
    const std::string ca = "tls_client_ca \"" + config.client_ca_file + "\"";
    if (SSL_CTX_load_verify_locations(ctx, config.client_ca_file.c_str(), nullptr) != 1) {
      MP_RETURN_IF_ERROR(Fail(ca + " holds no PEM CA certificate"));
    }
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(config.client_ca_file.c_str());
    if (names == nullptr) MP_RETURN_IF_ERROR(Fail(ca + " holds no PEM CA certificate"));
    SSL_CTX_set_client_CA_list(ctx, names);  // takes ownership
    int mode = SSL_VERIFY_PEER;
    if (config.client_certs == ClientCerts::kRequired) mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    SSL_CTX_set_verify(ctx, mode, nullptr);
    SSL_CTX_set_verify_depth(ctx, kClientVerifyDepth);
    // Resumed sessions keep the certificate verified in the full handshake; the id context
    // ties them to this server (OpenSSL refuses resumption with client verification without).
    static const unsigned char kSessionId[] = "monkeyproof-api";
    SSL_CTX_set_session_id_context(ctx, kSessionId, sizeof(kSessionId) - 1);
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  }
  return context;
}

std::optional<std::string> VerifiedClientPrincipal(SSL* ssl) {
  if (ssl == nullptr || (SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER) == 0) return std::nullopt;
  X509* cert = SSL_get0_peer_certificate(ssl);
  if (cert == nullptr || SSL_get_verify_result(ssl) != X509_V_OK) return std::nullopt;
  X509_NAME* subject = X509_get_subject_name(cert);
  const int index = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  // Two CNs: which one names the client is the issuer's guess, not ours.
  if (index < 0 || X509_NAME_get_index_by_NID(subject, NID_commonName, index) >= 0) {
    return std::nullopt;
  }
  unsigned char* utf8 = nullptr;
  const int n =
      ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, index)));
  if (n < 0) return std::nullopt;
  std::string cn(reinterpret_cast<const char*>(utf8), static_cast<size_t>(n));
  OPENSSL_free(utf8);
  if (cn.empty() || cn.size() > 64) return std::nullopt;
  for (const unsigned char c : cn) {
    if (c < 0x20 || c == 0x7f) return std::nullopt;  // NUL, newlines: not in a log line or a name
  }
  return cn;
}

}  // namespace mp::http
