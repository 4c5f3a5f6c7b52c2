// mp_probe: one program with a subcommand per escape attempt, run inside the
// sandbox by tests/attack. Each subcommand prints one line and exits with
//   10  ESCAPED  — the attempt worked: the protection did not hold
//   20  BLOCKED  — the attempt failed the way the protection makes it fail
//   other       — the probe itself could not run the attempt (a test failure)
// Linked statically, so it runs the same whatever the sandbox's view hides.
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/io_uring.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <dirent.h>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

namespace {

constexpr int kEscaped = 10;
constexpr int kBlocked = 20;
constexpr int kProbeError = 30;

int Escaped(const std::string& what) {
  std::printf("ESCAPED: %s\n", what.c_str());
  std::fflush(stdout);
  return kEscaped;
}

int Blocked(const std::string& what, int err) {
  std::printf("BLOCKED: %s: %s\n", what.c_str(), err != 0 ? strerrorname_np(err) : "-");
  std::fflush(stdout);
  return kBlocked;
}

int ProbeError(const std::string& what) {
  std::printf("PROBE-ERROR: %s: %s\n", what.c_str(), std::strerror(errno));
  std::fflush(stdout);
  return kProbeError;
}

int ReadFile(const char* path) {
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Blocked(std::string("open ") + path, errno);
  char buf[64];
  const ssize_t n = ::read(fd, buf, sizeof buf);
  ::close(fd);
  if (n < 0) return Blocked(std::string("read ") + path, errno);
  if (n == 0) return Blocked(std::string("read ") + path + " (empty: hidden)", 0);
  return Escaped(std::string("read ") + std::to_string(n) + " bytes of " + path);
}

int WriteFile(const char* path) {
  const int fd = ::open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Blocked(std::string("create ") + path, errno);
  const ssize_t n = ::write(fd, "pwned\n", 6);
  ::close(fd);
  if (n != 6) return Blocked(std::string("write ") + path, errno);
  return Escaped(std::string("wrote ") + path);
}

int SignalPid(const char* pid_text) {
  const pid_t pid = static_cast<pid_t>(std::atoi(pid_text));
  std::string proc = std::string("/proc/") + pid_text;
  struct stat st;
  const bool visible = ::stat(proc.c_str(), &st) == 0;
  if (::kill(pid, SIGUSR1) == 0) return Escaped("signalled pid " + std::string(pid_text));
  const int err = errno;
  if (visible) return Escaped("saw " + proc + " (signal failed)");
  return Blocked("kill " + std::string(pid_text), err);
}

int Ptrace() {
  const pid_t child = ::fork();
  if (child == 0) {
    ::pause();
    ::_exit(0);
  }
  if (child < 0) return ProbeError("fork");
  const long rc = ::ptrace(PTRACE_ATTACH, child, nullptr, nullptr);
  const int err = errno;
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  if (rc == 0) return Escaped("PTRACE_ATTACH to a child");
  return Blocked("PTRACE_ATTACH", err);
}

int Mount() {
  if (::mount("none", "/tmp", "tmpfs", 0, nullptr) == 0) return Escaped("mounted a tmpfs on /tmp");
  return Blocked("mount tmpfs", errno);
}

int LoadModule() {
  // An empty image: past the permission checks the loader rejects it (ENOEXEC,
  // EINVAL, ...); only EPERM means the call was refused before reaching it.
  static const char image[16] = {};
  const long rc = ::syscall(SYS_init_module, image, sizeof image, "");
  if (rc == 0 || errno != EPERM)
    return Escaped(std::string("init_module reached the loader: ") +
                   (rc == 0 ? "ok" : strerrorname_np(errno)));
  return Blocked("init_module", errno);
}

int UserNamespace() {
  if (::unshare(CLONE_NEWUSER) == 0) return Escaped("unshare(CLONE_NEWUSER)");
  const int err = errno;
  const pid_t pid = static_cast<pid_t>(::syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0));
  if (pid == 0) ::_exit(0);
  if (pid > 0) {
    ::waitpid(pid, nullptr, 0);
    return Escaped("clone(CLONE_NEWUSER)");
  }
  return Blocked("unshare/clone CLONE_NEWUSER", err);
}

