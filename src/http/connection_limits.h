// Admission of new connections to monkeyproof-api, decided at accept before a byte is read, and
// the register of connections that have not authenticated yet (none of their requests has
// carried a valid credential). Per address: at most `max_preauth` such connections, and new
// connections at most `rate_per_second` on average (a token bucket holding two seconds' worth).
// An address is an IPv4 address, an IPv6 /64 (what one host usually gets), or loopback as a
// whole (127.0.0.0/8 and ::1: one host, whatever source address a local process picks).
// Loopback has no accept rate: it is one key for every local user, the operator's SSH tunnel
// and local proxy included, so a rate on it would let any local process spend the operator's
// new connections (review 3, NEW-1); its cap, with eviction, still bounds what it holds open.
// When a cap is full, the oldest unauthenticated connection (of the address, or of all for the
// global max_connections) is evicted to admit the new one, so that idle connections cannot
// starve a client that sends its request promptly; authenticated connections are never evicted.
// Runs in monkeyproof-api on the io_context thread; not thread-safe.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>

#include "http/client_address.h"

namespace mp::http {

class ConnectionLimits {
 public:
  using Clock = std::chrono::steady_clock;
  enum class Verdict { kAdmit, kTooManyOpen, kTooFast };
  // Closes the connection at once (called on eviction; it must not call back into this object).
  using Evictor = std::function<void()>;
  // A connection's entry in the register; 0 = none.
  using Id = uint64_t;

  struct Admission {
    Verdict verdict = Verdict::kAdmit;
    Id id = 0;  // kAdmit: the connection's entry; Release it once it authenticates or closes
  };

  // 0 turns the respective limit off. `evict`: a full cap evicts the oldest unauthenticated
  // connection (false: the new one is refused, kTooManyOpen). `max_tracked` bounds the addresses
  // remembered; beyond it, addresses with nothing open and a full bucket are forgotten first.
  // `rate_on_loopback`: the accept rate applies to loopback too (the behaviour before NEW-1's
  // fix; tests use it as their control, nothing else should).
  ConnectionLimits(uint32_t max_preauth, uint32_t rate_per_second, bool evict = true,
                   size_t max_tracked = 65536, bool rate_on_loopback = false);

  // KeyOf's key of 127.0.0.0/8 and ::1.
  static constexpr std::string_view kLoopbackKey = "loopback";

  // The address's key: "loopback" for 127.0.0.0/8 and ::1, the IPv4 address, or the first 64
  // bits of an IPv6 address.
  static std::string KeyOf(const IpAddress& a);

  // A new connection from `key`, closed by `evictor` if it is evicted before it authenticates.
  // The rate is checked first (a refused connection evicts nobody; loopback has none unless
  // `rate_on_loopback`), then the cap.
  Admission Open(const std::string& key, Clock::time_point now, Evictor evictor = {});
  // A new connection exempt from the per-address limits (a trusted proxy, an unknown peer): in
  // the register all the same, evictable at the global cap. Returns its entry.
  Id Track(Evictor evictor);
  // The connection is handed to another object, which closes it from now on.
  void SetEvictor(Id id, Evictor evictor);
  // The connection authenticated, or went away before that (also after its eviction: no-op).
  void Release(Id id);
  // At the global cap (max_connections): evicts the oldest unauthenticated connection, from any
  // address. false: there is none (every open connection has authenticated), or eviction is off.
  bool EvictOldest();

  [[nodiscard]] uint32_t preauth(const std::string& key) const;
  [[nodiscard]] size_t unauthenticated() const { return conns_.size(); }
  [[nodiscard]] size_t tracked() const { return entries_.size(); }
  [[nodiscard]] uint64_t evictions() const { return evictions_; }
  [[nodiscard]] bool evicts() const { return evict_; }

 private:
  struct Entry {
    std::set<Id> open;  // its unauthenticated connections, oldest first
    double tokens = 0;
    Clock::time_point refilled;
  };
  struct Conn {
    std::string key;  // empty: exempt from the per-address limits
    Evictor evictor;
  };
  void Refill(Entry& e, Clock::time_point now) const;
  void Prune(Clock::time_point now);
  [[nodiscard]] bool Forgettable(const Entry& e) const;
  void Evict(Id id);

  uint32_t max_preauth_;
  uint32_t rate_;
  double burst_;
  bool evict_;
  size_t max_tracked_;
  bool rate_on_loopback_;
  Id next_id_ = 1;
  uint64_t evictions_ = 0;
  std::unordered_map<std::string, Entry> entries_;
  std::map<Id, Conn> conns_;  // every unauthenticated connection; ids grow: oldest first
};

}  // namespace mp::http
