// The child's fixed sequence (style.md example 4). Order matters:
//   signals reset → (GO) → setsid → filesystem view → hostname → loopback →
//   rlimits → bounding set and securebits (need CAP_SETPCAP) → setgroups/
//   setresgid/setresuid → clear capabilities → parent-death signal (cleared
//   by the uid change, so set after it) → mark fds CLOEXEC → no_new_privs →
//   seccomp, last → fork the command → init loop (reports "started", then, for a session
//   that outlives the supervisor, clears the parent-death signal and ends the session once
//   nobody holds the supervisor's end of the handshake socket; reports the command's wait
//   status when it ends).
// This file keeps the sequence; each concern has its own child-side file:
// filesystem_view.cc (the mounts), credentials.cc (capabilities and ids),
// seccomp_install.cc (the filter, the same function the unit tests install),
// child_report.cc (the failure report). All of them are built with
// -fno-exceptions -fno-rtti (src/sandbox/CMakeLists.txt).
// Nothing here allocates: paths come from the plan, numbers are formatted
// into stack buffers.
#include "sandbox/child.h"

#include <fcntl.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>

#include "sandbox/child_report.h"
#include "sandbox/credentials.h"
#include "sandbox/filesystem_view.h"
#include "sandbox/seccomp_install.h"

namespace mp::sandbox {
namespace {

void BringLoopbackUp(const ChildPlan& p) {
  const int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) FailInChild(p.report_fd, ChildStep::kLoopback, errno, "socket");
  struct ifreq ifr;
  std::memset(&ifr, 0, sizeof ifr);
  std::memcpy(ifr.ifr_name, "lo", 3);
  if (::ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
    FailInChild(p.report_fd, ChildStep::kLoopback, errno, "lo");
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP | IFF_RUNNING);
  if (::ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
    FailInChild(p.report_fd, ChildStep::kLoopback, errno, "lo");
  ::close(s);
}

// Execs the command (in the grandchild). Searches search_path when `file` has no '/'.
[[noreturn]] void ExecCommand(const ChildPlan& p, int report_fd) {
  int err = ENOENT;
  if (std::strchr(p.file, '/') != nullptr) {
    ::execve(p.file, p.argv, p.envp);
    err = errno;
  } else {
    const char* dir = p.search_path;
    char path[4096];
    bool eacces = false;
    while (dir != nullptr && *dir != '\0') {
      const char* end = std::strchr(dir, ':');
      const size_t len = end != nullptr ? static_cast<size_t>(end - dir) : std::strlen(dir);
      const size_t flen = std::strlen(p.file);
      if (len > 0 && len + 1 + flen < sizeof path) {
        // NOLINTNEXTLINE(bugprone-not-null-terminated-result): '/' and the name follow
        std::memcpy(path, dir, len);
        path[len] = '/';
        std::memcpy(path + len + 1, p.file, flen + 1);
        ::execve(path, p.argv, p.envp);
        if (errno == EACCES)
          eacces = true;
        else if (errno != ENOENT && errno != ENOTDIR) {
          err = errno;
          break;
        }
      }
      dir = end != nullptr ? end + 1 : nullptr;
    }
    if (err == ENOENT && eacces) err = EACCES;
  }
  FailInChild(report_fd, ChildStep::kExec, err, p.file);
}

[[noreturn]] void RunCommand(const ChildPlan& p, int exec_report_fd) {
  // Own session and process group, so signals can address the whole command.
  if (::setsid() < 0) FailInChild(exec_report_fd, ChildStep::kSetsid, errno, "setsid");
  const int in = p.stdin_fd;
  if (p.pty && ::ioctl(in, TIOCSCTTY, 0) < 0) {
    FailInChild(exec_report_fd, ChildStep::kControllingTty, errno, "TIOCSCTTY");
  }
  const int fds[3] = {p.stdin_fd, p.stdout_fd, p.stderr_fd};
  for (int target = 0; target < 3; ++target) {
    int src = fds[target];
    if (src < 0) {
      src = ::open("/dev/null", O_RDWR | O_CLOEXEC);
      if (src < 0) FailInChild(exec_report_fd, ChildStep::kStdio, errno, "/dev/null");
    }
    if (src != target && ::dup2(src, target) < 0)
      FailInChild(exec_report_fd, ChildStep::kStdio, errno, "dup2");
    // dup2 onto the same number keeps FD_CLOEXEC; clear it explicitly.
    if (::fcntl(target, F_SETFD, 0) < 0)
      FailInChild(exec_report_fd, ChildStep::kStdio, errno, "fcntl");
  }
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ExecCommand(p, exec_report_fd);
}

[[noreturn]] void RunInit(const ChildPlan& p, pid_t command, int exec_status_fd) {
  // The init keeps nothing of the command's stdio open, so EOF on the output
  // pipes means the command side is done.
  // Nothing in the sandbox may read init's memory or fds through /proc.
  ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  const int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  for (int fd = 0; fd < 3 && null_fd >= 0; ++fd) ::dup2(null_fd, fd);
  if (null_fd > 2) ::close(null_fd);
  const int stdio[3] = {p.stdin_fd, p.stdout_fd, p.stderr_fd};
  for (int fd : stdio) {
    if (fd > 2) ::close(fd);
  }

  BeginStepInChild(p, ChildStep::kExec);
  SpawnReport r;
  std::memset(&r, 0, sizeof r);
  // The command's end of this pipe is CLOEXEC: EOF means execve succeeded.
  ssize_t n;
  do {
    n = ::read(exec_status_fd, &r, sizeof r);
  } while (n < 0 && errno == EINTR);
  ::close(exec_status_fd);
  if (n == static_cast<ssize_t>(sizeof r) && r.kind == SpawnReport::kFailed) {
    SendReportInChild(p.report_fd, r);
    ::_exit(126);
  }
  BeginStepInChild(p, ChildStep::kReportStarted);
  if (p.stall_before_start_report) {
    // Test hook: every signal is blocked, so only SIGKILL (the parent's cgroup.kill) ends this.
    for (;;) ::pause();
  }
  std::memset(&r, 0, sizeof r);
  r.kind = SpawnReport::kStarted;
  if (p.outlive_parent) {
    // The session may now outlive the supervisor: its exit status goes to the handshake socket
    // (below), which a restarted supervisor gets back. The parent-death signal goes before
    // "started" does: a supervisor that has read it may exit at once. One gone before it could
    // read it never learned that the command runs and holds nothing of the session: the send
    // fails (EPIPE) and init leaves, which ends the namespace. (One gone after the send but
    // before reading leaves a session that its successor finds without fds: it kills the leaf.)
    ::prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0);
    if (!SendReportInChild(p.report_fd, r)) ::_exit(125);
  } else {
    SendReportInChild(p.report_fd, r);
  }