// TIOCSTI needs the terminal to be our controlling terminal: make a PTY ours.
int Tiocsti(bool high_bits) {
  const int master = ::posix_openpt(O_RDWR | O_NOCTTY);
  if (master < 0 || ::grantpt(master) < 0 || ::unlockpt(master) < 0) return ProbeError("openpt");
  const char* name = ::ptsname(master);
  if (name == nullptr) return ProbeError("ptsname");
  int pipefd[2];
  if (::pipe(pipefd) < 0) return ProbeError("pipe");
  const pid_t child = ::fork();
  if (child == 0) {
    ::setsid();
    const int slave = ::open(name, O_RDWR);  // becomes the controlling terminal
    int result[2] = {-1, 0};
    if (slave >= 0) {
      char c = 'x';
      unsigned long req = TIOCSTI;
      if (high_bits) req |= 1ul << 32;
      result[0] = static_cast<int>(::syscall(SYS_ioctl, slave, req, &c));
      result[1] = errno;
    } else {
      result[1] = errno;
    }
    if (::write(pipefd[1], result, sizeof result) != sizeof result) ::_exit(1);
    ::_exit(0);
  }
  int result[2] = {-1, 0};
  ::close(pipefd[1]);
  const ssize_t n = ::read(pipefd[0], result, sizeof result);
  ::waitpid(child, nullptr, 0);
  if (n != sizeof result) return ProbeError("child report");
  const std::string what = high_bits ? "TIOCSTI|1<<32" : "TIOCSTI";
  if (result[0] == 0) return Escaped(what + " injected a byte");
  return Blocked(what, result[1]);
}

int TiocLinux() {
  const int master = ::posix_openpt(O_RDWR | O_NOCTTY);
  if (master < 0) return ProbeError("openpt");
  char sub = 0;  // any subcode: only EPERM means the filter answered
  errno = 0;
  const long rc = ::syscall(SYS_ioctl, master, 0x541CUL /* TIOCLINUX */, &sub);
  if (rc == 0 || errno != EPERM)
    return Escaped(std::string("TIOCLINUX reached the driver: ") +
                   (rc == 0 ? "ok" : strerrorname_np(errno)));
  return Blocked("TIOCLINUX", errno);
}

int ConnectTcp(const char* port_text) {
  const int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) return Blocked("socket", errno);
  struct sockaddr_in a {};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(std::atoi(port_text)));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    return Escaped(std::string("connected to the host's 127.0.0.1:") + port_text);
  }
  return Blocked(std::string("connect 127.0.0.1:") + port_text, errno);
}

int ConnectUnix(const char* path) {
  const int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) return Blocked("socket", errno);
  struct sockaddr_un a {};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
  if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    return Escaped(std::string("connected to ") + path);
  }
  return Blocked(std::string("connect ") + path, errno);
}

int ForkBomb(const char* limit_text) {
  const int limit = std::atoi(limit_text);
  int made = 0;
  int err = 0;
  for (; made < limit; ++made) {
    const pid_t p = ::fork();
    if (p == 0) {
      ::pause();
      ::_exit(0);
    }
    if (p < 0) {
      err = errno;
      break;
    }
  }
  if (made >= limit) return Escaped("forked " + std::to_string(made) + " processes");
  return Blocked("fork #" + std::to_string(made + 1), err);
}

