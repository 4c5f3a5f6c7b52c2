#include "http/client_principals.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include <nlohmann/json.hpp>

#include "common/json_strict.h"
#include "common/unique_fd.h"

namespace mp::http {
namespace {

using json = nlohmann::json;

// The shape VerifiedClientPrincipal (tls.h) lets through: a CN another shape can never match.
bool IsSubject(std::string_view cn) {
  if (cn.empty() || cn.size() > 64) return false;
  for (const char c : cn) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return false;
  }
  return true;
}

}  // namespace

Result<ClientPrincipals> ClientPrincipals::Parse(std::string_view text, std::string_view origin) {
  const std::string where(origin);
  json doc;
  if (auto parsed = wire::ParseJson(text, &doc, {4, true}); !parsed) {
    return PlainError(where + ": " + parsed.error().what);
  }
  if (!doc.is_object()) {
    return PlainError(where +
                      ": must be a JSON object mapping certificate CNs to \"admin\" or "
                      "a scope");
  }
  if (doc.size() > kMaxClientPrincipals) {
    return PlainError(where + ": more than " + std::to_string(kMaxClientPrincipals) + " entries");
  }
  ClientPrincipals out;
  for (const auto& [cn, value] : doc.items()) {
    const std::string pointer = wire::AppendPointer("", cn);
    if (!IsSubject(cn)) {
      return PlainError(where + ": " + pointer +
                        ": not a certificate CN (1..64 bytes without control characters)");
    }
    if (value.is_string()) {
      if (value.get_ref<const std::string&>() != "admin") {
        return PlainError(where + ": " + pointer +
                          ": a string entry must be \"admin\"; a scoped entry is an object "
                          "{\"sessions\":…,\"rights\":[…]}");
      }
      out.by_subject_.emplace(cn, std::nullopt);
      continue;
    }
    if (!value.is_object()) {
      return PlainError(where + ": " + pointer + ": must be \"admin\" or a scope object");
    }
    auto scope = ParseScopeObject(value.dump());
    if (const auto* error = std::get_if<ApiError>(&scope)) {
      return PlainError(where + ": " + pointer + error->field + ": " + error->message);
    }
    out.by_subject_.emplace(cn, std::get<TokenScope>(std::move(scope)));
  }
  return out;
}

Result<ClientPrincipals> ClientPrincipals::Load(const std::string& path) {
  const std::string what = "tls_client_principals \"" + path + "\"";
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (!fd) return ErrnoError("open(" + what + ")");
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return ErrnoError("fstat(" + what + ")");
  if (!S_ISREG(st.st_mode)) return PlainError(what + " is not a regular file");
  std::string text;
  char buf[16384];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("read(" + what + ")");
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > kMaxClientPrincipalsFileBytes) {
      return PlainError(what + " is larger than " + std::to_string(kMaxClientPrincipalsFileBytes) +
                        " bytes");
    }
  }
  return Parse(text, what);
}

std::optional<Principal> ClientPrincipals::Find(std::string_view cn) const {
  const auto it = by_subject_.find(cn);
  if (it == by_subject_.end()) return std::nullopt;
  return Principal{Principal::Kind::kCertificate, it->first, it->second};
}

}  // namespace mp::http
