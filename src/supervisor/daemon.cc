#include "supervisor/daemon.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/kv_config.h"
#include "common/random_id.h"
#include "common/version.h"
#include "sandbox/cgroup.h"
#include "sandbox/loopback_guard.h"
#include "supervisor/audit_log.h"
#include "supervisor/config.h"
#include "supervisor/control_server.h"
#include "supervisor/dev_api.h"
#include "supervisor/dev_workspaces.h"
#include "supervisor/dispatcher.h"
#include "supervisor/event_loop.h"
#include "supervisor/fd_store.h"
#include "supervisor/host_setup.h"
#include "supervisor/policy.h"
#include "supervisor/sd_notify.h"
#include "supervisor/session_manager.h"

#ifndef MP_SOURCE_DIR
#define MP_SOURCE_DIR ""
#endif
#ifndef MP_API_PATH
#define MP_API_PATH ""
#endif

namespace mp::supervisor {
namespace {

constexpr char kCgroupMount[] = "/sys/fs/cgroup";
// The package's sessions unit (packaging/deb): it holds the session leaves, so that a restart
// of monkeyproofd's own unit stops the supervisor alone.
constexpr char kSessionsUnit[] = "monkeyproof-sessions.service";

// cgroup_root "auto": the cgroup of the sessions unit beside this daemon's unit (the same
// slice) while that unit runs; else "auto" as PrepareCgroupRoot reads it (the daemon's own).
std::string ResolveCgroupRoot(const std::string& configured) {
  if (configured != sandbox::kAutoCgroupRoot) return configured;
  std::ifstream f("/proc/self/cgroup");
  const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  auto sibling = sandbox::SiblingUnitCgroupPath(text, kCgroupMount, kSessionsUnit);
  if (sibling && sandbox::IsCgroup2(*sibling)) return *sibling;
  return configured;
}

void Usage(FILE* out) {
  std::fprintf(out,
               R"(usage: monkeyproofd [--config FILE] [--dev] [overrides]
       monkeyproofd exec [options] -- CMD [ARGS...]
       monkeyproofd check-policy FILE...
       monkeyproofd --version | --help

Runs the supervisor in the foreground (systemd: Type=notify). Overrides of
the config file: --state-dir DIR, --policies DIR, --socket PATH,
--cgroup-root PATH|auto, --audit-log PATH.
--dev runs from the build tree: the repository's policies/, a new state
directory under /tmp, the socket inside it, audit lines on stderr, and
/sys/fs/cgroup/monkeyproof-dev as the cgroup root. It also starts the build
tree's monkeyproof-api on --api-listen ADDR (default 127.0.0.1:3200) as the
user who ran sudo (else nobody), with a new token that it prints, and stops
when the API exits (with status 1 when the API failed, e.g. its port was
busy). The API dies with the supervisor. --no-api starts the supervisor alone.
)");
}

Result<void> MkdirP(const std::string& path, mode_t mode) {
  std::string cur;
  size_t pos = 1;
  while (pos <= path.size()) {
    size_t next = path.find('/', pos);
    if (next == std::string::npos) next = path.size();
    cur = path.substr(0, next);
    if (::mkdir(cur.c_str(), mode) != 0 && errno != EEXIST) {
      return ErrnoError("mkdir(\"" + cur + "\")");
    }
    pos = next + 1;
  }
  return Ok();
}

// Closes the fds systemd handed back from its store that no session took (another name, or
// the fd store is off now: their sessions were ended by SessionManager::Recover as
// supervisor_restart, their leaves killed) and drops them from the store.
void ReleaseListenedFds(const std::vector<sd::ListenedFd>& fds, const sd::Notifier* notifier) {
  if (fds.empty()) return;
  std::set<std::string> sessions;
  for (const auto& f : fds) {
    if (auto parsed = sd::ParseFdName(f.name)) sessions.insert(parsed->session_id);
    ::close(f.fd);
    if (notifier != nullptr && sd::IsValidFdName(f.name)) {
      if (auto r = notifier->RemoveFd(f.name); !r) {
        std::fprintf(stderr, "monkeyproofd: fd store: %s\n", r.error().ToString().c_str());
      }
    }
  }
  std::fprintf(stderr,
               "monkeyproofd: fd store: closed and released %zu descriptors of %zu sessions of "
               "the previous run; those sessions were ended as supervisor_restart\n",
               fds.size(), sessions.size());
}

// The bind guard's rules, once at start (`why` empty) and once per change.
void LogBindRules(const sandbox::BindGuardRules& rules, const char* why) {
  std::fprintf(stderr,
               "monkeyproofd: %s%s%shost-network sessions may bind port 0 and ports %u-%u only, "
               "less %zu reserved (ip_local_reserved_ports; session_host_bind = ephemeral)\n",
               *why != '\0' ? "bind guard: the port sysctls changed (" : "", why,
               *why != '\0' ? "): " : "", rules.low, rules.high, sandbox::ReservedPortCount(rules));
}

}  // namespace

int RunDaemon(int argc, char** argv) {
  std::string config_path = kDefaultConfigPath;
  bool config_given = false;
  bool dev = false;
  std::string state_dir, policies_dir, socket_path, cgroup_root, audit_log;
  bool audit_given = false;
  bool dev_api = true;
  std::string api_listen = "127.0.0.1:3200";
  std::string api_path = MP_API_PATH;
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](std::string* out) {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "monkeyproofd: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      *out = argv[++i];
    };
    if (a == "--config") {
      value(&config_path);
      config_given = true;
    } else if (a == "--dev")
      dev = true;
    else if (a == "--state-dir")
      value(&state_dir);
    else if (a == "--policies")
      value(&policies_dir);
    else if (a == "--socket")
      value(&socket_path);
    else if (a == "--cgroup-root")
      value(&cgroup_root);
    else if (a == "--api-listen")
      value(&api_listen);
    else if (a == "--api")
      value(&api_path);
    else if (a == "--no-api")
      dev_api = false;
    else if (a == "--audit-log") {
      value(&audit_log);
      audit_given = true;
    } else if (a == "--help" || a == "-h") {
      Usage(stdout);
      return 0;
    } else {
      std::fprintf(stderr, "monkeyproofd: unknown argument \"%s\"\n", a.c_str());
      Usage(stderr);
      return 2;
    }
  }
  if (::geteuid() != 0) {
    std::fprintf(stderr, "monkeyproofd: must run as root (it creates cgroups and namespaces)\n");
    return 1;
  }
  // systemd's fds (its fd store's, from the previous run): taken first, so that they are
  // close-on-exec before anything is started, and the variables do not reach children.
  std::vector<sd::ListenedFd> listened;
  if (auto fds = mp::sd::TakeListenFds(sd::kMaxListenFds); fds) {
    listened = std::move(fds->fds);
    if (!fds->ignored.empty()) {
      std::fprintf(stderr, "monkeyproofd: fd store: %s; no descriptor taken from it\n",
                   fds->ignored.c_str());
    }
  } else {
    std::fprintf(stderr, "monkeyproofd: fd store: %s; the descriptors passed are left alone\n",
                 fds.error().ToString().c_str());
  }
  std::optional<sd::Notifier> notifier;
  if (auto n = sd::Notifier::FromEnvironment(); n) {
    notifier = std::move(*n);
  } else {
    std::fprintf(stderr, "monkeyproofd: %s; not notifying systemd\n", n.error().ToString().c_str());
  }
  auto notify = [&notifier](const char* state) {
    if (notifier) (void)notifier->Send(state);
  };
  auto config = LoadConfig(config_path, dev && !config_given);
  if (!config) {
    std::fprintf(stderr, "monkeyproofd: %s\n", config.error().ToString().c_str());
    return 1;
  }
  SupervisorConfig& c = *config;
  if (dev) {
    char tmpl[] = "/tmp/monkeyproof-dev-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) {
      std::perror("monkeyproofd: mkdtemp");
      return 1;
    }
    c.state_dir = std::string(tmpl) + "/state";
    c.socket_path = std::string(tmpl) + "/control.sock";
    c.policies_dir = std::string(MP_SOURCE_DIR) + "/policies";
    c.cgroup_root = std::string(kCgroupMount) + "/monkeyproof-dev";
    c.audit_log = "";
  }
  if (!state_dir.empty()) c.state_dir = state_dir;
  if (!policies_dir.empty()) c.policies_dir = policies_dir;
  if (!socket_path.empty()) c.socket_path = socket_path;
  if (!cgroup_root.empty()) c.cgroup_root = cgroup_root;
  if (audit_given) c.audit_log = audit_log;

  auto fail = [](const std::string& what) {
    std::fprintf(stderr, "monkeyproofd: %s\n", what.c_str());
    return 1;
  };
  // Preflight, in the order an operator fixes things.
  c.cgroup_root = ResolveCgroupRoot(c.cgroup_root);
  auto root = sandbox::PrepareCgroupRoot(c.cgroup_root);
  if (!root) return fail("cgroup: " + root.error().ToString());
  // The loopback guard (session_host_loopback): before any session can start, and fail closed.
  std::unique_ptr<sandbox::LoopbackGuard> guard;
  if (c.session_host_loopback == HostLoopbackMode::kDeny) {
    auto r = sandbox::LoopbackGuard::Attach(root->dirfd());
    if (!r) {
      return fail(
          "session_host_loopback = deny: cannot attach the cgroup BPF program that "
          "keeps host-network sessions off the host's loopback and its own addresses (needs "
          "a kernel >= 5.14 with CONFIG_CGROUP_BPF and bpf(2) allowed to root): " +
          r.error().ToString() +
          "; fix the kernel, or set session_host_loopback = allow to run without it");
    }
    guard = std::move(*r);
    // Test hook of the privileged suite: refreshes that fail, to watch the retry timer.
    if (const char* n = std::getenv("MONKEYPROOFD_TEST_FAIL_LOOPBACK_REFRESHES")) {
      guard->FailNextRefreshesForTest(std::atoi(n));
    }
  } else if (auto r = sandbox::DetachLoopbackGuard(root->dirfd()); !r) {
    return fail("session_host_loopback = allow: detaching an earlier run's loopback guard: " +
                r.error().ToString());
  }
  // The bind guard (session_host_bind): likewise before any session, and fail closed.
  std::unique_ptr<sandbox::BindGuard> bind_guard;
  if (c.session_host_bind == HostBindMode::kEphemeral) {
    auto rules = sandbox::HostBindGuardRules();
    auto r = rules ? sandbox::BindGuard::Attach(root->dirfd(), *rules)
                   : Result<std::unique_ptr<sandbox::BindGuard>>(rules.error());
    if (!r) {
      return fail(
          "session_host_bind = ephemeral: cannot attach the cgroup BPF program that keeps "
          "host-network sessions off the ports of the host's services (needs a kernel >= 5.14 "
          "with CONFIG_CGROUP_BPF and bpf(2) allowed to root): " +
          r.error().ToString() +
          "; fix the kernel, or set session_host_bind = any to run without it");
    }
    bind_guard = std::move(*r);
    LogBindRules(bind_guard->rules(), "");
  } else if (auto r = sandbox::DetachBindGuard(root->dirfd()); !r) {
    return fail("session_host_bind = any: detaching an earlier run's bind guard: " +
                r.error().ToString());
  }
  // The sessions together may not take the host: their parent cgroup (kSessionsCgroup of the
  // root, the supervisor's own; never the unit's cgroup, whose attributes systemd manages)
  // gets the cap.
  struct sysinfo si {};
  if (::sysinfo(&si) != 0) return fail(std::string("sysinfo: ") + std::strerror(errno));
  const uint64_t mem_total = static_cast<uint64_t>(si.totalram) * si.mem_unit;
  const std::optional<uint64_t> sessions_cap = c.sessions_memory_max.Bytes(mem_total);
  if (auto r = sandbox::ApplySessionsMemoryCap(*root, sessions_cap); !r) {
    return fail("cgroup: sessions_memory_max " + c.sessions_memory_max.Text() + ": " +
                r.error().ToString());
  }
  std::fprintf(stderr,
               "monkeyproofd: sessions together: memory.max %s in %s (sessions_memory_max %s "
               "of %s RAM); each session's oom_score_adj %u\n",
               sessions_cap ? common::SizeText(*sessions_cap).c_str() : "max", root->path().c_str(),
               c.sessions_memory_max.Text().c_str(), common::SizeText(mem_total).c_str(),
               static_cast<unsigned>(c.session_oom_score_adj));
  if (c.session_uid_range) {
    if (auto r = CheckIdRange(*c.session_uid_range, ReadSystemIdDatabases(), c.max_sessions); !r) {
      return fail(r.error().ToString());
    }
    std::fprintf(stderr, "monkeyproofd: every session runs as an id of its own from %s\n",
                 c.session_uid_range->Text().c_str());
  } else {
    std::fprintf(stderr,
                 "monkeyproofd: session_uid_range = off: sessions run as their policy's "
                 "run_as user and share its per-uid limits\n");
  }
  if (auto r = MkdirP(c.state_dir, 0700); !r)
    return fail("state directory: " + r.error().ToString());
  if (::chmod(c.state_dir.c_str(), 0700) != 0 || ::access(c.state_dir.c_str(), W_OK) != 0) {
    return fail(ErrnoError("state directory \"" + c.state_dir + "\" is not writable").ToString());
  }
  PolicyLoadOptions load_options;
  load_options.require_root_owned = !dev;
  auto policies = PolicySet::Load(c.policies_dir, load_options);
  if (!policies) return fail("policies: " + policies.error().ToString());
  if (dev) {
    if (auto r = CreateDefaultWorkspaces(*policies); !r) return fail(r.error().ToString());
    // Dev mode adds no users and no agent state to the host (the package does): it says which
    // presets need them, and what to run.
    if (const std::string unready = DescribeUnreadyPolicies(*policies, SystemSpawnHost());
        !unready.empty()) {
      std::fprintf(stderr, "monkeyproofd: dev mode: %s", unready.c_str());
    }
  }

  std::vector<uid_t> allowed = {0};
  gid_t socket_group = 0;
  if (const struct passwd* pw = ::getpwnam(c.api_user.c_str())) {
    allowed.push_back(pw->pw_uid);
    socket_group = pw->pw_gid;
  } else if (!dev) {
    return fail("api_user \"" + c.api_user + "\" does not exist (create it or set api_user)");
  }
  // Dev mode's API user: whoever ran sudo, else nobody. Never root: the API holds no privilege.
  uid_t dev_uid = 0;
  gid_t dev_gid = 0;
  if (dev) {
    const char* sudo_uid = std::getenv("SUDO_UID");
    const char* sudo_gid = std::getenv("SUDO_GID");
    if (sudo_uid != nullptr && sudo_gid != nullptr && std::strtoul(sudo_uid, nullptr, 10) != 0) {
      dev_uid = static_cast<uid_t>(std::strtoul(sudo_uid, nullptr, 10));
      dev_gid = static_cast<gid_t>(std::strtoul(sudo_gid, nullptr, 10));
    } else if (const struct passwd* nobody = ::getpwnam("nobody")) {
      dev_uid = nobody->pw_uid;
      dev_gid = nobody->pw_gid;
    } else {
      return fail("dev mode: no SUDO_UID and no user \"nobody\" to run the API as");
    }
    allowed.push_back(dev_uid);
    socket_group = dev_gid;
  }
  const size_t slash = c.socket_path.rfind('/');
  if (slash != std::string::npos && slash > 0) {
    const std::string dir = c.socket_path.substr(0, slash);
    if (auto r = MkdirP(dir, 0750); !r) return fail("socket directory: " + r.error().ToString());
    if (::chown(dir.c_str(), 0, socket_group) != 0 || ::chmod(dir.c_str(), 0750) != 0) {
      return fail(ErrnoError("socket directory \"" + dir + "\"").ToString());
    }
  }

  ::signal(SIGPIPE, SIG_IGN);
  // Each session holds about a dozen descriptors (pipes, pidfd, cgroup files,
  // transcript): lift the soft limit to the hard one.
  struct rlimit nofile {};
  if (::getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    (void)::setrlimit(RLIMIT_NOFILE, &nofile);
  }
  auto loop = EventLoop::Create();
  if (!loop) return fail(loop.error().ToString());
  if (!c.audit_log.empty()) {
    const size_t s = c.audit_log.rfind('/');
    if (s != std::string::npos && s > 0) (void)MkdirP(c.audit_log.substr(0, s), 0750);
  }
  auto audit = AuditLog::Open(c.audit_log);
  if (!audit) return fail(audit.error().ToString());

  Dispatcher dispatcher;
  ManagerOptions mo;
  mo.state_dir = c.state_dir;
  mo.max_sessions = c.max_sessions;
  mo.max_ended_records = c.max_ended_sessions;
  mo.max_ended_output_bytes = c.max_ended_output_bytes;
  mo.ended_ttl = std::chrono::milliseconds(c.session_ttl_ms);
  mo.interactive_ended_ttl = std::chrono::milliseconds(c.interactive_session_ttl_ms);
  mo.kill_grace = std::chrono::milliseconds(c.kill_grace_ms);
  mo.spawn_timeout = std::chrono::milliseconds(c.spawn_timeout_ms);
  // Test hook of the privileged suite (a spawn that wedges before its child reports); see
  // ManagerOptions::test_stall_spawn_task.
  if (const char* task = std::getenv("MONKEYPROOFD_TEST_STALL_SPAWN_TASK")) {
    mo.test_stall_spawn_task = task;
  }
  // Test hook of the privileged suite: the control of the kill -9 test (output staging off).
  mo.test_no_output_staging = std::getenv("MONKEYPROOFD_TEST_NO_OUTPUT_STAGING") != nullptr;
  mo.host.credentials_dir = c.credentials_dir;
  mo.host.session_oom_score_adj = static_cast<int>(c.session_oom_score_adj);
  mo.supervisor_version = kVersion;
  mo.egress_socket = c.egress_socket;
  mo.session_ids = c.session_uid_range;
  // Sessions outlive the supervisor only when systemd keeps their fds (fd_store auto under
  // systemd). Dev mode's sessions die with it, as its API does.
  std::optional<SessionFdStore> fd_store;
  if (c.fd_store == FdStoreMode::kAuto && !dev && notifier) {
    if (auto n = sd::Notifier::FromEnvironment(); n && n->has_value()) {
      fd_store.emplace(std::move(**n));
      mo.fd_store = &*fd_store;
    }
  }
  SessionManager manager(**loop, std::move(*root), std::move(*policies), mo, dispatcher, *audit);
  auto not_adopted = manager.Recover(listened);
  if (!not_adopted) return fail("recovery: " + not_adopted.error().ToString());
  ReleaseListenedFds(*not_adopted, notifier ? &*notifier : nullptr);

  ControlServerOptions so;
  so.socket_path = c.socket_path;
  so.allowed_uids = allowed;
  so.socket_group = socket_group;
  so.supervisor_version = kVersion;
  auto boot_id = common::RandomId(common::kHexAlphabet, 32);
  if (!boot_id) return fail("boot id: " + boot_id.error().ToString());
  so.boot_id = std::move(*boot_id);
  so.on_drained = [&dispatcher](uint64_t connection) { dispatcher.OnDrained(connection); };
  auto server = ControlServer::Start(**loop, so, dispatcher);
  if (!server) return fail("control socket: " + server.error().ToString());
  dispatcher.Attach(server->get(), &manager);

  EventLoop& l = **loop;
  // The loopback guard's map follows the host's addresses; a refresh that fails leaves it
  // closed (LoopbackGuard::Refresh) and is retried on a timer, 1 s doubling to 30 s, until one
  // succeeds. Both transitions are logged once.
  EventLoop::TimerId refresh_retry = 0;
  std::chrono::milliseconds refresh_delay{0};
  std::function<void()> refresh_loopback = [&] {
    l.CancelTimer(refresh_retry);
    refresh_retry = 0;
    const bool was_closed = guard->failed_closed();
    auto r = guard->Refresh();
    if (r) {
      refresh_delay = std::chrono::milliseconds(0);
      if (was_closed) {
        std::fprintf(stderr,
                     "monkeyproofd: loopback guard: the map follows the host's addresses again "
                     "(%zu prefixes); host-network sessions reach other hosts again\n",
                     *r);
      }
      return;
    }
    refresh_delay = sandbox::NextRefreshRetry(refresh_delay);
    if (!was_closed) {
      std::fprintf(stderr,
                   "monkeyproofd: loopback guard: the host's addresses could not be read: %s; "
                   "the map fails closed (host-network sessions reach no address but port 53) "
                   "until a retry succeeds (after 1 s, doubling up to %lld s)\n",
                   r.error().ToString().c_str(),
                   static_cast<long long>(sandbox::kRefreshRetryMax.count() / 1000));
    }
    refresh_retry = l.AddTimer(refresh_delay, refresh_loopback);
  };
  if (guard) {
    // An address of the host came or went: the guard's map follows within one loop turn.
    auto watched =
        l.Add(guard->change_fd(), EPOLLIN, [&refresh_loopback](uint32_t) { refresh_loopback(); });
    if (!watched)
      return fail("loopback guard: watching the host's addresses: " + watched.error().ToString());
  }
  // The bind guard's rules follow the port sysctls: read again on SIGHUP and before each spawn
  // (every spawn, not only host-network ones: the dispatcher does not know a request's policy
  // yet, and two small reads of /proc/sys cost microseconds).
  auto reread_bind_rules = [&bind_guard](const char* why) {
    if (!bind_guard) return;
    auto rules = sandbox::HostBindGuardRules();
    auto changed = rules ? bind_guard->Update(*rules) : Result<bool>(rules.error());
    if (!changed) {
      std::fprintf(stderr,
                   "monkeyproofd: bind guard: re-reading the port sysctls (%s): %s (the rules "
                   "in force stay)\n",
                   why, changed.error().ToString().c_str());
    } else if (*changed) {
      LogBindRules(bind_guard->rules(), why);
    }
  };
  dispatcher.SetBeforeSpawn([&reread_bind_rules] { reread_bind_rules("before a spawn"); });
  auto handled = l.HandleSignals({SIGTERM, SIGINT, SIGHUP}, [&](int signo) {
    if (signo == SIGHUP) {
      // logrotate renames the audit log and then reloads us (packaging's logrotate config):
      // from here on, lines go to the new file.
      auto reopened = audit->Reopen();
      std::fprintf(
          stderr, "monkeyproofd: audit log reopen: %s\n",
          reopened ? "ok"
                   : (reopened.error().ToString() + " (still writing to the old file)").c_str());
      auto r = manager.ReloadPolicies();
      std::fprintf(
          stderr, "monkeyproofd: policy reload: %s\n",
          r ? "ok" : (r.error().ToString() + " (the previous set stays in force)").c_str());
      reread_bind_rules("SIGHUP");
      return;
    }
    notify("STOPPING=1");
    if (fd_store) {
      std::fprintf(stderr,
                   "monkeyproofd: stopping; running sessions keep running, their %zu "
                   "descriptors in systemd's fd store\n",
                   fd_store->stored());
      manager.Detach();
    } else {
      manager.KillAll();
    }
    l.Stop();
  });
  if (!handled) return fail(handled.error().ToString());
  // systemd's watchdog: ping at half the interval it asked for.
  if (const char* usec = std::getenv("WATCHDOG_USEC")) {
    const auto interval = std::chrono::microseconds(std::strtoull(usec, nullptr, 10)) / 2;
    if (interval.count() > 0) {
      auto ping = std::make_shared<std::function<void()>>();
      *ping = [&l, interval, ping, notify] {
        notify("WATCHDOG=1");
        l.AddTimer(std::chrono::duration_cast<std::chrono::milliseconds>(interval), *ping);
      };
      (*ping)();
    }
  }
  std::fprintf(stderr,
               "monkeyproofd %s: ready socket=%s state=%s cgroup=%s policies=%zu fd_store=%s%s\n",
               kVersion, c.socket_path.c_str(), c.state_dir.c_str(), c.cgroup_root.c_str(),
               manager.PolicyCount(), fd_store ? "on" : "off", dev ? " (dev mode)" : "");
  DevApi api;
  // Dev mode's API is half of the product: when it exits, the supervisor stops too, and when
  // it failed (a busy port, a crash) the supervisor exits non-zero, so that whoever started it
  // sees the failure. A clean exit of the API (Ctrl-C reaches both) is a clean stop.
  bool api_failed = false;
  if (dev && dev_api) {
    const std::string dir = c.socket_path.substr(0, c.socket_path.rfind('/'));
    auto started = StartDevApi({api_path, dir, c.socket_path, api_listen, dev_uid, dev_gid});
    if (!started) return fail(started.error().ToString());
    api = std::move(*started);
    const int api_fd = api.pidfd.get();
    auto watched = l.Add(api_fd, EPOLLIN, [&l, &manager, &api, &api_failed, api_fd](uint32_t) {
      int status = 0;
      (void)::waitpid(api.pid, &status, WNOHANG);
      std::fprintf(stderr, "monkeyproofd: dev mode: monkeyproof-api exited (%s %d); stopping\n",
                   WIFSIGNALED(status) ? "signal" : "status",
                   WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
      api.pid = -1;  // reaped
      api_failed = !WIFEXITED(status) || WEXITSTATUS(status) != 0;
      l.Remove(api_fd);
      manager.KillAll();
      l.Stop();
    });
    if (!watched) return fail(watched.error().ToString());
    std::fprintf(stderr,
                 "monkeyproofd: dev mode: monkeyproof-api on http://%s (uid %u), token in %s\n"
                 "  export MONKEYPROOF_URL=http://%s MONKEYPROOF_TOKEN=%s\n"
                 "  curl -s -H \"Authorization: Bearer $MONKEYPROOF_TOKEN\" -d "
                 "'{\"task\":\"echo hello\"}' $MONKEYPROOF_URL/sessions\n",
                 api_listen.c_str(), dev_uid, api.token_file.c_str(), api_listen.c_str(),
                 api.token.c_str());
  }
  notify("READY=1");
  auto ran = l.Run();
  if (api.pid > 0) {
    ::kill(api.pid, SIGTERM);
    int status = 0;
    (void)::waitpid(api.pid, &status, 0);
  }
  if (!ran) return fail(ran.error().ToString());
  return api_failed ? 1 : 0;
}

}  // namespace mp::supervisor