int Allocate(const char* mib_text) {
  const size_t size = static_cast<size_t>(std::atol(mib_text)) << 20;
  char* p = static_cast<char*>(
      ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (p == MAP_FAILED) return Blocked("mmap", errno);
  for (size_t i = 0; i < size; i += 4096) p[i] = 1;
  return Escaped(std::string("touched ") + mib_text + " MiB");
}

// Touches `mib` MiB, says "held", and keeps them until killed (the OOM tests' session).
int AllocateAndHold(const char* mib_text) {
  const size_t size = static_cast<size_t>(std::atol(mib_text)) << 20;
  char* p = static_cast<char*>(
      ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (p == MAP_FAILED) return Blocked("mmap", errno);
  for (size_t i = 0; i < size; i += 4096) p[i] = 1;
  std::printf("held %s MiB\n", mib_text);
  std::fflush(stdout);
  for (;;) ::pause();
}

int Euid() {
  if (::geteuid() == 0) return Escaped("euid 0 after exec");
  return Blocked("euid " + std::to_string(::geteuid()), 0);
}

int ExecSetuid(const char* path) {
  // The copy is setuid root; it runs the `euid` check.
  ::execl(path, path, "euid", static_cast<char*>(nullptr));
  return Blocked(std::string("exec ") + path, errno);
}

int LeaveCgroup() {
  const int fd = ::open("/sys/fs/cgroup/cgroup.procs", O_WRONLY | O_CLOEXEC);
  if (fd < 0) return Blocked("open /sys/fs/cgroup/cgroup.procs", errno);
  const std::string pid = std::to_string(::getpid());
  if (::write(fd, pid.data(), pid.size()) < 0) return Blocked("write cgroup.procs", errno);
  return Escaped("moved into the cgroup root");
}

int ReadEnviron(const char* needle) {
  if (::getenv("MP_ATTACK_SECRET") != nullptr) return Escaped("secret in own environment");
  DIR* d = ::opendir("/proc");
  if (d == nullptr) return ProbeError("opendir /proc");
  int readable = 0;
  while (const dirent* e = ::readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    const std::string path = std::string("/proc/") + e->d_name + "/environ";
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    std::string text;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) text.append(buf, static_cast<size_t>(n));
    ::close(fd);
    ++readable;
    if (text.find(needle) != std::string::npos) {
      ::closedir(d);
      return Escaped("found the secret in " + path);
    }
  }
  ::closedir(d);
  return Blocked("secret in none of " + std::to_string(readable) + " readable environ files", 0);
}

int IoUring() {
  struct io_uring_params params {};
  const long fd = ::syscall(SYS_io_uring_setup, 4, &params);
  if (fd >= 0) return Escaped("io_uring_setup");
  return Blocked("io_uring_setup", errno);
}

int Bpf() {
  union bpf_attr attr;
  std::memset(&attr, 0, sizeof attr);
  attr.map_type = BPF_MAP_TYPE_ARRAY;
  attr.key_size = 4;
  attr.value_size = 4;
  attr.max_entries = 1;
  const long fd = ::syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr);
  if (fd >= 0) return Escaped("bpf(BPF_MAP_CREATE)");
  return Blocked("bpf(BPF_MAP_CREATE)", errno);
}

int SleepForever();

// Leaves a grandchild in its own session that outlives this process, named by `token`.
int Daemonize(const char* self, const char* token) {
  // A close-on-exec pipe: its write end closes in every process once the grandchild has
  // exec'd (its cmdline carries the token) and the middle child has exited.
  int execd[2];
  if (::pipe2(execd, O_CLOEXEC) != 0) return ProbeError("pipe2");
  const pid_t p = ::fork();
  if (p < 0) return ProbeError("fork");
  if (p == 0) {
    ::setsid();
    if (::fork() == 0) {
      ::execl(self, self, "sleep-forever", token, static_cast<char*>(nullptr));
      ::_exit(1);
    }
    ::_exit(0);
  }
  ::close(execd[1]);
  ::waitpid(p, nullptr, 0);
  char byte;
  while (::read(execd[0], &byte, 1) < 0 && errno == EINTR) {
  }
  ::close(execd[0]);
  std::printf("DAEMONIZED\n");
  std::fflush(stdout);  // stdout is a pipe: fully buffered
  return 0;
}

int DaemonizeAndWait(const char* self, const char* token) {
  const int rc = Daemonize(self, token);
  if (rc != 0) return rc;
  return SleepForever();
}

