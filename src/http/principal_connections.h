// The connections each principal holds (docs/api.md "Scoped tokens"): the WebSockets a scoped
// token opened, by token id, so that revoking the token closes them at once (token_routes.cc).
// A WebSocket registers when it starts and unregisters when it is destroyed; the registry
// holds weak references only. Runs in monkeyproof-api on the io_context thread; not
// thread-safe. No Asio here: the sockets are seen through TokenBoundSocket.
#pragma once

#include <cstddef>
#include <memory>
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
  std::unordered_multimap<std::string, Entry> sockets_;
};

}  // namespace mp::http
