// Named syscall groups ("@mount", "@debug", …) with a help line each: the vocabulary of the
// seccomp profiles in policies/*.json, in the spirit of systemd's SystemCallFilter= sets.
// Runs in the supervisor (policy loading, filter compilation) and in tools that print
// the groups; never in the child. The table is immutable static data; every function here
// is thread-safe. Names resolve for the architecture the filter targets (the native one).
#pragma once

#include <span>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace mp::sandbox {

struct SyscallGroup {
  std::string_view name;  // "@mount": always starts with '@'
  std::string_view help;  // one line for humans: what the group is and why one denies it
  // Syscall names as libseccomp spells them. A group may name syscalls that exist only on
  // other architectures (e.g. "vm86" is i386-only); those resolve to nothing here.
  std::span<const std::string_view> syscalls;
};

// Every group, "@default" first, the rest sorted by name.
std::span<const SyscallGroup> SyscallGroups();

// The group called `name` (with its '@'), or nullptr.
const SyscallGroup* FindSyscallGroup(std::string_view name);

// Expands one profile entry to native syscall numbers, sorted and without duplicates.
//   "@group"  -> the numbers of its members that exist on this architecture;
//   "name"    -> its number, or an empty vector when the syscall exists only on other
//                architectures (a portable policy may name it).
// An unknown group, or a name libseccomp does not know on any architecture, is an Error
// that names it, e.g. `unknown syscall "mout"`.
Result<std::vector<int>> ResolveSyscallEntry(std::string_view entry);

}  // namespace mp::sandbox