int SleepForever() {
  signal(SIGTERM, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  for (;;) ::pause();
}

int SocketFamily(const char* family_text) {
  const int family = std::atoi(family_text);
  const int s = ::socket(family, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  const int err = errno;
  if (s >= 0) return Escaped("socket(" + std::string(family_text) + ")");
  // EAFNOSUPPORT is the filter's answer; anything else came from the family itself.
  if (err != EAFNOSUPPORT)
    return Escaped("socket(" + std::string(family_text) +
                   ") reached the family: " + strerrorname_np(err));
  return Blocked("socket(" + std::string(family_text) + ")", err);
}

// Everything that makes the kernel load a rarely used module on a user's behalf: each line
// discipline through TIOCSETD on a fresh pty, socket families beyond unix/inet/inet6/netlink,
// inet and inet6 protocols beyond TCP/UDP/ICMP, and every netlink family but route. The
// verdict is not this process's to give (a filtered call and a missing module both fail with
// the same errno): the test counts the host's loaded modules and autoload requests around
// it. Prints how many attempts the kernel accepted and exits 0 once all were made.
int KernelSurface() {
  int tried = 0;
  int accepted = 0;
  const auto note = [&](const std::string& what, long rc, int err) {
    ++tried;
    if (rc >= 0) ++accepted;
    std::printf("%s: %s\n", what.c_str(), rc >= 0 ? "accepted" : strerrorname_np(err));
    std::fflush(stdout);  // each autoload takes a while: show progress
  };
  // Line disciplines 1..30 (N_SLIP .. N_CAN327): an unregistered one is autoloaded as
  // tty-ldisc-N while dev.tty.ldisc_autoload is 1.
  for (int ldisc = 1; ldisc <= 30; ++ldisc) {
    const int master = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0 || ::grantpt(master) < 0 || ::unlockpt(master) < 0) return ProbeError("openpt");
    const char* name = ::ptsname(master);
    const int slave = name != nullptr ? ::open(name, O_RDWR | O_NOCTTY | O_CLOEXEC) : -1;
    if (slave < 0) return ProbeError("open pty slave");
    const long rc = ::syscall(SYS_ioctl, slave, TIOCSETD, &ldisc);
    note("TIOCSETD " + std::to_string(ldisc), rc, errno);
    ::close(slave);
    ::close(master);
  }
  // Families 3..45 but inet6 (10) and netlink (16): each unregistered one is net-pf-F,
  // requested before the type is looked at.
  for (int family = 3; family <= 45; ++family) {
    if (family == AF_INET6 || family == AF_NETLINK) continue;
    const int s = ::socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    note("socket(" + std::to_string(family) + ", SOCK_DGRAM, 0)", s, errno);
    if (s >= 0) ::close(s);
  }
  // Protocols, as net-pf-F-proto-P-type-T then net-pf-F-proto-P: SCTP (132), DCCP (33, type
  // SOCK_DCCP), L2TP (115), UDP-Lite (136), MPTCP (262).
  const int protocols[][2] = {
      {132, SOCK_STREAM}, {33, 6}, {115, SOCK_DGRAM}, {136, SOCK_DGRAM}, {262, SOCK_STREAM}};
  for (int family : {AF_INET, AF_INET6}) {
    for (const auto& [protocol, type] : protocols) {
      const int s = ::socket(family, type | SOCK_CLOEXEC, protocol);
      note("socket(" + std::to_string(family) + ", " + std::to_string(type) + ", " +
               std::to_string(protocol) + ")",
           s, errno);
      if (s >= 0) ::close(s);
    }
  }
  // Netlink families 1..31 (net-pf-16-proto-P).
  for (int protocol = 1; protocol <= 31; ++protocol) {
    const int s = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol);
    note("socket(AF_NETLINK, " + std::to_string(protocol) + ")", s, errno);
    if (s >= 0) ::close(s);
  }
  std::printf("tried %d, accepted %d\n", tried, accepted);
  return 0;
}

// Writes `bytes` of xorshift64 data (seeded with `seed`) to stdout in 64 KiB
// writes; tests compute the same stream to check what arrived byte for byte.
int Emit(const char* bytes_text, const char* seed_text) {
  uint64_t left = std::strtoull(bytes_text, nullptr, 10);
  uint64_t x = std::strtoull(seed_text, nullptr, 10) | 1;
  static uint8_t buf[65536];
  while (left > 0) {
    const size_t n = left < sizeof buf ? static_cast<size_t>(left) : sizeof buf;
    for (size_t i = 0; i < n; i += 8) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      std::memcpy(buf + i, &x, n - i < 8 ? n - i : 8);
    }
    size_t off = 0;
    while (off < n) {
      const ssize_t w = ::write(1, buf + off, n - off);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return ProbeError("write");
      off += static_cast<size_t>(w);
    }
    left -= n;
  }
  return 0;
}