  sigset_t all;
  sigfillset(&all);
  for (;;) {
    siginfo_t info;
    const int sig = ::sigwaitinfo(&all, &info);
    if (sig < 0) continue;
    if (sig == SIGIO && info.si_code > 0 && p.outlive_parent) {
      // The kernel's (si_code POLL_*; a kill() has SI_USER): the report socket changed. Gone
      // for good when nobody holds its other end: the session can never be adopted again.
      struct pollfd pfd = {p.report_fd, POLLRDHUP, 0};
      if (::poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLHUP | POLLRDHUP)) != 0) ::_exit(125);
      continue;
    }
    if (sig == SIGTERM || sig == SIGHUP) {
      // The supervisor's "terminate the session": every process in the
      // namespace but init itself, double-forked daemons included.
      ::kill(-1, sig);
      continue;
    }
    if (sig != SIGCHLD) {
      // Anything else (SIGINT, SIGWINCH, SIGUSR1, ...) goes to the command's process group.
      ::kill(-command, sig);
      continue;
    }
    int status = 0;
    pid_t pid;
    while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
      if (pid == command) {
        std::memset(&r, 0, sizeof r);
        r.kind = SpawnReport::kExited;
        r.status = status;
        // When the command ended, for the end record of a supervisor that reads this later.
        struct timespec now {};
        ::clock_gettime(CLOCK_REALTIME, &now);
        r.exited_ms = static_cast<int64_t>(now.tv_sec) * 1000 + now.tv_nsec / 1000000;
        SendReportInChild(p.report_fd, r);
        // Leaving pid 1 makes the kernel SIGKILL everything else in the namespace.
        ::_exit(0);
      }
    }
  }
}

