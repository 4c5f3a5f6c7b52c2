// libFuzzer target for what systemd hands both daemons at start (common/sd_daemon.h): the
// LISTEN_PID / LISTEN_FDS / LISTEN_FDNAMES values, the input split at its first two '\n' into
// the three ("-" stands for an unset variable; a missing part is unset too), parsed with the
// API's limit (64 fds) and the supervisor's; and the fd names of monkeyproofd's sessions
// ("<session-id>.<kind>", supervisor/sd_notify.h). Besides "no crash, no sanitizer report" it
// aborts when an invariant fails: fds only for LISTEN_PID == self, as many as LISTEN_FDS says
// and never more than the limit, 3, 4, ... in order, each with a valid name; no error without
// LISTEN_PID; `ignored` only without fds and only when LISTEN_FDS is set; a session fd name
// ParseFdName accepts is exactly what FdName makes of its parts. The normal build replays
// tests/fuzz/corpus/listen_fds (fuzz_replay.listen_fds).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/sd_daemon.h"
#include "supervisor/sd_notify.h"

namespace {

namespace sd = mp::supervisor::sd;
constexpr pid_t kSelf = 4242;

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "listen_fds_fuzz: %s\n", what);
    std::abort();
  }
}

void CheckParse(const std::string* parts, const bool* set, size_t max_fds) {
  auto c = [&](int i) -> const char* { return set[i] ? parts[i].c_str() : nullptr; };
  const auto r = mp::sd::ParseListenFds(c(0), c(1), c(2), kSelf, max_fds);
  if (!r) {
    Check(set[0], "an error without LISTEN_PID");
    Check(!r.error().what.empty(), "an error that says nothing");
    return;
  }
  if (!r->fds.empty()) {
    Check(set[0] && set[1], "fds without LISTEN_PID and LISTEN_FDS");
    Check(std::strtoull(c(0), nullptr, 10) == kSelf, "fds meant for another process");
    // (Leading zeros are a number as systemd's parser reads them: "02" is 2.)
    Check(std::strtoull(c(1), nullptr, 10) == r->fds.size(), "a count that is not LISTEN_FDS");
    Check(r->fds.size() <= max_fds, "more fds than the limit");
    Check(r->ignored.empty(), "fds taken and ignored");
  }
  for (size_t i = 0; i < r->fds.size(); ++i) {
    const auto& f = r->fds[i];
    Check(f.fd == sd::kListenFdsStart + static_cast<int>(i), "fds out of order");
    Check(sd::IsValidFdName(f.name), "an invalid name accepted");
    if (const auto parsed = sd::ParseFdName(f.name)) {
      Check(sd::FdName(parsed->session_id, parsed->kind) == f.name,
            "a name that does not round-trip");
    }
  }
  if (!r->ignored.empty()) Check(set[1], "ignored what was not set");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  std::string parts[3];
  bool set[3] = {false, false, false};
  size_t start = 0;
  for (int i = 0; i < 3 && start <= in.size(); ++i) {
    const size_t nl = i < 2 ? in.find('\n', start) : std::string_view::npos;
    parts[i] = std::string(in.substr(start, nl == std::string_view::npos ? nl : nl - start));
    set[i] = parts[i] != "-";
    if (nl == std::string_view::npos) break;
    start = nl + 1;
  }
  // The environment holds C strings: a NUL ends the value there (c_str() does the same).
  CheckParse(parts, set, /*the API's*/ 64);
  CheckParse(parts, set, sd::kMaxListenFds);
  // Every part as a session fd name on its own too.
  for (const auto& p : parts) {
    if (const auto parsed = sd::ParseFdName(p)) {
      Check(sd::FdName(parsed->session_id, parsed->kind) == p, "a name that does not round-trip");
      Check(sd::IsValidFdName(p), "a session fd name systemd would refuse");
    }
  }
  return 0;
}
