// AuditThrottle: how many audit lines of one kind monkeyproof-api may send per window, per key
// (a client address for refused requests, a principal for reads) and in all, so that nobody
// can fill the audit log's disk by failing auth or reading in a loop. What is held back is
// counted and reported as one summary line per key ("suppressed K") when its window ends.
// Pure (time is passed in); runs in monkeyproof-api on the io_context thread; not thread-safe.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace mp::http {

struct AuditThrottleLimits {
  uint32_t lines_per_key = 10;  // lines per key per window
  uint32_t lines_total = 100;   // lines per window, all keys together
  std::chrono::seconds window{60};
  size_t max_keys = 4096;     // keys tracked per window; later keys count under kOtherKeys
  size_t max_summaries = 20;  // summary lines per window; the rest are folded into one
};

class AuditThrottle {
 public:
  using Clock = std::chrono::steady_clock;
  // The key a summary is given for keys beyond max_keys or max_summaries.
  static constexpr const char* kOtherKeys = "*";

  struct Suppressed {
    std::string key;
    uint64_t count = 0;  // lines held back for `key` in the window
  };

  explicit AuditThrottle(AuditThrottleLimits limits = {});

  // Whether one line under `key` may be written now; when not, it is counted for the summary.
  bool Admit(const std::string& key, Clock::time_point now);
  // The summaries of the window that ended by `now` (empty while it runs, or when nothing was
  // held back), at most max_summaries + 1 of them; the next window starts empty.
  std::vector<Suppressed> TakeSummaries(Clock::time_point now);
  // When the current window ends: the time a caller should come back for its summaries.
  [[nodiscard]] Clock::time_point window_end() const { return start_ + limits_.window; }
  [[nodiscard]] bool holding() const { return held_ > 0; }  // something to summarize
  [[nodiscard]] const AuditThrottleLimits& limits() const { return limits_; }

 private:
  struct Count {
    uint32_t written = 0;
    uint64_t held = 0;
  };
  void Roll(Clock::time_point now);

  AuditThrottleLimits limits_;
  Clock::time_point start_{};
  bool started_ = false;
  uint32_t written_ = 0;  // lines admitted in this window
  uint64_t held_ = 0;     // lines held back in this window
  std::unordered_map<std::string, Count> counts_;
  std::vector<Suppressed> ended_;  // the summaries of the last window, until taken
};

}  // namespace mp::http