// The session's badness for the host's OOM killer; every process it starts inherits it. The
// host's /proc: this runs before the sandbox mounts its own.
void SetOomScoreAdj(const ChildPlan& p) {
  char text[16];
  char* end = text + sizeof text;
  char* s = end;
  unsigned v = static_cast<unsigned>(p.oom_score_adj < 0 ? -p.oom_score_adj : p.oom_score_adj);
  do {
    *--s = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  if (p.oom_score_adj < 0) *--s = '-';
  const int fd = ::open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
  if (fd < 0) FailInChild(p.report_fd, ChildStep::kOomScoreAdj, errno, "/proc/self/oom_score_adj");
  if (::write(fd, s, static_cast<size_t>(end - s)) != end - s) {
    FailInChild(p.report_fd, ChildStep::kOomScoreAdj, errno, "/proc/self/oom_score_adj");
  }
  ::close(fd);
}

// Closes every fd the supervisor had open except the plan's: without this,
// init (which never execs) would hold other sessions' pipes and this
// session's own stdin write end, and EOF would never come.
void CloseInheritedFds(const ChildPlan& p) {
  int keep[7] = {p.report_fd,    p.stdin_fd, p.stdout_fd,      p.stderr_fd,
                 p.parent_pidfd, p.netns_fd, p.idmap_userns_fd};
  // Sort the few kept fds (insertion sort: no allocation).
  for (int i = 1; i < 7; ++i) {
    for (int j = i; j > 0 && keep[j - 1] > keep[j]; --j) {
      const int t = keep[j];
      keep[j] = keep[j - 1];
      keep[j - 1] = t;
    }
  }
  unsigned first = 3;
  for (int fd : keep) {
    if (fd < static_cast<int>(first)) continue;
    if (static_cast<unsigned>(fd) > first) {
      if (::close_range(first, static_cast<unsigned>(fd) - 1, 0) < 0) {
        FailInChild(p.report_fd, ChildStep::kCloseInherited, errno, "close_range");
      }
    }
    first = static_cast<unsigned>(fd) + 1;
  }
  if (::close_range(first, ~0U, 0) < 0)
    FailInChild(p.report_fd, ChildStep::kCloseInherited, errno, "close_range");
}

}  // namespace

