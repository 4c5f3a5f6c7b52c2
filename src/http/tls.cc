#include "http/tls.h"

#include <openssl/x509.h>

namespace mp::http {

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
