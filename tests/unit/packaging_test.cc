// The Debian package against the code: packaging/monkeyproof.conf lists every key of
// SupervisorConfig, commented out, with its built-in default; the sysusers, tmpfiles and unit
// files name the user, directories and paths the daemons use by default. Reads files of the
// source tree only; runs as any user.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "config_example.h"
#include "http/auth.h"
#include "supervisor/config.h"
#include "supervisor/policy.h"
#include "supervisor/sd_notify.h"

namespace mp {
namespace {

std::string Slurp(const std::string& path) {
  std::ifstream f(path);
  EXPECT_TRUE(f) << path;
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

std::string Debian(const std::string& name) { return std::string(MP_DEBIAN_DIR) + "/" + name; }

// Every non-blank, non-comment line of a file, with runs of blanks folded to one space.
std::set<std::string> Lines(const std::string& path) {
  std::set<std::string> out;
  std::istringstream in(Slurp(path));
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream words(line);
    std::string w, folded;
    while (words >> w) folded += (folded.empty() ? "" : " ") + w;
    if (!folded.empty()) out.insert(folded);
  }
  return out;
}

TEST(PackagedSupervisorConfigTest, EveryKeyWithItsDefault) {
  const test::UncommentedExample example = test::UncommentExample(MP_SUPERVISOR_CONF_EXAMPLE);
  EXPECT_EQ(example.keys, (std::set<std::string>{"socket_path",
                                                 "api_user",
                                                 "state_dir",
                                                 "policies_dir",
                                                 "credentials_dir",
                                                 "cgroup_root",
                                                 "audit_log",
                                                 "max_sessions",
                                                 "max_ended_sessions",
                                                 "max_ended_output_bytes",
                                                 "session_ttl_ms",
                                                 "interactive_session_ttl_ms",
                                                 "kill_grace_ms",
                                                 "spawn_timeout_ms",
                                                 "fd_store",
                                                 "session_host_loopback",
                                                 "session_host_bind",
                                                 "egress_socket",
                                                 "session_oom_score_adj",
                                                 "sessions_memory_max",
                                                 "session_uid_range"}));
  auto parsed = supervisor::ParseConfig("monkeyproof.conf (uncommented)", example.text);
  ASSERT_TRUE(parsed.has_value()) << parsed.error().ToString();
  const supervisor::SupervisorConfig d;
  const supervisor::SupervisorConfig& c = *parsed;
  EXPECT_EQ(c.socket_path, d.socket_path);
  EXPECT_EQ(c.api_user, d.api_user);
  EXPECT_EQ(c.state_dir, d.state_dir);
  EXPECT_EQ(c.policies_dir, d.policies_dir);
  EXPECT_EQ(c.credentials_dir, d.credentials_dir);
  EXPECT_EQ(c.cgroup_root, d.cgroup_root);
  EXPECT_EQ(c.audit_log, d.audit_log);
  EXPECT_EQ(c.max_sessions, d.max_sessions);
  EXPECT_EQ(c.max_ended_sessions, d.max_ended_sessions);
  EXPECT_EQ(c.max_ended_output_bytes, d.max_ended_output_bytes);
  EXPECT_EQ(c.session_ttl_ms, d.session_ttl_ms);
  EXPECT_EQ(c.interactive_session_ttl_ms, d.interactive_session_ttl_ms);
  EXPECT_EQ(c.spawn_timeout_ms, d.spawn_timeout_ms);
  EXPECT_EQ(c.kill_grace_ms, d.kill_grace_ms);
  EXPECT_EQ(c.fd_store, d.fd_store);
  EXPECT_EQ(c.session_host_loopback, d.session_host_loopback);
  EXPECT_EQ(c.session_host_bind, d.session_host_bind);
  EXPECT_EQ(c.egress_socket, d.egress_socket);
  EXPECT_EQ(c.session_oom_score_adj, d.session_oom_score_adj);
  EXPECT_EQ(c.sessions_memory_max.Text(), d.sessions_memory_max.Text());
  EXPECT_EQ(c.session_uid_range.has_value(), d.session_uid_range.has_value());
}

TEST(SupervisorConfigTest, SessionHostLoopbackIsDenyByDefaultOrAllow) {
  auto d = supervisor::ParseConfig("t.conf", "");
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->session_host_loopback, supervisor::HostLoopbackMode::kDeny);
  auto allow = supervisor::ParseConfig("t.conf", "session_host_loopback = allow\n");
  ASSERT_TRUE(allow.has_value()) << allow.error().ToString();
  EXPECT_EQ(allow->session_host_loopback, supervisor::HostLoopbackMode::kAllow);
  auto bad = supervisor::ParseConfig("t.conf", "session_host_loopback = off\n");
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.error().what.find("t.conf:1: session_host_loopback"), std::string::npos)
      << bad.error().what;
}