// Walks the tree the sandbox sees (without following symlinks; not /proc, /sys or /usr, which
// hold no listening sockets on a sane host and are large), where host services keep their
// sockets first (/run, /var/run, /tmp, /var, /home, /root, /srv), then every other top-level
// directory, and tries to connect to each Unix socket file it finds (stream, datagram,
// seqpacket). ESCAPED at the first that answers (a host service reachable from the session);
// BLOCKED when the whole view holds none that does. Looking at more than kMaxEntries entries
// is a probe error: the allowlisted view is small, and a probe that stopped early proves nothing.
constexpr int kMaxEntries = 200000;

struct SocketWalk {
  std::string reached;
  int seen = 0;
  int entries = 0;
};

void FindSockets(const std::string& dir, int depth, SocketWalk* w) {
  if (depth > 24 || !w->reached.empty() || w->entries > kMaxEntries) return;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return;
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    if (++w->entries > kMaxEntries || !w->reached.empty()) break;
    const std::string path = (dir == "/" ? "" : dir) + "/" + name;
    if (path == "/proc" || path == "/sys" || path == "/usr") continue;
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      FindSockets(path, depth + 1, w);
    } else if (S_ISSOCK(st.st_mode)) {
      ++w->seen;
      for (const int type : {SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET}) {
        const int s = ::socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
        if (s < 0) continue;
        struct sockaddr_un a {};
        a.sun_family = AF_UNIX;
        std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
        const bool ok = ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
        ::close(s);
        if (ok) {
          w->reached = path;
          break;
        }
      }
    }
  }
  ::closedir(d);
}

int UnixSockets() {
  SocketWalk w;
  for (const char* first : {"/run", "/var/run", "/tmp", "/var", "/home", "/root", "/srv"}) {
    FindSockets(first, 1, &w);
  }
  FindSockets("/", 0, &w);  // the rest (the directories above are walked again: cheap)
  if (!w.reached.empty()) return Escaped("connected to " + w.reached);
  if (w.entries > kMaxEntries) {
    errno = E2BIG;
    return ProbeError("more than " + std::to_string(kMaxEntries) + " entries in the view");
  }
  return Blocked("no reachable Unix socket among " + std::to_string(w.seen) + " found", 0);
}

int WhoAmI() {
  std::printf("uid=%d euid=%d gid=%d pid=%d\n", ::getuid(), ::geteuid(), ::getgid(), ::getpid());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: mp_probe SUBCOMMAND [ARG]\n");
    return 2;
  }
  const std::string cmd = argv[1];
  const char* arg = argc > 2 ? argv[2] : "";
  if (cmd == "read-file") return ReadFile(arg);
  if (cmd == "write-file") return WriteFile(arg);
  if (cmd == "signal-pid") return SignalPid(arg);
  if (cmd == "ptrace") return Ptrace();
  if (cmd == "mount") return Mount();
  if (cmd == "load-module") return LoadModule();
  if (cmd == "userns") return UserNamespace();
  if (cmd == "tiocsti") return Tiocsti(false);
  if (cmd == "tiocsti-high") return Tiocsti(true);
  if (cmd == "tioclinux") return TiocLinux();
  if (cmd == "connect-tcp") return ConnectTcp(arg);
  if (cmd == "connect-unix") return ConnectUnix(arg);
  if (cmd == "fork-bomb") return ForkBomb(arg);
  if (cmd == "allocate") return Allocate(arg);
  if (cmd == "allocate-and-hold") return AllocateAndHold(arg);
  if (cmd == "euid") return Euid();
  if (cmd == "exec-setuid") return ExecSetuid(arg);
  if (cmd == "leave-cgroup") return LeaveCgroup();
  if (cmd == "read-environ") return ReadEnviron(arg);
  if (cmd == "io-uring") return IoUring();
  if (cmd == "bpf") return Bpf();
  if (cmd == "daemonize") return Daemonize(argv[0], arg);
  if (cmd == "daemonize-and-wait") return DaemonizeAndWait(argv[0], arg);
  if (cmd == "sleep-forever") return SleepForever();
  if (cmd == "whoami") return WhoAmI();
  if (cmd == "unix-sockets") return UnixSockets();
  if (cmd == "socket-family") return SocketFamily(arg);
  if (cmd == "kernel-surface") return KernelSurface();
  if (cmd == "emit") return Emit(arg, argc > 3 ? argv[3] : "1");
  std::fprintf(stderr, "mp_probe: unknown subcommand %s\n", cmd.c_str());
  return 2;
}
