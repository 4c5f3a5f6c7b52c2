#include "http/connection_limits.h"

#include <algorithm>
#include <utility>

namespace mp::http {

ConnectionLimits::ConnectionLimits(uint32_t max_preauth, uint32_t rate_per_second, bool evict,
                                   size_t max_tracked, bool rate_on_loopback)
    : max_preauth_(max_preauth),
      rate_(rate_per_second),
      burst_(2.0 * rate_per_second),
      evict_(evict),
      max_tracked_(std::max<size_t>(max_tracked, 1)),
      rate_on_loopback_(rate_on_loopback) {}

std::string ConnectionLimits::KeyOf(const IpAddress& a) {
  // Every local process can pick any 127.x source address: counted apart, ten of them would
  // hold ten times the cap. (The failed-auth limiter keeps them apart: it never refuses a
  // valid credential, so sharing its budget would only let one local user spend another's.)
  static constexpr uint8_t kV6Loopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  if (!a.v6 && a.bytes[0] == 127) return std::string(kLoopbackKey);
  if (a.v6 && std::equal(a.bytes.begin(), a.bytes.end(), kV6Loopback)) {
    return std::string(kLoopbackKey);
  }
  return AddressKey(a);  // as the failed-auth limiter counts it
}

void ConnectionLimits::Refill(Entry& e, Clock::time_point now) const {
  if (rate_ == 0 || now <= e.refilled) return;
  const double seconds = std::chrono::duration<double>(now - e.refilled).count();
  e.tokens = std::min(burst_, e.tokens + seconds * rate_);
  e.refilled = now;
}

bool ConnectionLimits::Forgettable(const Entry& e) const {
  return e.open.empty() && (rate_ == 0 || e.tokens >= burst_);
}

void ConnectionLimits::Prune(Clock::time_point now) {
  // Forget what says nothing: no unauthenticated connection open and a bucket full again.
  for (auto it = entries_.begin(); it != entries_.end();) {
    Refill(it->second, now);
    it = Forgettable(it->second) ? entries_.erase(it) : std::next(it);
  }
  // Still full (a flood from many addresses): forget idle ones whatever their bucket says;
  // their next connection starts with a full bucket, which the global cap still bounds.
  for (auto it = entries_.begin(); it != entries_.end() && entries_.size() >= max_tracked_;) {
    it = it->second.open.empty() ? entries_.erase(it) : std::next(it);
  }
}

ConnectionLimits::Admission ConnectionLimits::Open(const std::string& key, Clock::time_point now,
                                                   Evictor evictor) {
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    if (entries_.size() >= max_tracked_) Prune(now);
    it = entries_.emplace(key, Entry{{}, burst_, now}).first;
  }
  Entry& e = it->second;
  // Not on loopback: a refusal there is before any credential, so a local user flooding from
  // any 127.x would refuse the operator's tunnel as well. What a local flood can do instead is
  // burn CPU, which it can anyway; the cap below bounds what it holds.
  const bool rated = rate_ != 0 && (rate_on_loopback_ || key != kLoopbackKey);
  if (rated) {
    Refill(e, now);
    if (e.tokens < 1.0) return {Verdict::kTooFast, 0};
  }
  if (max_preauth_ != 0 && e.open.size() >= max_preauth_) {
    if (!evict_) return {Verdict::kTooManyOpen, 0};
    // The oldest has had the longest to send its request; a client that sends promptly is
    // never the oldest for long. `e` stays valid: the entry still holds max_preauth_ - 1.
    while (e.open.size() >= max_preauth_) Evict(*e.open.begin());
  }
  if (rated) e.tokens -= 1.0;
  const Id id = next_id_++;
  conns_.emplace(id, Conn{key, std::move(evictor)});
  e.open.insert(id);
  return {Verdict::kAdmit, id};
}

ConnectionLimits::Id ConnectionLimits::Track(Evictor evictor) {
  const Id id = next_id_++;
  conns_.emplace(id, Conn{std::string(), std::move(evictor)});
  return id;
}

void ConnectionLimits::SetEvictor(Id id, Evictor evictor) {
  if (auto it = conns_.find(id); it != conns_.end()) it->second.evictor = std::move(evictor);
}

void ConnectionLimits::Release(Id id) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return;
  if (!it->second.key.empty()) {
    if (auto e = entries_.find(it->second.key); e != entries_.end()) {
      e->second.open.erase(id);
      // A full bucket and nothing open: nothing to remember.
      if (Forgettable(e->second)) entries_.erase(e);
    }
  }
  conns_.erase(it);
}

void ConnectionLimits::Evict(Id id) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return;
  Evictor evictor = std::move(it->second.evictor);
  // Out of the register first: the connection's own Release (when it goes) finds nothing.
  auto e = entries_.find(it->second.key);
  if (e != entries_.end()) e->second.open.erase(id);
  conns_.erase(it);
  ++evictions_;
  if (evictor) evictor();
}

bool ConnectionLimits::EvictOldest() {
  if (!evict_ || conns_.empty()) return false;
  Evict(conns_.begin()->first);
  return true;
}

uint32_t ConnectionLimits::preauth(const std::string& key) const {
  auto it = entries_.find(key);
  return it == entries_.end() ? 0 : static_cast<uint32_t>(it->second.open.size());
}

}  // namespace mp::http
