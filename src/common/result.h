// Result<T> and Error: the error regime of the supervisor and the API.
// An Error carries the errno (0 when none applies), a message naming the
// operation and its object, e.g. `openat(cgroup "mp-s-42", "memory.max")`,
// and a typed code saying whose fault it is (the control protocol's error
// codes). Callers add context as the error travels up with Wrap(), which
// keeps errnum and code. Shaped like
// std::expected (GCC 12 has it only under -std=c++23). Not thread-safe per
// object; plain value types.
#pragma once

#include <array>
#include <cerrno>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace mp {

// Whose fault an error is: the `code` of the control protocol's error bodies, which the API
// maps to HTTP statuses (docs/protocol.md). Strings in kErrorCodeNames, indexed by value.
enum class ErrorCode {
  kBadRequest,           // the request is malformed or out of range
  kNotFound,             // no such session or preset
  kWrongState,           // the session cannot do that now (ended, no terminal, stdin closed)
  kCapacity,             // too many sessions or too much queued input
  kPolicyViolation,      // the request asks for more than the policy allows
  kInternal,             // the host failed (a syscall, a corrupt record)
  kUnavailable,          // the API cannot reach the supervisor
  kTooLarge,             // a value over a size the host cannot carry (a task over one argument)
  kHostSetup,            // the host lacks what a policy needs (a user, a state dir, an agent CLI)
  kInsufficientStorage,  // the state directory's file system is full or over its quota
};
inline constexpr std::array<std::string_view, 10> kErrorCodeNames = {
    "bad_request", "not_found",   "wrong_state", "capacity",   "policy_violation",
    "internal",    "unavailable", "too_large",   "host_setup", "insufficient_storage"};
std::string_view ToString(ErrorCode code);

struct Error {
  int errnum = 0;                         // errno value, or 0 when the failure is not a syscall's
  std::string what;                       // what was attempted, outermost context first
  ErrorCode code = ErrorCode::kInternal;  // kept by Wrap()
  // JSON pointer of the request field at fault (the control protocol's error `field`, e.g.
  // "/cwd"); empty when none is. Kept by Wrap().
  std::string field;

  // Prefixes context: Error{ENOENT,"open x"}.Wrap("spawn s-1") -> "spawn s-1: open x".
  [[nodiscard]] Error Wrap(std::string_view context) const&;
  [[nodiscard]] Error Wrap(std::string_view context) &&;
  // "what: ENOENT (No such file or directory)", or just "what" when errnum == 0.
  [[nodiscard]] std::string ToString() const;
  // Names the request field at fault: CodedError(kBadRequest, "cwd ...").At("/cwd").
  [[nodiscard]] Error At(std::string pointer) &&;
};

// Builds an Error from the current errno. Call it right after the failing call.
[[nodiscard]] Error ErrnoError(std::string what);
[[nodiscard]] Error ErrnoError(int errnum, std::string what);
// An Error that is not about a syscall (bad input, violated invariant).
[[nodiscard]] Error PlainError(std::string what);
// An Error that a request caused, e.g. CodedError(ErrorCode::kPolicyViolation, "cwd ...").
[[nodiscard]] Error CodedError(ErrorCode code, std::string what, int errnum = 0);

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit by design
  Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT

  [[nodiscard]] bool has_value() const { return v_.index() == 0; }
  explicit operator bool() const { return has_value(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const& { return std::get<1>(v_); }
  Error&& error() && { return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT

  [[nodiscard]] bool has_value() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const& { return error_; }
  Error&& error() && { return std::move(error_); }

 private:
  Error error_;
  bool ok_ = true;
};

inline Result<void> Ok() { return {}; }

}  // namespace mp

#define MP_CONCAT_INNER_(a, b) a##b
#define MP_CONCAT_(a, b) MP_CONCAT_INNER_(a, b)

// MP_TRY(auto fd, OpenSomething());   declares/assigns lhs or returns the Error.
// `lhs` may be a declaration, so it cannot be parenthesised; `tmp` is a name.
// NOLINTBEGIN(bugprone-macro-parentheses)
#define MP_TRY(lhs, expr) MP_TRY_IMPL_(MP_CONCAT_(mp_try_result_, __LINE__), lhs, expr)
#define MP_TRY_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                 \
  if (!tmp.has_value()) {            \
    return std::move(tmp).error();   \
  }                                  \
  lhs = std::move(tmp).value()
// NOLINTEND(bugprone-macro-parentheses)

// MP_RETURN_IF_ERROR(WriteFile(...));   for Result<void> (or any Result whose value is unused).
#define MP_RETURN_IF_ERROR(expr)                \
  do {                                          \
    auto mp_rie_result_ = (expr);               \
    if (!mp_rie_result_.has_value()) {          \
      return std::move(mp_rie_result_).error(); \
    }                                           \
  } while (false)
