// The child's fixed sequence (style.md example 4). Order matters:
//   signals reset → (GO) → setsid → filesystem view → hostname → loopback →
//   rlimits → bounding set and securebits (need CAP_SETPCAP) → setgroups/
//   setresgid/setresuid → clear capabilities → parent-death signal (cleared
//   by the uid change, so set after it) → mark fds CLOEXEC → no_new_privs →
//   seccomp, last → fork the command → init loop.
// Nothing here allocates: paths come from the plan, numbers are formatted
// into stack buffers.
#include "sandbox/child.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <linux/securebits.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>

namespace mp::sandbox {
namespace {

size_t CopyTruncated(char* dst, size_t cap, const char* src) {
  size_t i = 0;
  if (src != nullptr) {
    for (; i + 1 < cap && src[i] != '\0'; ++i) dst[i] = src[i];
  }
  dst[i] = '\0';
  return i;
}

void SendReport(int fd, const SpawnReport& report) {
  // write(), not send(): `fd` is the SEQPACKET socket or, in the command's
  // process, the exec-status pipe. Both take the record whole. SIGPIPE is
  // blocked here, so a vanished reader gives EPIPE, not death.
  while (::write(fd, &report, sizeof report) < 0 && errno == EINTR) {
  }
}

[[noreturn]] void Fail(int report_fd, ChildStep step, int errnum, const char* detail) {
  SpawnReport r;
  std::memset(&r, 0, sizeof r);
  r.kind = SpawnReport::kFailed;
  r.step = static_cast<uint32_t>(step);
  r.errnum = errnum;
  CopyTruncated(r.detail, sizeof r.detail, detail);
  SendReport(report_fd, r);
  ::_exit(126);
}

// Formats v in decimal into buf (>= 21 bytes).
const char* FormatU64(uint64_t v, char* buf) {
  char tmp[21];
  size_t n = 0;
  do {
    tmp[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  for (size_t i = 0; i < n; ++i) buf[i] = tmp[n - 1 - i];
  buf[n] = '\0';
  return buf;
}

int OpenAt2(int dirfd, const char* path, uint64_t flags, uint64_t resolve) {
  struct open_how how;
  std::memset(&how, 0, sizeof how);
  how.flags = flags;
  how.resolve = resolve;
  return static_cast<int>(::syscall(SYS_openat2, dirfd, path, &how, sizeof how));
}

// Opens `path` (absolute, as the sandbox sees it) below new_root without
// following any symlink: a link planted in a writable tree cannot redirect a mount.
int OpenInRoot(int new_root, const char* path) {
  return OpenAt2(new_root, path, O_PATH | O_CLOEXEC,
                 RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
}

// fsopen + fsconfig + fsmount: a detached mount of a fresh file system.
int MakeFs(const char* type, const char* const* options, unsigned attrs) {
  const int fs = ::fsopen(type, FSOPEN_CLOEXEC);
  if (fs < 0) return -1;
  for (size_t i = 0; options != nullptr && options[i] != nullptr; i += 2) {
    // An empty value names a flag option ("newinstance"): SET_STRING would be EINVAL.
    const bool flag = options[i + 1][0] == '\0';
    const int rc = flag ? ::fsconfig(fs, FSCONFIG_SET_FLAG, options[i], nullptr, 0)
                        : ::fsconfig(fs, FSCONFIG_SET_STRING, options[i], options[i + 1], 0);
    if (rc < 0) {
      const int e = errno;
      ::close(fs);
      errno = e;
      return -1;
    }
  }
  if (::fsconfig(fs, FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) < 0) {
    const int e = errno;
    ::close(fs);
    errno = e;
    return -1;
  }
  const int mnt = ::fsmount(fs, FSMOUNT_CLOEXEC, attrs);
  const int e = errno;
  ::close(fs);
  errno = e;
  return mnt;
}

int AttachAt(int mount_fd, int target_fd) {
  return ::move_mount(mount_fd, "", target_fd, "",
                      MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
}

int SetAttr(int mount_fd, uint64_t set, uint64_t clr) {
  struct mount_attr attr;
  std::memset(&attr, 0, sizeof attr);
  attr.attr_set = set;
  attr.attr_clr = clr;
  return ::mount_setattr(mount_fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr);
}

void BindDevice(const ChildPlan& p, int dev_mnt, const char* name, const char* host_path) {
  const int f = ::openat(dev_mnt, name, O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0666);
  if (f < 0) Fail(p.report_fd, ChildStep::kMountDev, errno, name);
  ::close(f);
  const int tree = ::open_tree(AT_FDCWD, host_path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
  if (tree < 0) Fail(p.report_fd, ChildStep::kMountDev, errno, host_path);
  if (::move_mount(tree, "", dev_mnt, name, MOVE_MOUNT_F_EMPTY_PATH) < 0) {
    Fail(p.report_fd, ChildStep::kMountDev, errno, host_path);
  }
  ::close(tree);
}

void SetupDev(const ChildPlan& p, int new_root) {
  const char* const dev_opts[] = {"mode", "0755", "size", "65536", nullptr};
  const int dev = MakeFs("tmpfs", dev_opts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC);
  if (dev < 0) Fail(p.report_fd, ChildStep::kMountDev, errno, "/dev");
  const int target = OpenInRoot(new_root, "/dev");
  if (target < 0 || AttachAt(dev, target) < 0)
    Fail(p.report_fd, ChildStep::kMountDev, errno, "/dev");
  ::close(target);
  // `dev` still names the root of the mount just attached: use it as the dirfd.
  BindDevice(p, dev, "null", "/dev/null");
  BindDevice(p, dev, "zero", "/dev/zero");
  BindDevice(p, dev, "full", "/dev/full");
  BindDevice(p, dev, "random", "/dev/random");
  BindDevice(p, dev, "urandom", "/dev/urandom");
  BindDevice(p, dev, "tty", "/dev/tty");
  struct Link {
    const char* target;
    const char* name;
  };
  const Link links[] = {{"/proc/self/fd", "fd"},
                        {"/proc/self/fd/0", "stdin"},
                        {"/proc/self/fd/1", "stdout"},
                        {"/proc/self/fd/2", "stderr"},
                        {"pts/ptmx", "ptmx"}};
  for (const Link& l : links) {
    if (::symlinkat(l.target, dev, l.name) < 0)
      Fail(p.report_fd, ChildStep::kMountDev, errno, l.name);
  }
  if (::mkdirat(dev, "pts", 0755) < 0 || ::mkdirat(dev, "shm", 01777) < 0) {
    Fail(p.report_fd, ChildStep::kMountDev, errno, "/dev/pts");
  }
  // A private devpts instance: the sandbox sees only terminals it opens itself.
  const char* const pts_opts[] = {"newinstance", "", "ptmxmode", "0666", "mode", "0620", nullptr};
  const int pts = MakeFs("devpts", pts_opts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC);
  if (pts < 0) Fail(p.report_fd, ChildStep::kMountDev, errno, "/dev/pts");
  if (::move_mount(pts, "", dev, "pts", MOVE_MOUNT_F_EMPTY_PATH) < 0) {
    Fail(p.report_fd, ChildStep::kMountDev, errno, "/dev/pts");
  }
  const char* const shm_opts[] = {"mode", "1777", "size", "67108864", nullptr};
  const int shm = MakeFs("tmpfs", shm_opts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
  if (shm < 0 || ::move_mount(shm, "", dev, "shm", MOVE_MOUNT_F_EMPTY_PATH) < 0) {
    Fail(p.report_fd, ChildStep::kMountDev, errno, "/dev/shm");
  }
  ::close(pts);
  ::close(shm);
  // Read-only from here on: nothing in the sandbox may add device nodes or links.
  if (SetAttr(dev, MOUNT_ATTR_RDONLY, 0) < 0)
    Fail(p.report_fd, ChildStep::kMountDev, errno, "/dev");
  // The recursive attribute change made pts and shm read-only too; reopen them.
  const int pts_dir = ::openat(dev, "pts", O_PATH | O_CLOEXEC | O_NOFOLLOW);
  const int shm_dir = ::openat(dev, "shm", O_PATH | O_CLOEXEC | O_NOFOLLOW);
  struct mount_attr rw;
  std::memset(&rw, 0, sizeof rw);
  rw.attr_clr = MOUNT_ATTR_RDONLY;
  if (pts_dir < 0 || shm_dir < 0 ||
      ::mount_setattr(pts_dir, "", AT_EMPTY_PATH, &rw, sizeof rw) < 0 ||
      ::mount_setattr(shm_dir, "", AT_EMPTY_PATH, &rw, sizeof rw) < 0) {
    Fail(p.report_fd, ChildStep::kMountDev, errno, "/dev/pts");
  }
  ::close(pts_dir);
  ::close(shm_dir);
  ::close(dev);
}

// What runc masks: /proc files that let uid 0 (even without capabilities)
// reach host-wide kernel state. Read-only binds over themselves, /dev/null
// over the rest. Harmless for unprivileged sessions, essential for root ones.
void MaskProc(const ChildPlan& p, int proc) {
  const char* const read_only[] = {"sys", "sysrq-trigger", "irq", "bus", "fs"};
  for (const char* name : read_only) {
    const int tree = ::open_tree(proc, name, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
    if (tree < 0) {
      if (errno == ENOENT) continue;
      Fail(p.report_fd, ChildStep::kMountProc, errno, name);
    }
    if (SetAttr(tree, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
                0) < 0 ||
        ::move_mount(tree, "", proc, name, MOVE_MOUNT_F_EMPTY_PATH) < 0) {
      Fail(p.report_fd, ChildStep::kMountProc, errno, name);
    }
    ::close(tree);
  }
  const char* const covered[] = {"kcore",         "kallsyms",    "timer_list", "keys",
                                 "latency_stats", "sched_debug", "scsi"};
  for (const char* name : covered) {
    const int probe = ::openat(proc, name, O_PATH | O_CLOEXEC | O_NOFOLLOW);
    if (probe < 0) continue;
    struct stat st;
    const bool dir = ::fstat(probe, &st) == 0 && S_ISDIR(st.st_mode);
    ::close(probe);
    int cover;
    if (dir) {
      const char* const opts[] = {"mode", "0", "size", "4096", "nr_inodes", "1", nullptr};
      cover = MakeFs("tmpfs", opts,
                     MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
    } else {
      cover = ::open_tree(AT_FDCWD, "/dev/null", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    }
    if (cover < 0 || ::move_mount(cover, "", proc, name, MOVE_MOUNT_F_EMPTY_PATH) < 0) {
      Fail(p.report_fd, ChildStep::kMountProc, errno, name);
    }
    ::close(cover);
  }
}

// Opens a bind target below new_root, creating missing components inside a
// (still writable) hidden directory. Elsewhere the read-only root refuses
// the mkdir and the target's absence is reported.
int EnsureTarget(const ChildPlan& p, int new_root, const char* target, bool is_dir) {
  const int fd = OpenInRoot(new_root, target);
  if (fd >= 0) return fd;
  if (errno != ENOENT) Fail(p.report_fd, ChildStep::kMountBind, errno, target);
  char prefix[4096];
  const size_t len = std::strlen(target);
  if (len >= sizeof prefix) Fail(p.report_fd, ChildStep::kMountBind, ENAMETOOLONG, target);
  size_t pos = 1;
  while (pos <= len) {
    size_t end = pos;
    while (end < len && target[end] != '/') ++end;
    std::memcpy(prefix, target, end);
    prefix[end] = '\0';
    const int probe = OpenInRoot(new_root, prefix);
    if (probe >= 0) {
      ::close(probe);
    } else if (errno == ENOENT) {
      // The parent exists (checked last round); create this component in it.
      const size_t slash = pos - 1;
      char parent[4096];
      std::memcpy(parent, target, slash == 0 ? 1 : slash);
      parent[slash == 0 ? 1 : slash] = '\0';
      const int dir = OpenInRoot(new_root, parent);
      if (dir < 0) Fail(p.report_fd, ChildStep::kMountBind, errno, target);
      const bool last = end == len;
      int rc;
      if (last && !is_dir) {
        rc =
            ::openat(dir, prefix + pos, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (rc >= 0) ::close(rc);
      } else {
        rc = ::mkdirat(dir, prefix + pos, 0755);
      }
      const int err = errno;
      ::close(dir);
      // EROFS: not inside a hidden directory: the target simply does not exist.
      if (rc < 0) Fail(p.report_fd, ChildStep::kMountBind, err == EROFS ? ENOENT : err, target);
    } else {
      Fail(p.report_fd, ChildStep::kMountBind, errno, target);
    }
    pos = end + 1;
  }
  const int made = OpenInRoot(new_root, target);
  if (made < 0) Fail(p.report_fd, ChildStep::kMountBind, errno, target);
  return made;
}

void SetupFilesystem(const ChildPlan& p) {
  const int rfd = p.report_fd;
  // Nothing we mount may propagate back to the host's namespace.
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0) {
    Fail(rfd, ChildStep::kMountPrivate, errno, "/");
  }
  // Clone every bind source before the staging tmpfs covers anything.
  int bind_trees[kMaxBinds];
  bool bind_is_dir[kMaxBinds];
  for (size_t i = 0; i < p.bind_count; ++i) {
    const PlanBind& b = p.binds[i];
    const int src = OpenAt2(AT_FDCWD, b.source, O_PATH | O_CLOEXEC,
                            RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
    if (src < 0) Fail(rfd, ChildStep::kMountBind, errno, b.source);
    struct stat st;
    if (::fstat(src, &st) < 0) Fail(rfd, ChildStep::kMountBind, errno, b.source);
    bind_is_dir[i] = S_ISDIR(st.st_mode);
    bind_trees[i] =
        ::open_tree(src, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | AT_RECURSIVE);
    if (bind_trees[i] < 0) Fail(rfd, ChildStep::kMountBind, errno, b.source);
    ::close(src);
    // Read-write binds never clear RDONLY: that would, recursively, make
    // writable what the host mounted read-only below the source.
    const uint64_t common = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    const int rc = b.mode == BindMode::kReadOnly
                       ? SetAttr(bind_trees[i], common | MOUNT_ATTR_RDONLY, 0)
                       : SetAttr(bind_trees[i], common, 0);
    if (rc < 0) Fail(rfd, ChildStep::kMountBind, errno, b.source);
  }
  const int root_tree =
      ::open_tree(AT_FDCWD, "/", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
  if (root_tree < 0) Fail(rfd, ChildStep::kMountCloneRoot, errno, "/");
  if (SetAttr(root_tree, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, 0) < 0) {
    Fail(rfd, ChildStep::kMountRootReadOnly, errno, "/");
  }
  if (::mount("mp-staging", p.staging_dir, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              "size=65536,mode=0700") < 0) {
    Fail(rfd, ChildStep::kMountStaging, errno, p.staging_dir);
  }
  if (::mkdir(p.staged_root, 0700) < 0) Fail(rfd, ChildStep::kMountStaging, errno, p.staged_root);
  if (::move_mount(root_tree, "", AT_FDCWD, p.staged_root, MOVE_MOUNT_F_EMPTY_PATH) < 0) {
    Fail(rfd, ChildStep::kMountAttachRoot, errno, p.staged_root);
  }
  const int new_root = root_tree;  // now attached: the root of the sandbox's tree

  // Hides come first, so that a bind may land inside a hidden directory: the
  // other workspaces under a root stay covered while this session's is shown.
  int hide_mounts[kMaxHides];
  size_t hide_count = 0;
  for (size_t i = 0; i < p.hide_count; ++i) {
    const PlanHide& h = p.hides[i];
    const int target = OpenInRoot(new_root, h.target);
    if (target < 0) {
      if (errno == ENOENT) continue;  // nothing there to hide
      Fail(rfd, ChildStep::kMountHide, errno, h.target);
    }
    int cover;
    if (h.is_directory) {
      const char* const opts[] = {"mode", "0755", "size", "65536", "nr_inodes", "1024", nullptr};
      cover = MakeFs("tmpfs", opts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
    } else {
      cover = ::open_tree(AT_FDCWD, "/dev/null", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
      if (cover >= 0 && SetAttr(cover, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV, 0) < 0) cover = -1;
    }
    if (cover < 0 || AttachAt(cover, target) < 0) Fail(rfd, ChildStep::kMountHide, errno, h.target);
    ::close(target);
    if (h.is_directory) {
      hide_mounts[hide_count++] = cover;
    } else {
      ::close(cover);
    }
  }

  for (size_t i = 0; i < p.bind_count; ++i) {
    const int target = EnsureTarget(p, new_root, p.binds[i].target, bind_is_dir[i]);
    if (AttachAt(bind_trees[i], target) < 0) {
      Fail(rfd, ChildStep::kMountBind, errno, p.binds[i].target);
    }
    ::close(target);
    ::close(bind_trees[i]);
  }

  const char* const proc_opts[] = {"hidepid", "invisible", nullptr};
  const int proc =
      MakeFs("proc", proc_opts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
  const int proc_target = OpenInRoot(new_root, "/proc");
  if (proc < 0 || proc_target < 0 || AttachAt(proc, proc_target) < 0) {
    Fail(rfd, ChildStep::kMountProc, errno, "/proc");
  }
  ::close(proc_target);
  MaskProc(p, proc);
  ::close(proc);

  // A fresh cgroup2 mount made inside the cgroup namespace shows only the
  // session's own leaf (for runtimes that size themselves from memory.max).
  const int cg_target = OpenInRoot(new_root, "/sys/fs/cgroup");
  if (cg_target >= 0) {
    const int cg =
        MakeFs("cgroup2", nullptr,
               MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
    if (cg < 0 || AttachAt(cg, cg_target) < 0)
      Fail(rfd, ChildStep::kMountCgroup, errno, "/sys/fs/cgroup");
    ::close(cg);
    ::close(cg_target);
  }

  SetupDev(p, new_root);

  char size_buf[24];
  const char* const tmp_opts[] = {"mode", "1777", "size", FormatU64(p.tmp_size_bytes, size_buf),
                                  nullptr};
  const int tmp = MakeFs("tmpfs", tmp_opts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
  const int tmp_target = OpenInRoot(new_root, "/tmp");
  if (tmp < 0 || tmp_target < 0 || AttachAt(tmp, tmp_target) < 0) {
    Fail(rfd, ChildStep::kMountTmp, errno, "/tmp");
  }
  ::close(tmp);
  ::close(tmp_target);

  // Hidden directories were writable while binds were placed in them; seal them.
  struct mount_attr sealed;
  std::memset(&sealed, 0, sizeof sealed);
  sealed.attr_set = MOUNT_ATTR_RDONLY;
  for (size_t i = 0; i < hide_count; ++i) {
    if (::mount_setattr(hide_mounts[i], "", AT_EMPTY_PATH, &sealed, sizeof sealed) < 0) {
      Fail(rfd, ChildStep::kMountHide, errno, "seal");
    }
    ::close(hide_mounts[i]);
  }

  // pivot_root(".", "."): the old root ends up stacked on "." and is detached
  // right away, taking the staging tmpfs with it.
  if (::fchdir(new_root) < 0 || ::syscall(SYS_pivot_root, ".", ".") < 0 ||
      ::umount2(".", MNT_DETACH) < 0 || ::chdir("/") < 0) {
    Fail(rfd, ChildStep::kPivotRoot, errno, p.staged_root);
  }
  ::close(new_root);
}

void BringLoopbackUp(const ChildPlan& p) {
  const int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) Fail(p.report_fd, ChildStep::kLoopback, errno, "socket");
  struct ifreq ifr;
  std::memset(&ifr, 0, sizeof ifr);
  std::memcpy(ifr.ifr_name, "lo", 3);
  if (::ioctl(s, SIOCGIFFLAGS, &ifr) < 0) Fail(p.report_fd, ChildStep::kLoopback, errno, "lo");
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP | IFF_RUNNING);
  if (::ioctl(s, SIOCSIFFLAGS, &ifr) < 0) Fail(p.report_fd, ChildStep::kLoopback, errno, "lo");
  ::close(s);
}

void DropPrivileges(const ChildPlan& p) {
  const int rfd = p.report_fd;
  if (p.drop_capabilities) {
    for (int cap = 0; cap <= p.last_cap; ++cap) {
      if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL) {
        Fail(rfd, ChildStep::kCapBoundingSet, errno, "PR_CAPBSET_DROP");
      }
    }
    // uid 0 gains no capabilities from exec, and nobody may undo that.
    const unsigned long bits = SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_KEEP_CAPS_LOCKED;
    if (::prctl(PR_SET_SECUREBITS, bits, 0, 0, 0) < 0) {
      Fail(rfd, ChildStep::kCapBoundingSet, errno, "PR_SET_SECUREBITS");
    }
  }
  if (p.change_ids) {
    // Raw syscalls: glibc's wrappers broadcast to every thread of the process
    // (__nptl_setxid), taking locks a thread of the supervisor may have held
    // at clone time. This process has one thread.
    if (::syscall(SYS_setgroups, 0, nullptr) < 0)
      Fail(rfd, ChildStep::kSetgroups, errno, "setgroups");
    if (::syscall(SYS_setresgid, p.gid, p.gid, p.gid) < 0)
      Fail(rfd, ChildStep::kSetgid, errno, "setresgid");
    if (::syscall(SYS_setresuid, p.uid, p.uid, p.uid) < 0)
      Fail(rfd, ChildStep::kSetuid, errno, "setresuid");
  }
  if (p.drop_capabilities) {
    if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0) {
      Fail(rfd, ChildStep::kCapClear, errno, "PR_CAP_AMBIENT_CLEAR_ALL");
    }
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    std::memset(data, 0, sizeof data);
    if (::syscall(SYS_capset, &hdr, data) < 0) Fail(rfd, ChildStep::kCapClear, errno, "capset");
  }
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
  Fail(report_fd, ChildStep::kExec, err, p.file);
}

[[noreturn]] void RunCommand(const ChildPlan& p, int exec_report_fd) {
  // Own session and process group, so signals can address the whole command.
  if (::setsid() < 0) Fail(exec_report_fd, ChildStep::kSetsid, errno, "setsid");
  const int in = p.stdin_fd;
  if (p.pty && ::ioctl(in, TIOCSCTTY, 0) < 0) {
    Fail(exec_report_fd, ChildStep::kControllingTty, errno, "TIOCSCTTY");
  }
  const int fds[3] = {p.stdin_fd, p.stdout_fd, p.stderr_fd};
  for (int target = 0; target < 3; ++target) {
    int src = fds[target];
    if (src < 0) {
      src = ::open("/dev/null", O_RDWR | O_CLOEXEC);
      if (src < 0) Fail(exec_report_fd, ChildStep::kStdio, errno, "/dev/null");
    }
    if (src != target && ::dup2(src, target) < 0)
      Fail(exec_report_fd, ChildStep::kStdio, errno, "dup2");
    // dup2 onto the same number keeps FD_CLOEXEC; clear it explicitly.
    if (::fcntl(target, F_SETFD, 0) < 0) Fail(exec_report_fd, ChildStep::kStdio, errno, "fcntl");
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

  SpawnReport r;
  std::memset(&r, 0, sizeof r);
  // The command's end of this pipe is CLOEXEC: EOF means execve succeeded.
  ssize_t n;
  do {
    n = ::read(exec_status_fd, &r, sizeof r);
  } while (n < 0 && errno == EINTR);
  ::close(exec_status_fd);
  if (n == static_cast<ssize_t>(sizeof r) && r.kind == SpawnReport::kFailed) {
    SendReport(p.report_fd, r);
    ::_exit(126);
  }
  std::memset(&r, 0, sizeof r);
  r.kind = SpawnReport::kStarted;
  SendReport(p.report_fd, r);

  sigset_t all;
  sigfillset(&all);
  for (;;) {
    siginfo_t info;
    const int sig = ::sigwaitinfo(&all, &info);
    if (sig < 0) continue;
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
        SendReport(p.report_fd, r);
        // Leaving pid 1 makes the kernel SIGKILL everything else in the namespace.
        ::_exit(0);
      }
    }
  }
}

// Closes every fd the supervisor had open except the plan's: without this,
// init (which never execs) would hold other sessions' pipes and this
// session's own stdin write end, and EOF would never come.
void CloseInheritedFds(const ChildPlan& p) {
  int keep[5] = {p.report_fd, p.stdin_fd, p.stdout_fd, p.stderr_fd, p.parent_pidfd};
  // Sort the few kept fds (insertion sort: no allocation).
  for (int i = 1; i < 5; ++i) {
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
        Fail(p.report_fd, ChildStep::kCloseInherited, errno, "close_range");
      }
    }
    first = static_cast<unsigned>(fd) + 1;
  }
  if (::close_range(first, ~0U, 0) < 0)
    Fail(p.report_fd, ChildStep::kCloseInherited, errno, "close_range");
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
  if (::setsid() < 0) Fail(rfd, ChildStep::kSetsid, errno, "setsid");
  if (p.isolate_filesystem) SetupFilesystem(p);
  if (p.workspace != nullptr && ::chdir(p.workspace) < 0) {
    Fail(rfd, ChildStep::kChdirWorkspace, errno, p.workspace);
  }
  if (p.hostname != nullptr && ::sethostname(p.hostname, std::strlen(p.hostname)) < 0) {
    Fail(rfd, ChildStep::kHostname, errno, p.hostname);
  }
  if (p.loopback_up) BringLoopbackUp(p);
  for (size_t i = 0; i < p.rlimit_count; ++i) {
    if (::setrlimit(static_cast<__rlimit_resource>(p.rlimits[i].resource), &p.rlimits[i].limit) <
        0) {
      Fail(rfd, ChildStep::kRlimit, errno, "setrlimit");
    }
  }
  DropPrivileges(p);
  // Set after the uid change, which clears it. If the supervisor dies, init
  // dies, and the kernel kills the rest of the pid namespace.
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) {
    Fail(rfd, ChildStep::kParentDeathSignal, errno, "PR_SET_PDEATHSIG");
  }
  // The supervisor may have died before the prctl: its pidfd tells.
  if (p.parent_pidfd >= 0) {
    struct pollfd pfd = {p.parent_pidfd, POLLIN, 0};
    if (::poll(&pfd, 1, 0) != 0) ::_exit(125);
    ::close(p.parent_pidfd);
  }
  if (::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
    Fail(rfd, ChildStep::kCloseFds, errno, "close_range");
  if (p.no_new_privs && ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
    Fail(rfd, ChildStep::kNoNewPrivs, errno, "PR_SET_NO_NEW_PRIVS");
  }
  if (p.seccomp != nullptr && ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, p.seccomp) < 0) {
    Fail(rfd, ChildStep::kSeccomp, errno, "seccomp");
  }

  int exec_pipe[2];
  if (::pipe2(exec_pipe, O_CLOEXEC) < 0) Fail(rfd, ChildStep::kForkCommand, errno, "pipe2");
  // A raw fork: glibc's fork() runs atfork handlers and takes malloc locks
  // that another supervisor thread may have held at clone time.
  const long pid = ::syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
  if (pid < 0) Fail(rfd, ChildStep::kForkCommand, errno, "clone");
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
  }
  return "unknown step";
}

}  // namespace mp::sandbox