TEST(SupervisorConfigTest, SessionHostBindIsEphemeralByDefaultOrAny) {
  auto d = supervisor::ParseConfig("t.conf", "");
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->session_host_bind, supervisor::HostBindMode::kEphemeral);
  auto any = supervisor::ParseConfig("t.conf", "session_host_bind = any\n");
  ASSERT_TRUE(any.has_value()) << any.error().ToString();
  EXPECT_EQ(any->session_host_bind, supervisor::HostBindMode::kAny);
  auto bad = supervisor::ParseConfig("t.conf", "\nsession_host_bind = deny\n");
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.error().what.find("t.conf:2: session_host_bind"), std::string::npos)
      << bad.error().what;
  EXPECT_NE(bad.error().what.find("not ephemeral or any"), std::string::npos) << bad.error().what;
}

TEST(PackagingTest, SysusersCreatesTheApiUser) {
  const supervisor::SupervisorConfig d;
  const auto lines = Lines(Debian("monkeyproof.sysusers"));
  EXPECT_TRUE(
      lines.count("u " + d.api_user + " - \"MonkeyProof API\" /nonexistent /usr/sbin/nologin"))
      << "debian/monkeyproof.sysusers must create api_user " << d.api_user;
}

TEST(PackagingTest, TmpfilesMatchTheDefaultPaths) {
  const supervisor::SupervisorConfig d;
  const auto lines = Lines(Debian("monkeyproof.tmpfiles"));
  const std::string run_dir = d.socket_path.substr(0, d.socket_path.rfind('/'));
  EXPECT_TRUE(lines.count("d " + run_dir + " 0750 root " + d.api_user + " -")) << run_dir;
  EXPECT_TRUE(lines.count("d " + d.state_dir + " 0700 root root -")) << d.state_dir;
  EXPECT_TRUE(lines.count("d " + d.credentials_dir + " 0700 root root -")) << d.credentials_dir;
  const std::string log_dir = d.audit_log.substr(0, d.audit_log.rfind('/'));
  EXPECT_TRUE(lines.count("d " + log_dir + " 0750 root adm -")) << log_dir;
}

// Requests without a cwd run in their policy's default_workspace: the package creates each one
// the shipped policies name, owned by the policy's run_as user so that sessions can write it.
TEST(PackagingTest, TmpfilesCreateTheDefaultWorkspaces) {
  auto set = supervisor::PolicySet::Load(MP_REPO_POLICIES_DIR);
  ASSERT_TRUE(set.has_value()) << set.error().what;
  const auto lines = Lines(Debian("monkeyproof.tmpfiles"));
  size_t checked = 0;
  for (const auto& [name, policy] : set->all()) {
    if (policy->default_workspace.empty()) continue;
    ++checked;
    const std::string prefix =
        "d " + policy->default_workspace + " 0755 " + policy->run_as.user + " ";
    const bool found = std::any_of(lines.begin(), lines.end(),
                                   [&](const std::string& l) { return l.starts_with(prefix); });
    EXPECT_TRUE(found) << "debian/monkeyproof.tmpfiles must create the default workspace of "
                       << name << ": " << prefix << "...";
  }
  EXPECT_NE(set->Find("exec"), nullptr);
  EXPECT_FALSE(set->Find("exec")->default_workspace.empty()) << "exec.json: default_workspace";
  EXPECT_GE(checked, 1u);
}