[[noreturn]] void RunChild(const ChildPlan& p) {
  const int rfd = p.report_fd;
  // The supervisor's signal dispositions and mask must not leak into the sandbox.
  struct sigaction dfl;
  std::memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) ::sigaction(sig, &dfl, nullptr);  // fails for KILL/STOP only
  sigset_t all;
  sigfillset(&all);
  ::sigprocmask(SIG_SETMASK, &all, nullptr);  // the init loop takes signals with sigwaitinfo

  CloseInheritedFds(p);

  if (p.wait_for_go) {
    char go = 0;
    ssize_t n;
    do {
      n = ::recv(rfd, &go, 1, 0);
    } while (n < 0 && errno == EINTR);
    if (n != 1) ::_exit(125);  // the parent gave up; nobody to report to
  }
  BeginStepInChild(p, ChildStep::kOomScoreAdj);
  if (p.set_oom_score_adj) SetOomScoreAdj(p);
  BeginStepInChild(p, ChildStep::kSetsid);
  if (::setsid() < 0) FailInChild(rfd, ChildStep::kSetsid, errno, "setsid");
  BeginStepInChild(p, ChildStep::kMountPrivate);
  if (p.isolate_filesystem) SetUpFilesystemInChild(p);
  BeginStepInChild(p, ChildStep::kChdirWorkspace);
  if (p.workspace != nullptr && ::chdir(p.workspace) < 0) {
    FailInChild(rfd, ChildStep::kChdirWorkspace, errno, p.workspace);
  }
  BeginStepInChild(p, ChildStep::kHostname);
  if (p.hostname != nullptr && ::sethostname(p.hostname, std::strlen(p.hostname)) < 0) {
    FailInChild(rfd, ChildStep::kHostname, errno, p.hostname);
  }
  BeginStepInChild(p, ChildStep::kLoopback);
  if (p.loopback_up) BringLoopbackUp(p);
  if (p.netns_fd >= 0) {
    if (::setns(p.netns_fd, CLONE_NEWNET) < 0) {
      FailInChild(rfd, ChildStep::kLoopback, errno, "setns(network namespace)");
    }
    ::close(p.netns_fd);
  }
  BeginStepInChild(p, ChildStep::kRlimit);
  for (size_t i = 0; i < p.rlimit_count; ++i) {
    if (::setrlimit(static_cast<__rlimit_resource>(p.rlimits[i].resource), &p.rlimits[i].limit) <
        0) {
      FailInChild(rfd, ChildStep::kRlimit, errno, "setrlimit");
    }
  }
  BeginStepInChild(p, ChildStep::kCapBoundingSet);
  DropCredentialsInChild(p);
  BeginStepInChild(p, ChildStep::kParentDeathSignal);
  // Set after the uid change, which clears it. If the supervisor dies, init
  // dies, and the kernel kills the rest of the pid namespace (for an outlive_parent
  // session, only until the command runs: RunInit clears it).
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) {
    FailInChild(rfd, ChildStep::kParentDeathSignal, errno, "PR_SET_PDEATHSIG");
  }
  // The supervisor may have died before the prctl: its pidfd tells.
  if (p.parent_pidfd >= 0) {
    struct pollfd pfd = {p.parent_pidfd, POLLIN, 0};
    if (::poll(&pfd, 1, 0) != 0) ::_exit(125);
    ::close(p.parent_pidfd);
  }
  if (p.outlive_parent) {
    // A session that outlives its supervisor lives on only while someone can adopt it: while
    // some process (the supervisor, systemd's fd store) holds the supervisor's end of the
    // handshake socket. O_ASYNC makes the kernel queue SIGIO (with F_SETSIG: si_code POLL_HUP)
    // when the last holder closes it (unix_release_sock wakes the peer); the init loop then
    // leaves, which ends the namespace. Set here, before seccomp (the policy's filter binds
    // init too) and after GO, the only data the supervisor ever sends (which would raise SIGIO
    // as well). Every signal is blocked, so nothing is delivered before the loop takes it.
    if (::fcntl(rfd, F_SETOWN, ::getpid()) < 0 || ::fcntl(rfd, F_SETSIG, SIGIO) < 0) {
      FailInChild(rfd, ChildStep::kParentDeathSignal, errno, "fcntl(F_SETOWN) report socket");
    }
    const int fl = ::fcntl(rfd, F_GETFL);
    if (fl < 0 || ::fcntl(rfd, F_SETFL, fl | O_ASYNC) < 0) {
      FailInChild(rfd, ChildStep::kParentDeathSignal, errno, "fcntl(O_ASYNC) report socket");
    }
  }
  BeginStepInChild(p, ChildStep::kCloseFds);
  if (::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
    FailInChild(rfd, ChildStep::kCloseFds, errno, "close_range");
  BeginStepInChild(p, ChildStep::kNoNewPrivs);
  if (p.no_new_privs && ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
    FailInChild(rfd, ChildStep::kNoNewPrivs, errno, "PR_SET_NO_NEW_PRIVS");
  }
  BeginStepInChild(p, ChildStep::kSeccomp);
  if (p.seccomp != nullptr) {
    if (const int err = InstallSeccompInChild(p.seccomp); err != 0) {
      FailInChild(rfd, ChildStep::kSeccomp, err, "seccomp");
    }
  }

  BeginStepInChild(p, ChildStep::kForkCommand);
  int exec_pipe[2];
  if (::pipe2(exec_pipe, O_CLOEXEC) < 0) FailInChild(rfd, ChildStep::kForkCommand, errno, "pipe2");
  // A raw fork: glibc's fork() runs atfork handlers and takes malloc locks
  // that another supervisor thread may have held at clone time.
  const long pid = ::syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
  if (pid < 0) FailInChild(rfd, ChildStep::kForkCommand, errno, "clone");
  if (pid == 0) {
    ::close(exec_pipe[0]);
    ::close(rfd);
    RunCommand(p, exec_pipe[1]);
  }
  ::close(exec_pipe[1]);
  RunInit(p, static_cast<pid_t>(pid), exec_pipe[0]);
}

