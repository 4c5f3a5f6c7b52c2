#include "supervisor/fd_store.h"

#include <cstdio>

namespace mp::supervisor {

Result<void> SessionFdStore::Store(const std::string& id,
                                   const std::vector<std::pair<sd::FdKind, int>>& fds) {
  for (const auto& [kind, fd] : fds) {
    if (fd < 0) continue;
    const std::string name = sd::FdName(id, kind);
    if (auto r = notifier_.StoreFd(name, fd); !r) return std::move(r).error().Wrap("fd store");
    stored_[id].insert(kind);
  }
  return Ok();
}

void SessionFdStore::Adopt(const std::string& id, const std::vector<sd::FdKind>& kinds) {
  for (const sd::FdKind kind : kinds) stored_[id].insert(kind);
}

void SessionFdStore::Remove(const std::string& id, sd::FdKind kind) {
  auto it = stored_.find(id);
  if (it == stored_.end() || it->second.erase(kind) == 0) return;
  if (it->second.empty()) stored_.erase(it);
  RemoveName(sd::FdName(id, kind));
}

void SessionFdStore::RemoveAll(const std::string& id) {
  auto it = stored_.find(id);
  if (it == stored_.end()) return;
  const std::set<sd::FdKind> kinds = std::move(it->second);
  stored_.erase(it);
  for (const sd::FdKind kind : kinds) RemoveName(sd::FdName(id, kind));
}

void SessionFdStore::RemoveName(const std::string& name) {
  // A failed removal leaves systemd a copy until the unit stops: a pipe or pidfd nobody reads,
  // not a process. Logged, not fatal.
  if (auto r = notifier_.RemoveFd(name); !r) {
    std::fprintf(stderr, "monkeyproofd: fd store: %s\n", r.error().ToString().c_str());
  }
}

size_t SessionFdStore::stored() const {
  size_t n = 0;
  for (const auto& [id, kinds] : stored_) n += kinds.size();
  return n;
}

}  // namespace mp::supervisor
