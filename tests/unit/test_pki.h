// A throwaway PKI for TLS tests, made with OpenSSL's API (no openssl binary): P-256 keys and
// X.509 v3 certificates signed with SHA-256, valid from an hour ago for a day. Test code only;
// any thread.
#pragma once

#include <string>
#include <vector>

namespace mp::test {

struct PemPair {
  std::string cert;  // PEM certificate
  std::string key;   // PEM private key (PKCS#8, unencrypted)
};

struct CertSpec {
  std::vector<std::string> common_names;  // subject CNs, in order (tests make none or two)
  bool ca = false;                        // basicConstraints CA:TRUE
  std::string san;                        // subjectAltName, e.g. "IP:127.0.0.1,DNS:localhost"
  long serial = 1;
};

// A self-signed certificate (a CA when spec.ca).
PemPair MakeSelfSigned(const CertSpec& spec);
// A certificate for `spec` signed by `issuer`.
PemPair MakeSigned(const CertSpec& spec, const PemPair& issuer);

}  // namespace mp::test
