// Per-address admission of new connections to monkeyproof-api, decided at accept before a
// byte is read: at most `max_preauth` connections per address that have not yet sent an
// authenticated request, and new connections at most `rate_per_second` on average per
// address (a token bucket holding two seconds' worth). An address is an IPv4 address or an
// IPv6 /64 (what one host usually gets). The global `max_connections` stays the last resort.
// Runs in monkeyproof-api on the io_context thread; not thread-safe.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>

#include "http/client_address.h"

namespace mp::http {

class ConnectionLimits {
 public:
  using Clock = std::chrono::steady_clock;
  enum class Verdict { kAdmit, kTooManyOpen, kTooFast };

  // 0 turns the respective limit off. `max_tracked` bounds the addresses remembered; beyond
  // it, addresses with nothing open and a full bucket are forgotten first.
  ConnectionLimits(uint32_t max_preauth, uint32_t rate_per_second, size_t max_tracked = 65536);

  // The address's key: the IPv4 address, or the first 64 bits of an IPv6 address.
  static std::string KeyOf(const IpAddress& a);

  // A new connection from `key`. kAdmit counts it as pre-auth: call Release with the same key
  // exactly once later (when it authenticates, or closes before that).
  Verdict Open(const std::string& key, Clock::time_point now);
  // The connection sent an authenticated request, or went away before that.
  void Release(const std::string& key);

  [[nodiscard]] uint32_t preauth(const std::string& key) const;
  [[nodiscard]] size_t tracked() const { return entries_.size(); }

 private:
  struct Entry {
    uint32_t preauth = 0;
    double tokens = 0;
    Clock::time_point refilled;
  };
  void Refill(Entry& e, Clock::time_point now) const;
  void Prune(Clock::time_point now);

  uint32_t max_preauth_;
  uint32_t rate_;
  double burst_;
  size_t max_tracked_;
  std::unordered_map<std::string, Entry> entries_;
};

}  // namespace mp::http
