// The name rules both daemons and the policy loader check: preset (policy) names,
// environment variable names, session ids and principal labels, each defined once. Pure functions,
// thread-safe, no syscalls. The shapes are in docs/policies.md and docs/protocol.md.
#pragma once

#include <cstddef>
#include <string_view>

namespace mp::common {

// A preset is named by its policy file's stem: ^[a-z0-9][a-z0-9-]{0,63}$.
inline constexpr size_t kMaxPresetNameBytes = 64;
inline constexpr std::string_view kPresetNameShape = "^[a-z0-9][a-z0-9-]{0,63}$";
// The rule as error text says it: "\"X\" is not a preset name (^...$)".
inline constexpr std::string_view kPresetNameIs = "a preset name (^[a-z0-9][a-z0-9-]{0,63}$)";
bool IsPresetName(std::string_view name);

// An environment variable name, in a policy's env and request_env and in a request's env:
// ^[A-Za-z_][A-Za-z0-9_]{0,255}$. (The kernel sets no limit; 256 bytes is the protocol's.)
inline constexpr size_t kMaxEnvNameBytes = 256;
inline constexpr std::string_view kEnvNameShape = "^[A-Za-z_][A-Za-z0-9_]{0,255}$";
inline constexpr std::string_view kEnvNameIs =
    "an environment variable name (^[A-Za-z_][A-Za-z0-9_]{0,255}$)";
bool IsEnvName(std::string_view name);

// A session id: "s-" followed by 1..40 ASCII letters or digits.
inline constexpr size_t kMaxSessionIdChars = 40;  // after "s-"
inline constexpr std::string_view kSessionIdShape = "^s-[0-9A-Za-z]{1,40}$";
bool IsValidSessionId(std::string_view id);

// A principal label: who a control request acts for, as monkeyproof-api asserts it ("admin",
// "token:<id>", "cert:<subject>"; docs/api.md "Attribution"). Opaque to the supervisor, which
// records it in the audit log and a session's created_by: 1..200 bytes of printable ASCII
// (0x20..0x7e), neither starting nor ending with a space.
inline constexpr size_t kMaxPrincipalBytes = 200;
inline constexpr std::string_view kPrincipalIs =
    "a principal label (1..200 bytes of printable ASCII, no leading or trailing space)";
bool IsPrincipalLabel(std::string_view label);

// A workspace a scoped token may create sessions in (docs/api.md "Scoped tokens"), as the
// token carries it and a spawn's cwd_within names it: an absolute path of 2..4095 bytes
// without control characters, no empty, "." or ".." component and no trailing slash ("/"
// itself is refused: it would be no limit).
inline constexpr size_t kMaxWorkspacePathBytes = 4095;
inline constexpr size_t kMaxTokenWorkspaces = 16;
inline constexpr std::string_view kWorkspacePathIs =
    "a normalized absolute path (no empty, \".\" or \"..\" component, no trailing slash, no "
    "control characters, at most 4095 bytes, not \"/\")";
bool IsWorkspacePath(std::string_view path);

}  // namespace mp::common
