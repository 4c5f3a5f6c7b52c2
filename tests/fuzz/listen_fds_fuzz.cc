// libFuzzer target for what systemd hands monkeyproofd at start (supervisor/sd_notify.h): the
// LISTEN_PID / LISTEN_FDS / LISTEN_FDNAMES values (the input split at its first two '\n' into
// the three; a missing part is an unset variable) and the fd names of sessions
// ("<session-id>.<kind>"). Besides "no crash, no sanitizer report" it aborts when an invariant
// fails: accepted fds are 3, 4, ... in order, one per LISTEN_FDS, each with a valid name; a
// name ParseFdName accepts is exactly what FdName makes of its parts. The normal build replays
// tests/fuzz/corpus/listen_fds (fuzz_replay.listen_fds).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "supervisor/sd_notify.h"

namespace {

namespace sd = mp::supervisor::sd;

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "listen_fds_fuzz: %s\n", what);
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
    set[i] = parts[i] != "-";  // "-" stands for an unset variable
    if (nl == std::string_view::npos) break;
    start = nl + 1;
  }
  // The environment holds C strings: a NUL ends the value there.
  auto c = [&](int i) -> const char* { return set[i] ? parts[i].c_str() : nullptr; };
  const auto fds = sd::ParseListenFds(c(0), c(1), c(2), /*self=*/4242);
  if (fds) {
    if (!fds->empty()) {
      Check(set[0] && set[1], "fds without LISTEN_PID and LISTEN_FDS");
      Check(std::strtoull(c(0), nullptr, 10) == 4242, "fds meant for another process");
      // (Leading zeros are a number as systemd's parser reads them: "02" is 2.)
      Check(std::strtoull(c(1), nullptr, 10) == fds->size(), "a count that is not LISTEN_FDS");
    }
    for (size_t i = 0; i < fds->size(); ++i) {
      const auto& f = (*fds)[i];
      Check(f.fd == sd::kListenFdsStart + static_cast<int>(i), "fds out of order");
      Check(sd::IsValidFdName(f.name), "an invalid name accepted");
      if (const auto parsed = sd::ParseFdName(f.name)) {
        Check(sd::FdName(parsed->session_id, parsed->kind) == f.name,
              "a name that does not "
              "round-trip");
      }
    }
  }
  // Every part as an fd name on its own too.
  for (const auto& p : parts) {
    if (const auto parsed = sd::ParseFdName(p)) {
      Check(sd::FdName(parsed->session_id, parsed->kind) == p, "a name that does not round-trip");
      Check(sd::IsValidFdName(p), "a session fd name systemd would refuse");
    }
  }
  return 0;
}
