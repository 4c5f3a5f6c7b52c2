#include "supervisor/sd_notify.h"

#include "common/names.h"

namespace mp::supervisor::sd {
namespace {

constexpr FdKind kKinds[] = {FdKind::kPidfd, FdKind::kStatus, FdKind::kIn,    FdKind::kOut,
                             FdKind::kErr,   FdKind::kPty,    FdKind::kStage, FdKind::kPtyQueue};

}  // namespace

std::string_view ToString(FdKind kind) {
  switch (kind) {
    case FdKind::kPidfd:
      return "pidfd";
    case FdKind::kStatus:
      return "status";
    case FdKind::kIn:
      return "in";
    case FdKind::kOut:
      return "out";
    case FdKind::kErr:
      return "err";
    case FdKind::kPty:
      return "pty";
    case FdKind::kStage:
      return "stage";
    case FdKind::kPtyQueue:
      return "ptyq";
  }
  return "?";
}

std::string FdName(std::string_view session_id, FdKind kind) {
  std::string name(session_id);
  name += '.';
  name += ToString(kind);
  return name;
}

std::optional<ParsedFdName> ParseFdName(std::string_view name) {
  const size_t dot = name.rfind('.');
  if (dot == std::string_view::npos) return std::nullopt;
  const std::string_view id = name.substr(0, dot);
  const std::string_view kind = name.substr(dot + 1);
  if (!common::IsValidSessionId(id)) return std::nullopt;
  for (const FdKind k : kKinds) {
    if (kind == ToString(k)) return ParsedFdName{std::string(id), k};
  }
  return std::nullopt;
}

}  // namespace mp::supervisor::sd
