// The connections each principal holds (docs/api.md "Scoped tokens", docs/deploy.md): how many
// HTTP keep-alive connections and WebSockets each principal with a scope holds (a scoped token,
// a certificate mapped to a scope), against max_connections_per_principal, so that one such
// principal cannot hold every connection slot (admin tokens and admin certificates are exempt:
// max_connections bounds them); and the WebSockets a scoped token opened, by token id, so that
// revoking the token closes them at once (token_routes.cc). A WebSocket registers when it
// starts and unregisters when it is destroyed; the registry holds weak references only. Runs
// in monkeyproof-api on the io_context thread; not thread-safe. No Asio here: the sockets are
// seen through TokenBoundSocket.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace mp::http {

// A connection that lives only as long as the token that opened it.
class TokenBoundSocket {
 public:
  virtual ~TokenBoundSocket() = default;
  // The token is revoked or expired: tell the client `reason` and close.
  virtual void EndForToken(std::string_view reason) = 0;
};

class PrincipalConnections {
 public:
  // `max_per_principal`: connections one principal may hold at once; 0: no cap.
  explicit PrincipalConnections(uint32_t max_per_principal = 0) : max_(max_per_principal) {}
  PrincipalConnections(const PrincipalConnections&) = delete;
  PrincipalConnections& operator=(const PrincipalConnections&) = delete;

  // One connection counted for a principal; gives its count back when destroyed or reset.
  // Move-only. Must not outlive the PrincipalConnections (connections hold the ApiContext).
  class Slot {
   public:
    Slot() = default;
    Slot(Slot&& other) noexcept
        : owner_(std::exchange(other.owner_, nullptr)), key_(std::move(other.key_)) {}
    Slot& operator=(Slot&& other) noexcept;
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    ~Slot() { Reset(); }
    void Reset();
    [[nodiscard]] bool held() const { return owner_ != nullptr; }
    [[nodiscard]] const std::string& key() const { return key_; }

   private:
    friend class PrincipalConnections;
    Slot(PrincipalConnections* owner, std::string key) : owner_(owner), key_(std::move(key)) {}
    PrincipalConnections* owner_ = nullptr;
    std::string key_;
  };

  // Counts one more connection of principal `key` (Principal::ToString()); nullopt when it
  // holds max_per_principal already.
  std::optional<Slot> Take(const std::string& key);
  [[nodiscard]] uint32_t held(const std::string& key) const;
  [[nodiscard]] uint32_t max() const { return max_; }

  // Registers `socket`, opened with the scoped token `token_id`.
  void AddSocket(const std::string& token_id, const std::shared_ptr<TokenBoundSocket>& socket);
  // Forgets `socket` (its destructor calls this; the weak reference has expired by then).
  void RemoveSocket(const std::string& token_id, const TokenBoundSocket* socket);
  // Ends every socket of `token_id` with `reason`; returns how many.
  size_t EndToken(const std::string& token_id, std::string_view reason);
  // Sockets registered for `token_id` (for tests and metrics).
  [[nodiscard]] size_t sockets(const std::string& token_id) const;

 private:
  using Entry = std::pair<const TokenBoundSocket*, std::weak_ptr<TokenBoundSocket>>;
  void Give(const std::string& key);
  uint32_t max_;
  std::unordered_map<std::string, uint32_t> held_;  // principals holding one or more
  std::unordered_multimap<std::string, Entry> sockets_;
};

}  // namespace mp::http
