#include "http/connection_limits.h"

#include <algorithm>

namespace mp::http {

ConnectionLimits::ConnectionLimits(uint32_t max_preauth, uint32_t rate_per_second,
                                   size_t max_tracked)
    : max_preauth_(max_preauth),
      rate_(rate_per_second),
      burst_(2.0 * rate_per_second),
      max_tracked_(std::max<size_t>(max_tracked, 1)) {}

std::string ConnectionLimits::KeyOf(const IpAddress& a) {
  return AddressKey(a);  // shared with the failed-auth limiter
}

void ConnectionLimits::Refill(Entry& e, Clock::time_point now) const {
  if (rate_ == 0 || now <= e.refilled) return;
  const double seconds = std::chrono::duration<double>(now - e.refilled).count();
  e.tokens = std::min(burst_, e.tokens + seconds * rate_);
  e.refilled = now;
}

void ConnectionLimits::Prune(Clock::time_point now) {
  // Forget what says nothing: no pre-auth connection open and a bucket that is full again.
  for (auto it = entries_.begin(); it != entries_.end();) {
    Refill(it->second, now);
    if (it->second.preauth == 0 && (rate_ == 0 || it->second.tokens >= burst_)) {
      it = entries_.erase(it);
    } else {
      ++it;
    }
  }
  // Still full (a flood from many addresses): forget idle ones whatever their bucket says;
  // their next connection starts with a full bucket, which the global cap still bounds.
  for (auto it = entries_.begin(); it != entries_.end() && entries_.size() >= max_tracked_;) {
    it = it->second.preauth == 0 ? entries_.erase(it) : std::next(it);
  }
}

ConnectionLimits::Verdict ConnectionLimits::Open(const std::string& key, Clock::time_point now) {
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    if (entries_.size() >= max_tracked_) Prune(now);
    it = entries_.emplace(key, Entry{0, burst_, now}).first;
  }
  Entry& e = it->second;
  if (max_preauth_ != 0 && e.preauth >= max_preauth_) return Verdict::kTooManyOpen;
  if (rate_ != 0) {
    Refill(e, now);
    if (e.tokens < 1.0) return Verdict::kTooFast;
    e.tokens -= 1.0;
  }
  ++e.preauth;
  return Verdict::kAdmit;
}

void ConnectionLimits::Release(const std::string& key) {
  auto it = entries_.find(key);
  if (it == entries_.end() || it->second.preauth == 0) return;
  --it->second.preauth;
  // A full bucket and nothing open: nothing to remember.
  if (it->second.preauth == 0 && (rate_ == 0 || it->second.tokens >= burst_)) entries_.erase(it);
}

uint32_t ConnectionLimits::preauth(const std::string& key) const {
  auto it = entries_.find(key);
  return it == entries_.end() ? 0 : it->second.preauth;
}

}  // namespace mp::http
