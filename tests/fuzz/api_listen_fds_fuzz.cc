// libFuzzer target for what systemd hands monkeyproof-api at start (http/listen_fds.h): the
// LISTEN_PID / LISTEN_FDS / LISTEN_FDNAMES values, the input split at its first two '\n' into
// the three ("-" stands for an unset variable; a missing part is unset too). Besides "no crash,
// no sanitizer report" it aborts when an invariant fails: fds only for LISTEN_PID == self, as
// many as LISTEN_FDS says and at most kMaxListenFds, 3, 4, ... in order, each with a valid name;
// no error without LISTEN_PID; `ignored` only without fds and only when LISTEN_FDS is set. The
// normal build replays tests/fuzz/corpus/api_listen_fds (fuzz_replay.api_listen_fds).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "http/listen_fds.h"

namespace {

constexpr pid_t kSelf = 4242;

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "api_listen_fds_fuzz: %s\n", what);
    std::abort();
  }
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
  // The environment holds C strings: a NUL ends the value there.
  auto c = [&](int i) -> const char* { return set[i] ? parts[i].c_str() : nullptr; };
  const auto r = mp::http::ParseListenFds(c(0), c(1), c(2), kSelf);
  if (!r) {
    Check(set[0], "an error without LISTEN_PID");
    Check(!r.error().what.empty(), "an error that says nothing");
    return 0;
  }
  if (!r->fds.empty()) {
    Check(set[0] && set[1], "fds without LISTEN_PID and LISTEN_FDS");
    Check(std::strtoull(c(0), nullptr, 10) == kSelf, "fds meant for another process");
    Check(std::strtoull(c(1), nullptr, 10) == r->fds.size(), "a count that is not LISTEN_FDS");
    Check(r->fds.size() <= mp::http::kMaxListenFds, "more fds than kMaxListenFds");
    Check(r->ignored.empty(), "fds taken and ignored");
  }
  for (size_t i = 0; i < r->fds.size(); ++i) {
    Check(r->fds[i].fd == mp::http::kListenFdsStart + static_cast<int>(i), "fds out of order");
    Check(mp::http::IsValidListenFdName(r->fds[i].name), "an invalid name accepted");
  }
  if (!r->ignored.empty()) Check(set[1], "ignored what was not set");
  return 0;
}
