#include "http/audit_throttle.h"

#include <algorithm>
#include <utility>

namespace mp::http {

AuditThrottle::AuditThrottle(AuditThrottleLimits limits) : limits_(limits) {}

void AuditThrottle::Roll(Clock::time_point now) {
  if (!started_) {
    started_ = true;
    start_ = now;
    return;
  }
  if (now < start_ + limits_.window) return;
  if (held_ > 0) {
    std::vector<Suppressed> all;
    for (auto& [key, count] : counts_) {
      if (count.held > 0) all.push_back({key, count.held});
    }
    // The largest first, so that the folded rest is the small change; ties by key, so that
    // the order does not depend on the hash map's.
    std::sort(all.begin(), all.end(), [](const Suppressed& a, const Suppressed& b) {
      return a.count != b.count ? a.count > b.count : a.key < b.key;
    });
    uint64_t other = 0;
    for (auto& s : all) {
      if (ended_.size() < limits_.max_summaries && s.key != kOtherKeys) {
        ended_.push_back(std::move(s));
      } else {
        other += s.count;
      }
    }
    if (other > 0) ended_.push_back({kOtherKeys, other});
  }
  counts_.clear();
  written_ = 0;
  held_ = 0;
  // Windows are aligned to the first one: a quiet stretch skips whole windows.
  const auto periods = (now - start_) / limits_.window;
  start_ += periods * limits_.window;
}

bool AuditThrottle::Admit(const std::string& key, Clock::time_point now) {
  Roll(now);
  auto it = counts_.find(key);
  if (it == counts_.end()) {
    // Beyond max_keys every new key shares one count: memory stays bounded whatever the
    // number of addresses an attacker has.
    const std::string& slot = counts_.size() < limits_.max_keys ? key : std::string(kOtherKeys);
    it = counts_.try_emplace(slot).first;
  }
  Count& c = it->second;
  if (c.written < limits_.lines_per_key && written_ < limits_.lines_total) {
    ++c.written;
    ++written_;
    return true;
  }
  ++c.held;
  ++held_;
  return false;
}

std::vector<AuditThrottle::Suppressed> AuditThrottle::TakeSummaries(Clock::time_point now) {
  Roll(now);
  return std::exchange(ended_, {});
}

}  // namespace mp::http
