#include "http/principal_connections.h"

#include <vector>

namespace mp::http {

void PrincipalConnections::AddSocket(const std::string& token_id,
                                     const std::shared_ptr<TokenBoundSocket>& socket) {
  sockets_.emplace(token_id, Entry{socket.get(), socket});
}

void PrincipalConnections::RemoveSocket(const std::string& token_id,
                                        const TokenBoundSocket* socket) {
  auto [it, end] = sockets_.equal_range(token_id);
  while (it != end) {
    it = it->second.first == socket ? sockets_.erase(it) : std::next(it);
  }
}

size_t PrincipalConnections::EndToken(const std::string& token_id, std::string_view reason) {
  // Hold them first: ending one may drop its last other reference, and its destructor edits
  // the map (RemoveSocket) only once `live` goes, after the loop.
  std::vector<std::shared_ptr<TokenBoundSocket>> live;
  auto [it, end] = sockets_.equal_range(token_id);
  for (; it != end; ++it) {
    if (auto s = it->second.second.lock()) live.push_back(std::move(s));
  }
  for (const auto& s : live) s->EndForToken(reason);
  return live.size();
}

PrincipalConnections::Slot& PrincipalConnections::Slot::operator=(Slot&& other) noexcept {
  if (this != &other) {
    Reset();
    owner_ = std::exchange(other.owner_, nullptr);
    key_ = std::move(other.key_);
  }
  return *this;
}

void PrincipalConnections::Slot::Reset() {
  if (owner_ != nullptr) std::exchange(owner_, nullptr)->Give(key_);
  key_.clear();
}

std::optional<PrincipalConnections::Slot> PrincipalConnections::Take(const std::string& key) {
  uint32_t& n = held_[key];
  if (max_ != 0 && n >= max_) return std::nullopt;
  ++n;
  return Slot(this, key);
}

void PrincipalConnections::Give(const std::string& key) {
  auto it = held_.find(key);
  if (it == held_.end()) return;
  if (--it->second == 0) held_.erase(it);
}

uint32_t PrincipalConnections::held(const std::string& key) const {
  auto it = held_.find(key);
  return it == held_.end() ? 0 : it->second;
}

size_t PrincipalConnections::sockets(const std::string& token_id) const {
  return sockets_.count(token_id);
}

}  // namespace mp::http
