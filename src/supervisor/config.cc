#include "supervisor/config.h"

#include <charconv>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace mp::supervisor {
namespace {

std::string Trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  const size_t e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

bool ParseU64(const std::string& s, uint64_t* out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return !s.empty() && ec == std::errc() && p == s.data() + s.size();
}

Result<void> ApplyNumberEnv(const char* name, uint64_t* field) {
  const char* v = std::getenv(name);
  if (v == nullptr) return Ok();
  if (!ParseU64(v, field)) {
    return PlainError(std::string("environment ") + name + "=\"" + v + "\" is not a number");
  }
  return Ok();
}

}  // namespace

Result<SupervisorConfig> ParseConfig(const std::string& name, const std::string& text) {
  SupervisorConfig c;
  std::istringstream in(text);
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    const std::string t = Trim(line);
    if (t.empty() || t[0] == '#') continue;
    const size_t eq = t.find('=');
    const std::string where = name + ":" + std::to_string(lineno);
    if (eq == std::string::npos) return PlainError(where + ": expected key = value");
    const std::string key = Trim(t.substr(0, eq));
    const std::string value = Trim(t.substr(eq + 1));
    struct Str {
      const char* key;
      std::string* field;
    };
    struct Num {
      const char* key;
      uint64_t* field;
    };
    const Str strings[] = {{"socket_path", &c.socket_path},
                           {"api_user", &c.api_user},
                           {"state_dir", &c.state_dir},
                           {"policies_dir", &c.policies_dir},
                           {"credentials_dir", &c.credentials_dir},
                           {"cgroup_root", &c.cgroup_root},
                           {"audit_log", &c.audit_log}};
    const Num numbers[] = {{"max_sessions", &c.max_sessions},
                           {"max_ended_sessions", &c.max_ended_sessions},
                           {"max_ended_output_bytes", &c.max_ended_output_bytes},
                           {"session_ttl_ms", &c.session_ttl_ms},
                           {"interactive_session_ttl_ms", &c.interactive_session_ttl_ms},
                           {"kill_grace_ms", &c.kill_grace_ms}};
    bool known = false;
    for (const auto& s : strings) {
      if (key == s.key) {
        *s.field = value;
        known = true;
      }
    }
    for (const auto& n : numbers) {
      if (key == n.key) {
        if (!ParseU64(value, n.field)) {
          return PlainError(where + ": " + key + " = \"" + value + "\" is not a number");
        }
        known = true;
      }
    }
    if (!known) return PlainError(where + ": unknown key \"" + key + "\"");
  }
  for (const std::string* path :
       {&c.socket_path, &c.state_dir, &c.policies_dir, &c.credentials_dir}) {
    if (path->empty() || (*path)[0] != '/') {
      return PlainError(name + ": \"" + *path + "\" is not an absolute path");
    }
  }
  if (c.max_sessions == 0) return PlainError(name + ": max_sessions must be at least 1");
  return c;
}

Result<SupervisorConfig> LoadConfig(const std::string& path, bool optional) {
  std::ifstream f(path);
  std::string text;
  if (f) {
    std::stringstream ss;
    ss << f.rdbuf();
    text = ss.str();
  } else if (!optional) {
    return ErrnoError("open(config \"" + path + "\")");
  }
  MP_TRY(SupervisorConfig c, ParseConfig(path, text));
  MP_RETURN_IF_ERROR(ApplyNumberEnv("MAX_SESSIONS", &c.max_sessions));
  MP_RETURN_IF_ERROR(ApplyNumberEnv("SESSION_TTL_MS", &c.session_ttl_ms));
  MP_RETURN_IF_ERROR(ApplyNumberEnv("INTERACTIVE_SESSION_TTL_MS", &c.interactive_session_ttl_ms));
  return c;
}

}  // namespace mp::supervisor
