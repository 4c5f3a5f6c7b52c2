#include "supervisor/config.h"

#include <cstdlib>
#include <string_view>

#include "common/kv_config.h"

namespace mp::supervisor {
namespace {

Result<void> ApplyNumberEnv(const char* name, uint64_t* field) {
  const char* v = std::getenv(name);
  if (v == nullptr) return Ok();
  const std::optional<uint64_t> n = common::ParseKvNumber(v);
  if (!n) {
    return PlainError(std::string("environment ") + name + "=\"" + v + "\" is not a number");
  }
  *field = *n;
  return Ok();
}

Result<void> ParseSessionsMemoryMax(std::string_view v, SessionsMemoryMax* out) {
  const auto bad = [] {
    return PlainError(
        "expected a share of RAM such as 75%, a size such as 8G (at least 64M), "
        "or max");
  };
  *out = {};
  if (v == "max") return Ok();
  if (!v.empty() && v.back() == '%') {
    const std::optional<uint64_t> n = common::ParseKvNumber(v.substr(0, v.size() - 1));
    if (!n || *n < 1 || *n > 100) return PlainError("a share of RAM must be 1% to 100%");
    out->percent = *n;
    return Ok();
  }
  const std::optional<uint64_t> n = common::ParseKvSize(v);
  if (!n || *n < kMinSessionsMemoryMaxBytes) return bad();
  out->bytes = *n;
  return Ok();
}

}  // namespace

std::optional<uint64_t> SessionsMemoryMax::Bytes(uint64_t mem_total) const {
  if (bytes) return *bytes;
  if (percent) return mem_total / 100 * *percent;
  return std::nullopt;
}

std::string SessionsMemoryMax::Text() const {
  if (bytes) return common::SizeText(*bytes);
  if (percent) return std::to_string(*percent) + "%";
  return "max";
}

Result<SupervisorConfig> ParseConfig(const std::string& name, const std::string& text) {
  SupervisorConfig c;
  common::KvSchema schema;
  schema.Path("socket_path", &c.socket_path)
      .String("api_user", &c.api_user)
      .Path("state_dir", &c.state_dir)
      .Path("policies_dir", &c.policies_dir)
      .Path("credentials_dir", &c.credentials_dir)
      .String("cgroup_root", &c.cgroup_root)
      .String("audit_log", &c.audit_log)
      .Number("max_sessions", &c.max_sessions, 1)
      .Number("max_ended_sessions", &c.max_ended_sessions)
      .Size("max_ended_output_bytes", &c.max_ended_output_bytes)
      .Number("session_ttl_ms", &c.session_ttl_ms)
      .Number("interactive_session_ttl_ms", &c.interactive_session_ttl_ms)
      .Number("kill_grace_ms", &c.kill_grace_ms)
      .Number("spawn_timeout_ms", &c.spawn_timeout_ms, 1)
      .Path("egress_socket", &c.egress_socket)
      .Custom("fd_store",
              [&c](std::string_view v) -> Result<void> {
                if (v == "auto") {
                  c.fd_store = FdStoreMode::kAuto;
                } else if (v == "off") {
                  c.fd_store = FdStoreMode::kOff;
                } else {
                  return PlainError("\"" + std::string(v) + "\" is not auto or off");
                }
                return Ok();
              })
      .Custom("session_host_loopback",
              [&c](std::string_view v) -> Result<void> {
                if (v == "deny") {
                  c.session_host_loopback = HostLoopbackMode::kDeny;
                } else if (v == "allow") {
                  c.session_host_loopback = HostLoopbackMode::kAllow;
                } else {
                  return PlainError("\"" + std::string(v) + "\" is not deny or allow");
                }
                return Ok();
              })
      .Custom("session_host_bind",
              [&c](std::string_view v) -> Result<void> {
                if (v == "ephemeral") {
                  c.session_host_bind = HostBindMode::kEphemeral;
                } else if (v == "any") {
                  c.session_host_bind = HostBindMode::kAny;
                } else {
                  return PlainError("\"" + std::string(v) + "\" is not ephemeral or any");
                }
                return Ok();
              })
      .Number("session_oom_score_adj", &c.session_oom_score_adj, 0, 1000)
      .Custom("session_uid_range",
              [&c](std::string_view v) -> Result<void> {
                c.session_uid_range.reset();
                if (v == "off") return Ok();
                MP_TRY(c.session_uid_range, ParseIdRange(v));
                return Ok();
              })
      .Custom("sessions_memory_max", [&c](std::string_view v) {
        return ParseSessionsMemoryMax(v, &c.sessions_memory_max);
      });
  MP_RETURN_IF_ERROR(schema.Parse(text, name));
  return c;
}

Result<SupervisorConfig> LoadConfig(const std::string& path, bool optional) {
  MP_TRY(const std::string text, common::ReadConfigText(path, optional));
  MP_TRY(SupervisorConfig c, ParseConfig(path, text));
  MP_RETURN_IF_ERROR(ApplyNumberEnv("MAX_SESSIONS", &c.max_sessions));
  MP_RETURN_IF_ERROR(ApplyNumberEnv("SESSION_TTL_MS", &c.session_ttl_ms));
  MP_RETURN_IF_ERROR(ApplyNumberEnv("INTERACTIVE_SESSION_TTL_MS", &c.interactive_session_ttl_ms));
  return c;
}

}  // namespace mp::supervisor
