// libFuzzer target for scoped tokens (src/http/token_scope.h, scoped_tokens.h): the token
// format, scope expressions, POST /tokens bodies, durations, the store's file, and the
// WebSocket's other credentials (the bearer subprotocol, the auth message). The first byte's
// low nibble picks the parser ('0'..'6' in the corpus); the rest is its input. Besides
// "no crash, no sanitizer report", each branch checks an invariant and aborts when it fails: a
// token id is what the format says, a parsed scope prints back to itself, an accepted body
// respects the rules (create <=> presets, ttl in range), and a file that parses serializes to
// text that parses to the same records. Built with -fsanitize=fuzzer under the `fuzz` preset;
// the normal build replays tests/fuzz/corpus/token as a unit test (fuzz_replay.token).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <variant>

#include <nlohmann/json.hpp>

#include "common/names.h"
#include "http/principal.h"
#include "http/scoped_tokens.h"
#include "http/token_scope.h"

namespace {

namespace http = mp::http;
namespace common = mp::common;

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "token_fuzz: %s\n", what);
  std::abort();
}

void Check(bool ok, const char* what) {
  if (!ok) Die(what);
}

constexpr uint64_t kMaxTtl = 86400;

void FuzzFormat(std::string_view text) {
  const auto id = http::ScopedTokenId(text);
  if (!id) return;
  Check(text.size() == http::kScopedTokenChars, "token length");
  Check(http::IsTokenId(*id), "id shape");
  Check(text.substr(http::kScopedTokenPrefix.size(), http::kTokenIdChars) == *id, "id position");
}

void FuzzScope(std::string_view text) {
  auto parsed = http::ParseSessionScope(text);
  if (auto* error = std::get_if<std::string>(&parsed)) {
    Check(!error->empty() && error->size() < 512, "error size");
    return;
  }
  const auto& scope = std::get<http::SessionScope>(parsed);
  Check(!scope.value.empty(), "empty scope value");
  auto again = http::ParseSessionScope(scope.ToString());
  Check(std::holds_alternative<http::SessionScope>(again), "printed scope does not parse");
  Check(std::get<http::SessionScope>(again) == scope, "printed scope parses differently");
}

void FuzzMintBody(std::string_view text) {
  auto r = http::ParseMintBody(text, kMaxTtl);
  if (r.index() == 1) {
    const auto& e = std::get<1>(r);
    Check(e.status == 400 && !e.message.empty(), "error shape");
    Check(nlohmann::json::accept(e.ToJson()), "error JSON");
    return;
  }
  const auto& b = std::get<0>(r);
  Check(b.ttl_seconds >= 1 && b.ttl_seconds <= kMaxTtl, "ttl range");
  Check(b.scope.rights != 0 && b.scope.rights < 16, "rights");
  Check(b.scope.Has(http::Right::kCreate) == !b.scope.presets.empty(), "create <=> presets");
  Check(b.scope.presets.size() <= http::kMaxTokenPresets, "preset count");
  for (const auto& p : b.scope.presets) Check(b.scope.AllowsPreset(p), "listed preset refused");
  Check(b.scope.Has(http::Right::kCreate) == !b.scope.workspaces.empty(), "create <=> workspaces");
  Check(b.scope.workspaces.size() <= common::kMaxTokenWorkspaces, "workspace count");
  for (size_t i = 0; i < b.scope.workspaces.size(); ++i) {
    Check(common::IsWorkspacePath(b.scope.workspaces[i]), "workspace not normalized");
    for (size_t j = 0; j < i; ++j) {
      Check(b.scope.workspaces[i] != b.scope.workspaces[j], "duplicate workspace");
    }
  }
}

void FuzzDuration(std::string_view text) {
  const auto d = http::ParseDuration(text);
  if (d) Check(*d >= 1, "zero duration");
}

void FuzzStoreFile(std::string_view text) {
  auto records = http::TokenStore::Parse(text);
  if (!records) return;
  const std::string again = http::TokenStore::Serialize(*records);
  auto reparsed = http::TokenStore::Parse(again);
  Check(reparsed.has_value(), "serialized store does not parse");
  Check(*reparsed == *records, "store round trip changes records");
}

// A token taken from a Sec-WebSocket-Protocol value is one offered item's tail.
void FuzzWsProtocol(std::string_view header) {
  const auto token = http::WsProtocolToken(header);
  if (token) {
    Check(!token->empty(), "empty protocol token");
    Check(header.find(std::string(http::kWsBearerProtocolPrefix) + *token) != std::string::npos,
          "protocol token not in the header");
    Check(token->find(',') == std::string::npos, "protocol token spans items");
  }
  (void)http::OffersWsProtocol(header);
}

void FuzzWsAuthMessage(std::string_view text) {
  const auto token = http::ParseWsAuthMessage(text);
  if (token) Check(!token->empty() && token->size() <= 4096, "auth message token size");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] & 0x0f) {
    case 0:
      FuzzFormat(input);
      break;
    case 1:
      FuzzScope(input);
      break;
    case 2:
      FuzzMintBody(input);
      break;
    case 3:
      FuzzDuration(input);
      break;
    case 4:
      FuzzStoreFile(input);
      break;
    case 5:
      FuzzWsProtocol(input);
      break;
    case 6:
      FuzzWsAuthMessage(input);
      break;
    default:
      break;
  }
  return 0;
}
