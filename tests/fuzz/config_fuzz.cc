// libFuzzer target for the `key = value` config files (common/kv_config.h) and their three
// readers: monkeyproof.conf (supervisor), api.conf (API) and cli.conf (CLI). The first byte's
// low nibble picks the reader ('0'..'3' in the corpus); the rest is the file. Besides "no
// crash, no sanitizer report", each branch checks an invariant and aborts when it fails: an
// error starts with "<origin>:<line>: " for a line the text has, accepted paths are absolute,
// and accepted numbers are in their documented ranges. Built with -fsanitize=fuzzer under the
// `fuzz` preset; the normal build links it with replay_main.cc to replay
// tests/fuzz/corpus/config (fuzz_replay.config).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "cli/config.h"
#include "common/kv_config.h"
#include "http/api_config.h"
#include "supervisor/config.h"

namespace {

namespace common = mp::common;

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "config_fuzz: %s\n", what);
  std::abort();
}

void Check(bool ok, const char* what) {
  if (!ok) Die(what);
}

// "f.conf:<n>: ..." with 1 <= n <= the number of lines of `text`.
void CheckError(const mp::Error& e, std::string_view text) {
  const std::string_view what = e.what;
  Check(what.rfind("f.conf:", 0) == 0, "an error that does not name the file");
  const size_t colon = what.find(':', 7);
  Check(colon != std::string_view::npos && colon > 7, "an error without a line number");
  const auto line = common::ParseKvNumber(what.substr(7, colon - 7));
  Check(line.has_value(), "the line number is not a number");
  const size_t lines = static_cast<size_t>(std::count(text.begin(), text.end(), '\n')) + 1;
  Check(*line >= 1 && *line <= lines, "the line number is not a line of the text");
}

bool Absolute(const std::string& p) { return !p.empty() && p.front() == '/'; }

void FuzzSupervisor(std::string_view text) {
  const auto c = mp::supervisor::ParseConfig("f.conf", std::string(text));
  if (!c) return CheckError(c.error(), text);
  Check(Absolute(c->socket_path) && Absolute(c->state_dir) && Absolute(c->policies_dir) &&
            Absolute(c->credentials_dir),
        "a relative path was accepted");
  Check(c->max_sessions >= 1, "max_sessions 0 was accepted");
}

void FuzzApi(std::string_view text) {
  const auto c = mp::http::ParseApiConfig(text, "f.conf");
  if (!c) {
    // Checks across keys (CheckTlsConfig) name the file and the keys, not one line.
    if (c.error().what.rfind("f.conf: tls_", 0) == 0 ||
        c.error().what.rfind("f.conf: listen and tls_listen", 0) == 0 ||
        c.error().what.find(" is in both listen and tls_listen") != std::string::npos) {
      return;
    }
    return CheckError(c.error(), text);
  }
  Check(Absolute(c->control_socket), "a relative control_socket was accepted");
  Check(c->tokens.file.empty() || Absolute(c->tokens.file), "a relative token_file");
  Check(!c->listen.empty() && c->listen.size() <= 16, "listen list size");
  for (const auto& a : c->listen) Check(a.port >= 1, "port 0 was accepted");
  Check(c->body_limit_bytes >= common::kKiB && c->body_limit_bytes <= 64 * common::kMiB,
        "body_limit_bytes out of range");
  Check(c->read_timeout_ms >= 100 && c->idle_timeout_ms >= 100, "timeouts out of range");
  Check(c->max_connections >= 1 && c->auth_failures_per_minute >= 1, "counts out of range");
  const auto& tls = c->tls;
  Check(tls.listen.empty() || (Absolute(tls.cert_file) && Absolute(tls.key_file)),
        "tls_listen without a certificate and key");
  Check(!tls.listen.empty() || (tls.cert_file.empty() && tls.key_file.empty()),
        "TLS files without tls_listen");
  Check(tls.client_certs == mp::http::ClientCerts::kNone || Absolute(tls.client_ca_file),
        "client certificates without tls_client_ca");
  Check(c->listen.size() + tls.listen.size() <= 16, "listen and tls_listen list size");
  const auto& unix_socket = c->unix_socket;
  Check(unix_socket.path.empty() || (Absolute(unix_socket.path) && unix_socket.path.size() <= 107),
        "a listen_unix that is not an absolute path that fits sun_path");
  Check(unix_socket.mode <= 0777, "listen_unix_mode beyond 0777");
  for (const auto& t : tls.listen) {
    Check(t.port >= 1, "tls port 0 was accepted");
    for (const auto& p : c->listen) Check(!(t == p), "an address in listen and tls_listen");
  }
}

void FuzzCli(std::string_view text) {
  const auto c = mp::cli::ParseConfigFile(text, "f.conf");
  if (!c) return CheckError(c.error(), text);
  for (const auto* v : {&c->url, &c->token, &c->token_file}) {
    Check(!v->has_value() || !(*v)->empty(), "an empty value was accepted");
  }
  if (!c->url) return;
  // The URL, as ResolveConfig parses it: a unix: URL is an absolute path that fits sun_path.
  const auto url = mp::cli::ParseServerUrl(*c->url);
  if (url && !url->unix_path.empty()) {
    Check(Absolute(url->unix_path) && url->unix_path.size() <= 107, "a bad unix: path");
    Check(url->ToString() == *c->url, "a unix: URL does not print as given");
  }
}

// The reader itself, with a key of each kind; `name` also takes any value.
void FuzzSchema(std::string_view text) {
  std::string name;
  std::string path;
  uint64_t count = 0;
  uint32_t small = 0;
  uint64_t bytes = 0;
  common::KvSchema schema;
  schema.String("name", &name)
      .Path("path", &path, true)
      .Number("count", &count, 1)
      .Number("small", &small, 10, 20)
      .Size("bytes", &bytes, common::kKiB, 64 * common::kMiB);
  const auto r = schema.Parse(text, "f.conf");
  if (!r) return CheckError(r.error(), text);
  Check(path.empty() || path.front() == '/', "a relative path was accepted");
  Check(small == 0 || (small >= 10 && small <= 20), "small out of range");
  Check(bytes == 0 || (bytes >= common::kKiB && bytes <= 64 * common::kMiB), "bytes out of range");
  Check(name.find('\n') == std::string::npos, "a value spans lines");
  // The size parser and its printer agree.
  if (const auto size = common::ParseKvSize(name)) {
    Check(common::ParseKvSize(common::SizeText(*size)) == size, "SizeText does not round-trip");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch ((data[0] & 0x0F) % 4) {
    case 0:
      FuzzSupervisor(text);
      break;
    case 1:
      FuzzApi(text);
      break;
    case 2:
      FuzzCli(text);
      break;
    default:
      FuzzSchema(text);
      break;
  }
  return 0;
}
