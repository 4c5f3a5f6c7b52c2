#include "supervisor/host_setup.h"

#include <sys/stat.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <map>
#include <memory>

#include "sandbox/mounts.h"
#include "supervisor/policy_internal.h"

namespace mp::supervisor {

using internal::Quote;

namespace {

constexpr char kSetupDoc[] = "docs/policies.md, \"Installing the agents and their credentials\"";

bool Contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// The PATH the command is looked up in, as BuildSpawnRequest sets it; nullopt when a request
// may set its own (then only the session knows).
std::optional<std::string> PolicyPath(const Policy& p, const SpawnHost& host) {
  if (Contains(p.request_env_allow, "PATH")) return std::nullopt;
  if (auto it = p.env.set.find("PATH"); it != p.env.set.end()) return it->second;
  if (Contains(p.env.pass, "PATH") && host.getenv) return host.getenv("PATH").value_or("");
  return std::string();
}

std::optional<HostSetupProblem> CommandProblem(const Policy& p, const SpawnHost& host) {
  if (p.command.empty() || !host.is_executable) return std::nullopt;
  const std::string& command = p.command.front();
  const std::optional<std::string> path = PolicyPath(p, host);
  if (!path) return std::nullopt;
  std::vector<std::string> candidates;
  if (command.find('/') != std::string::npos) {
    candidates.push_back(command);
  } else {
    size_t start = 0;
    while (start <= path->size()) {
      size_t end = path->find(':', start);
      if (end == std::string::npos) end = path->size();
      if (end > start) candidates.push_back(path->substr(start, end - start) + "/" + command);
      start = end + 1;
    }
  }
  const std::vector<std::string> hidden = p.HiddenPaths();
  for (const auto& c : candidates) {
    // A policy mount may bring the command into the sandbox from elsewhere: the host's view
    // cannot tell, so the session will.
    for (const auto& m : p.mounts) {
      if (sandbox::PathIsWithin(c, m.target)) return std::nullopt;
    }
    const bool is_hidden = std::any_of(hidden.begin(), hidden.end(),
                                       [&](const auto& h) { return sandbox::PathIsWithin(c, h); });
    if (!is_hidden && host.is_executable(c)) return std::nullopt;
  }
  const std::string where = command.find('/') != std::string::npos
                                ? "(no executable file there)"
                                : "(not found in the policy's PATH " + Quote(*path) + ")";
  return HostSetupProblem{"the command " + Quote(command) + " is not installed " + where,
                          "install it on the host (" + std::string(kSetupDoc) + ")"};
}

}  // namespace

std::vector<HostSetupProblem> FindHostSetupProblems(const Policy& p, const SpawnHost& host) {
  std::vector<HostSetupProblem> out;
  const std::string& user = p.run_as.user;
  const std::optional<UserIds> ids = host.lookup_user ? host.lookup_user(user) : std::nullopt;
  if (!ids) {
    out.push_back({"the user " + Quote(user) + " (run_as.user) does not exist",
                   "create it with `useradd --system --user-group --no-create-home "
                   "--home-dir /nonexistent --shell /usr/sbin/nologin " +
                       user + "` (the package creates monkeyproof-session)"});
  }
  std::string group = p.run_as.group;
  if (!group.empty()) {
    if (!host.lookup_group || !host.lookup_group(group)) {
      out.push_back({"the group " + Quote(group) + " (run_as.group) does not exist",
                     "create it with `groupadd --system " + group + "`"});
    }
  } else {
    // The user's primary group: the one the useradd above creates, or the existing one.
    group = ids ? std::to_string(ids->gid) : user;
  }
  for (const auto& dir : p.state_dirs) {
    const std::string create =
        "create it with `install -d -o " + user + " -g " + group + " -m 0700 " + dir + "`";
    // As the sandbox binds it: a real directory, reached without a symlink.
    std::unique_ptr<char, decltype(&std::free)> real(::realpath(dir.c_str(), nullptr), &std::free);
    struct stat st {};
    if (!real) {
      out.push_back({"the state dir " + Quote(dir) + " does not exist", create});
    } else if (dir != real.get() || ::stat(real.get(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      out.push_back(
          {"the state dir " + Quote(dir) + " is not a directory reached without a symlink",
           "remove what is there, then " + create});
    }
  }
  if (auto command = CommandProblem(p, host)) out.push_back(std::move(*command));
  return out;
}

Result<void> CheckHostSetup(const Policy& policy, const SpawnHost& host) {
  const std::vector<HostSetupProblem> problems = FindHostSetupProblems(policy, host);
  if (problems.empty()) return Ok();
  std::string what = "policy " + Quote(policy.name) + " cannot run on this host yet: ";
  for (size_t i = 0; i < problems.size(); ++i) {
    what += (i == 0 ? "" : "; ") + problems[i].what + ": " + problems[i].remedy;
  }
  return CodedError(ErrorCode::kHostSetup, what + " (" + kSetupDoc + ")");
}

std::string DescribeUnreadyPolicies(const PolicySet& policies, const SpawnHost& host) {
  // Each problem once, with the policies it blocks, in the order first found.
  std::vector<HostSetupProblem> order;
  std::map<std::string, std::vector<std::string>> blocked;  // problem's `what` -> policies
  size_t unready = 0;
  for (const auto& [name, policy] : policies.all()) {
    const auto problems = FindHostSetupProblems(*policy, host);
    unready += problems.empty() ? 0 : 1;
    for (const auto& problem : problems) {
      auto& names = blocked[problem.what];
      if (names.empty()) order.push_back(problem);
      names.push_back(name);
    }
  }
  if (unready == 0) return "";
  std::string out = std::to_string(unready) + " of " + std::to_string(policies.all().size()) +
                    " presets cannot run on this host yet; a session under one answers 500 "
                    "host_setup naming what to do (" +
                    kSetupDoc + "):\n";
  for (const auto& problem : order) {
    std::string names;
    for (const auto& n : blocked[problem.what]) names += (names.empty() ? "" : ", ") + n;
    out += "  " + problem.what + " (" + names + "): " + problem.remedy + "\n";
  }
  return out;
}

}  // namespace mp::supervisor