const char* ChildStepName(ChildStep step) {
  switch (step) {
    case ChildStep::kNone:
      return "none";
    case ChildStep::kCloseInherited:
      return "close inherited fds";
    case ChildStep::kMountCgroup:
      return "mount /sys/fs/cgroup";
    case ChildStep::kWaitGo:
      return "wait for parent";
    case ChildStep::kParentDeathSignal:
      return "parent-death signal";
    case ChildStep::kSetsid:
      return "setsid";
    case ChildStep::kMountPrivate:
      return "make mounts private";
    case ChildStep::kMountCloneRoot:
      return "clone root";
    case ChildStep::kMountRootReadOnly:
      return "make root read-only";
    case ChildStep::kMountStaging:
      return "mount staging";
    case ChildStep::kMountAttachRoot:
      return "attach root";
    case ChildStep::kMountBind:
      return "mount";
    case ChildStep::kMountProc:
      return "mount /proc";
    case ChildStep::kMountDev:
      return "mount /dev";
    case ChildStep::kMountTmp:
      return "mount /tmp";
    case ChildStep::kTaskFile:
      return "write the task file in /tmp";
    case ChildStep::kMountHide:
      return "hide";
    case ChildStep::kPivotRoot:
      return "pivot_root";
    case ChildStep::kChdirWorkspace:
      return "chdir";
    case ChildStep::kHostname:
      return "sethostname";
    case ChildStep::kLoopback:
      return "loopback up";
    case ChildStep::kRlimit:
      return "setrlimit";
    case ChildStep::kCapBoundingSet:
      return "drop bounding set";
    case ChildStep::kSetgroups:
      return "setgroups";
    case ChildStep::kSetgid:
      return "setresgid";
    case ChildStep::kSetuid:
      return "setresuid";
    case ChildStep::kCapClear:
      return "clear capabilities";
    case ChildStep::kCloseFds:
      return "close fds";
    case ChildStep::kNoNewPrivs:
      return "no_new_privs";
    case ChildStep::kSeccomp:
      return "seccomp";
    case ChildStep::kForkCommand:
      return "fork command";
    case ChildStep::kStdio:
      return "stdio";
    case ChildStep::kControllingTty:
      return "controlling tty";
    case ChildStep::kExec:
      return "exec";
    case ChildStep::kReportStarted:
      return "report started";
    case ChildStep::kOomScoreAdj:
      return "oom_score_adj";
    case ChildStep::kMountHome:
      return "mount the session's home";
  }
  return "unknown step";
}

}  // namespace mp::sandbox