TEST(PackagingTest, UnitsAndMaintainerScripts) {
  const supervisor::SupervisorConfig d;
  const auto supervisor_unit = Lines(Debian("monkeyproofd.service"));
  for (const char* want : {"Type=notify", "Delegate=yes", "ExecStart=/usr/sbin/monkeyproofd",
                           "KillMode=control-group", "TasksMax=infinity"}) {
    EXPECT_TRUE(supervisor_unit.count(want)) << "monkeyproofd.service lacks " << want;
  }
  // Inherited by every session, and each of these breaks spawning (docs/deploy.md, section 5):
  // RestrictSUIDSGID answers openat2 with ENOSYS, ProtectHostname denies sethostname,
  // RestrictNamespaces denies the session's namespaces, ProtectControlGroups its cgroup writes.
  for (const char* never : {"RestrictSUIDSGID=yes", "ProtectHostname=yes", "RestrictNamespaces=yes",
                            "ProtectControlGroups=yes", "PrivateUsers=yes"}) {
    EXPECT_FALSE(supervisor_unit.count(never)) << "monkeyproofd.service must not set " << never;
  }
  // The egress listeners of allowlist sessions bind :80, :443 and :53 in namespaces this
  // process creates (owned by the host's user namespace): the bounding set must keep
  // CAP_NET_BIND_SERVICE, or every handover fails with EACCES and those sessions stay offline.
  for (const std::string& line : supervisor_unit) {
    if (!line.starts_with("CapabilityBoundingSet=")) continue;
    const bool named = line.find("CAP_NET_BIND_SERVICE") != std::string::npos;
    EXPECT_EQ(named, !line.starts_with("CapabilityBoundingSet=~"))
        << "monkeyproofd.service drops CAP_NET_BIND_SERVICE: " << line;
  }
  const auto api_unit = Lines(Debian("monkeyproof-api.service"));
  for (const std::string& want : std::initializer_list<std::string>{
           "User=" + d.api_user, "Group=" + d.api_user, "ExecStart=/usr/sbin/monkeyproof-api",
           "NoNewPrivileges=yes", "CapabilityBoundingSet=", "ProtectSystem=strict",
           "PrivateTmp=yes", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
           // The TCP listeners in the fd store: a restart never frees the port.
           "NotifyAccess=main", "FileDescriptorStoreMax=16", "StartLimitIntervalSec=0"}) {
    EXPECT_TRUE(api_unit.count(want)) << "monkeyproof-api.service lacks " << want;
  }
  // The token the postinst writes is the API's default token file, readable by its group.
  const std::string postinst = Slurp(Debian("monkeyproof.postinst"));
  EXPECT_NE(postinst.find("token=" + std::string(http::kDefaultTokenFile) + "\n"),
            std::string::npos);
  EXPECT_NE(postinst.find("chown root:" + d.api_user), std::string::npos);
  EXPECT_NE(postinst.find("chmod 0640"), std::string::npos);
  const std::string postrm = Slurp(Debian("monkeyproof.postrm"));
  EXPECT_NE(postrm.find("rm -f " + std::string(http::kDefaultTokenFile)), std::string::npos);
  EXPECT_NE(postrm.find("rm -rf " + d.state_dir), std::string::npos);
}

// Sessions live in monkeyproof-sessions.service's cgroup, so that a restart of monkeyproofd
// stops the supervisor alone; an upgrade never stops or restarts that unit (it would kill every
// session), and it hands its cgroup files to no user (sessions run as nobody).
TEST(PackagingTest, TheSessionsUnitHoldsTheSessionsAndSurvivesUpgrades) {
  const auto sessions_unit = Lines(Debian("monkeyproof-sessions.service"));
  for (const char* want : {"Delegate=yes", "TasksMax=infinity", "KillMode=control-group",
                           "CapabilityBoundingSet=", "NoNewPrivileges=yes", "PrivateNetwork=yes",
                           "ExecStart=/bin/sleep infinity"}) {
    EXPECT_TRUE(sessions_unit.count(want)) << "monkeyproof-sessions.service lacks " << want;
  }
  for (const auto& line : sessions_unit) {
    EXPECT_FALSE(line.starts_with("User=") || line.starts_with("DynamicUser="))
        << "monkeyproof-sessions.service must not run as another user (Delegate=yes hands it "
           "the cgroup): "
        << line;
  }
  const auto supervisor_unit = Lines(Debian("monkeyproofd.service"));
  EXPECT_TRUE(supervisor_unit.count("Requires=monkeyproof-sessions.service"));
  EXPECT_FALSE(supervisor_unit.count("KillMode=process"))
      << "systemd 252 cannot restart a delegated unit that leaves cgroups (219/CGROUP)";
  const std::string rules = Slurp(Debian("rules"));
  EXPECT_NE(rules.find("dh_installsystemd --no-stop-on-upgrade --no-restart-after-upgrade "
                       "monkeyproof-sessions.service\n"),
            std::string::npos);
  EXPECT_NE(rules.find("dh_installsystemd monkeyproofd.service monkeyproof-api.service "
                       "monkeyproof-egress.service\n"),
            std::string::npos);
  // The fd store holds every fd of every running session at the default max_sessions.
  uint64_t store_max = 0;
  for (const auto& line : supervisor_unit) {
    if (line.starts_with("FileDescriptorStoreMax=")) store_max = std::stoull(line.substr(23));
  }
  EXPECT_GE(store_max,
            supervisor::SupervisorConfig{}.max_sessions * supervisor::sd::kMaxFdsPerSession)
      << "monkeyproofd.service: FileDescriptorStoreMax= below max_sessions x fds per session";
  const auto install = Lines(Debian("monkeyproof.install"));
  EXPECT_TRUE(install.count("debian/monkeyproof-sessions.service lib/systemd/system/"));
}

