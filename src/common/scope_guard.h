// ScopeGuard: runs a callable when the scope ends unless Dismiss()ed.
// For one-off cleanups that have no owner type of their own. Any process.
#pragma once

#include <utility>

namespace mp {

template <typename F>
class [[nodiscard]] ScopeGuard {
 public:
  explicit ScopeGuard(F f) : f_(std::move(f)) {}
  // Cleanups must not throw; a throwing one ends the process (noexcept).
  ~ScopeGuard() noexcept {  // NOLINT(bugprone-exception-escape): terminate is the intent
    if (active_) f_();
  }
  ScopeGuard(const ScopeGuard&) = delete;
  ScopeGuard& operator=(const ScopeGuard&) = delete;
  void Dismiss() { active_ = false; }

 private:
  F f_;
  bool active_ = true;
};

}  // namespace mp
