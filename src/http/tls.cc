#include "http/tls.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <memory>
#include <vector>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "common/scope_guard.h"
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

// The largest certificate chain, key or CA file read (a PEM chain of a few certificates is
// a few KiB; a CA bundle ~200 KiB).
constexpr off_t kMaxPemFileBytes = 1 << 20;

// The text of `path`, read through one checked fd so that what is checked is what OpenSSL
// parses (it never opens the path itself). O_NONBLOCK: a FIFO planted at the path would
// otherwise block the open, and with it the API's event loop on SIGHUP; the fstat then
// refuses it. No O_NOFOLLOW: certbot's live/ files are symlinks into archive/. Errors name
// the api.conf key, the file and errno; for the private key, also a mode that lets others in.
Result<std::string> ReadPemFile(const char* key, const std::string& path, bool secret) {
  const std::string what = std::string(key) + " \"" + path + "\"";
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (!fd.valid()) return ErrnoError("open " + what + " (it must be readable by the API's user)");
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return ErrnoError("fstat " + what);
  if (!S_ISREG(st.st_mode)) {
    return PlainError(what + " is not a regular file; point " + key + " at a PEM file");
  }
  if (secret && (st.st_mode & (S_IROTH | S_IWOTH)) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return PlainError(what + " is readable by others (mode " + mode + "); run chmod o-rwx " + path);
  }
  const std::string too_big =
      what + " is larger than " + std::to_string(kMaxPemFileBytes) + " bytes; is it a PEM file?";
  if (st.st_size > kMaxPemFileBytes) return PlainError(too_big);
  std::string text;
  char buf[16384];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("read " + what);
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > static_cast<size_t>(kMaxPemFileBytes)) return PlainError(too_big);
  }
  return text;
}

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;

BioPtr MemoryBio(const std::string& text) {
  return BioPtr(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

// Every certificate of a PEM text, in order; none when it holds none (or a damaged one).
std::vector<X509Ptr> ReadCertificates(const std::string& text, bool first_with_aux) {
  std::vector<X509Ptr> out;
  BioPtr bio = MemoryBio(text);
  if (!bio) return out;
  for (;;) {
    X509* x = out.empty() && first_with_aux
                  ? PEM_read_bio_X509_AUX(bio.get(), nullptr, nullptr, nullptr)
                  : PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr);
    if (x == nullptr) break;
    out.emplace_back(x);
  }
  // The loop ends at the end of the text (PEM_R_NO_START_LINE, not an error) or at a damaged
  // certificate (an error: the whole file is refused).
  const unsigned long e = ERR_peek_last_error();
  if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE && !out.empty()) {
    ERR_clear_error();
  } else if (e != 0) {
    out.clear();
  }
  return out;
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
  // An encrypted key would make OpenSSL prompt on a terminal: refuse it instead (the key is
  // parsed below with the same callback).
  SSL_CTX_set_default_passwd_cb(ctx, [](char*, int, int, void*) { return 0; });

  MP_TRY(const std::string cert_text, ReadPemFile("tls_cert", config.cert_file, false));
  MP_TRY(std::string key_text, ReadPemFile("tls_key", config.key_file, /*secret=*/true));
  ScopeGuard wipe_key([&] { OPENSSL_cleanse(key_text.data(), key_text.size()); });
  // What SSL_CTX_use_certificate_chain_file does, from the text read above: the first
  // certificate is the server's, the rest its chain.
  std::vector<X509Ptr> chain = ReadCertificates(cert_text, /*first_with_aux=*/true);
  if (chain.empty() || SSL_CTX_use_certificate(ctx, chain.front().get()) != 1) {
    MP_RETURN_IF_ERROR(Fail(cert + " is not a PEM certificate chain"));
  }
  SSL_CTX_clear_chain_certs(ctx);
  for (size_t i = 1; i < chain.size(); ++i) {
    if (SSL_CTX_add1_chain_cert(ctx, chain[i].get()) != 1) {
      MP_RETURN_IF_ERROR(Fail(cert + " is not a PEM certificate chain"));
    }
  }
  {
    BioPtr bio = MemoryBio(key_text);
    // No password callback: an encrypted key fails here instead of prompting on a terminal.
    std::unique_ptr<EVP_PKEY, PkeyFree> pkey(
        bio ? PEM_read_bio_PrivateKey(
                  bio.get(), nullptr, [](char*, int, int, void*) { return 0; }, nullptr)
            : nullptr);
    if (!pkey || SSL_CTX_use_PrivateKey(ctx, pkey.get()) != 1) {
      MP_RETURN_IF_ERROR(Fail(
          key + " is not an unencrypted PEM private key (or does not belong to " + cert + ")"));
    }
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    MP_RETURN_IF_ERROR(Fail(key + " does not belong to " + cert));
  }

  if (config.client_certs != ClientCerts::kNone) {
    MP_TRY(const std::string ca_text,
           ReadPemFile("tls_client_ca", config.client_ca_file, /*secret=*/false));
    const std::string ca = "tls_client_ca \"" + config.client_ca_file + "\"";
    // What SSL_CTX_load_verify_locations and SSL_load_client_CA_file do, from the text: each
    // CA is trusted for verification and named in the CertificateRequest.
    std::vector<X509Ptr> cas = ReadCertificates(ca_text, /*first_with_aux=*/false);
    if (cas.empty()) MP_RETURN_IF_ERROR(Fail(ca + " holds no PEM CA certificate"));
    X509_STORE* store = SSL_CTX_get_cert_store(ctx);
    for (const X509Ptr& x : cas) {
      if (X509_STORE_add_cert(store, x.get()) != 1 || SSL_CTX_add_client_CA(ctx, x.get()) != 1) {
        MP_RETURN_IF_ERROR(Fail(ca + " holds no PEM CA certificate"));
      }
    }
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