// The API's Unix socket for local operators (docs/deploy.md): a socket unit that systemd owns
// and passes to monkeyproof-api.service, installed but never enabled or started by the package,
// stopped at removal; its directory is made by tmpfiles owned as the API's unit wants it and kept
// over the API's stops, so that a start of the API neither chowns the socket (its group is the
// operators') nor removes it.
TEST(PackagingTest, TheApiSocketUnitIsTheOperatorsToEnable) {
  const supervisor::SupervisorConfig d;
  const auto socket_unit = Lines(Debian("monkeyproof-api.socket"));
  for (const std::string& want : std::initializer_list<std::string>{
           "ListenStream=/run/monkeyproof-api/api.sock", "SocketUser=" + d.api_user,
           "SocketGroup=root", "SocketMode=0660", "Service=monkeyproof-api.service",
           "RemoveOnStop=yes", "WantedBy=sockets.target"}) {
    EXPECT_TRUE(socket_unit.count(want)) << "monkeyproof-api.socket lacks " << want;
  }
  for (const auto& line : socket_unit) {
    EXPECT_FALSE(line.starts_with("Accept=")) << "one API serves every connection: " << line;
  }
  const auto api_unit = Lines(Debian("monkeyproof-api.service"));
  EXPECT_TRUE(api_unit.count("RuntimeDirectory=monkeyproof-api"));
  EXPECT_TRUE(api_unit.count("RuntimeDirectoryMode=0755"));
  EXPECT_TRUE(api_unit.count("RuntimeDirectoryPreserve=yes"))
      << "a stop of the API would remove the socket unit's file with its directory";
  EXPECT_TRUE(Lines(Debian("monkeyproof.tmpfiles"))
                  .count("d /run/monkeyproof-api 0755 " + d.api_user + " " + d.api_user + " -"))
      << "without it the API's first start chowns api.sock to its own group";
  EXPECT_TRUE(Lines(Debian("monkeyproof.install"))
                  .count("debian/monkeyproof-api.socket lib/systemd/system/"));
  const std::string rules = Slurp(Debian("rules"));
  EXPECT_NE(rules.find("dh_installsystemd --no-enable --no-start --no-restart-after-upgrade "
                       "--no-stop-on-upgrade \\\n\t  monkeyproof-api.socket\n"),
            std::string::npos);
  const std::string prerm = Slurp(Debian("monkeyproof.prerm"));
  const size_t stop = prerm.find("deb-systemd-invoke stop monkeyproof-api.socket");
  EXPECT_NE(stop, std::string::npos);
  EXPECT_LT(stop, prerm.find("#DEBHELPER#")) << "the socket must stop before the service does";
}

// The audit log is rotated by rename and the supervisor reopens it on reload (SIGHUP), never
// by copytruncate, which loses lines written between the copy and the truncation
// (audit_log_test shows both).
TEST(PackagingTest, LogrotateRenamesTheAuditLogAndReloadsTheSupervisor) {
  const supervisor::SupervisorConfig d;
  const std::string text = Slurp(Debian("monkeyproof.logrotate"));
  const auto lines = Lines(Debian("monkeyproof.logrotate"));
  EXPECT_TRUE(lines.count(d.audit_log + " {")) << "logrotate does not name " << d.audit_log;
  EXPECT_FALSE(lines.count("copytruncate"));
  EXPECT_TRUE(lines.count("create 0640 root adm"));
  EXPECT_TRUE(lines.count("postrotate"));
  EXPECT_NE(text.find("systemctl reload monkeyproofd.service"), std::string::npos);
  EXPECT_TRUE(Lines(Debian("monkeyproofd.service")).count("ExecReload=/bin/kill -HUP $MAINPID"));
}

}  // namespace
}  // namespace mp
