// Client certificates as credentials (docs/api.md "Client certificates"): the file named by
// `tls_client_principals` in api.conf maps the subject CN of a verified client certificate to
// "admin" or to a scope (the scope JSON POST /tokens takes, without ttlSeconds). A verified
// certificate whose CN is not listed authenticates nothing, and the request falls back to its
// bearer token. Loaded once at start, strictly: a file that does not parse stops the start.
// Runs in monkeyproof-api; Find is const and thread-safe, Load does blocking file I/O.
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"
#include "http/principal.h"
#include "http/token_scope.h"

namespace mp::http {

inline constexpr size_t kMaxClientPrincipals = 10'000;
inline constexpr size_t kMaxClientPrincipalsFileBytes = 4 * 1024 * 1024;

class ClientPrincipals {
 public:
  // No file: no certificate is a credential.
  ClientPrincipals() = default;

  // {"<CN>": "admin" | {"sessions":…,"rights":[…],"presets":[…]}, …}. A CN has the shape a
  // verified certificate's may have (1..64 bytes, no control characters). Errors read
  // "<origin>: /<CN>/<member>: <reason>".
  static Result<ClientPrincipals> Parse(std::string_view text, std::string_view origin);
  // Reads `path` (a regular file up to kMaxClientPrincipalsFileBytes) and parses it.
  static Result<ClientPrincipals> Load(const std::string& path);

  // The principal a verified certificate with this CN authenticates as: kCertificate with the
  // CN as id and the listed scope (none for "admin"); nullopt when the CN is not listed.
  [[nodiscard]] std::optional<Principal> Find(std::string_view cn) const;
  [[nodiscard]] size_t size() const { return by_subject_.size(); }

 private:
  // CN -> scope; nullopt: admin (every session, every right).
  std::map<std::string, std::optional<TokenScope>, std::less<>> by_subject_;
};

}  // namespace mp::http
