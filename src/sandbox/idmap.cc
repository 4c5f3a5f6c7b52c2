#include "sandbox/idmap.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <linux/mount.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "common/scope_guard.h"

namespace mp::sandbox {
namespace {

Result<void> WriteProcFile(pid_t pid, const char* name, const std::string& text) {
  const std::string path = "/proc/" + std::to_string(pid) + "/" + name;
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return ErrnoError("open(" + path + ")");
  const ssize_t n = ::write(fd.get(), text.data(), text.size());
  if (n != static_cast<ssize_t>(text.size())) {
    return ErrnoError(n < 0 ? errno : EIO, "write(" + path + ", \"" + text + "\")");
  }
  return Ok();
}

}  // namespace

std::string IdmapUidLine(const IdmapIds& ids) {
  return std::to_string(ids.owner_uid) + " " + std::to_string(ids.session_uid) + " 1";
}

std::string IdmapGidLine(const IdmapIds& ids) {
  return std::to_string(ids.owner_gid) + " " + std::to_string(ids.session_gid) + " 1";
}

Result<UniqueFd> MakeIdmapUserns(const IdmapIds& ids) {
  int pidfd = -1;
  struct clone_args args {};
  args.flags = CLONE_NEWUSER | CLONE_PIDFD | CLONE_CLEAR_SIGHAND;
  args.pidfd = reinterpret_cast<uint64_t>(&pidfd);
  args.exit_signal = SIGCHLD;
  // The helper only waits to be killed; no handler of the supervisor may run in it.
  sigset_t all, saved;
  sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &saved);
  const long pid = ::syscall(SYS_clone3, &args, sizeof args);
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    for (;;) ::pause();
  }
  const int clone_errno = errno;
  ::pthread_sigmask(SIG_SETMASK, &saved, nullptr);
  if (pid < 0) return ErrnoError(clone_errno, "clone3(CLONE_NEWUSER) for an idmapped mount");
  UniqueFd helper(pidfd);
  ScopeGuard reap([&] {
    (void)::syscall(SYS_pidfd_send_signal, helper.get(), SIGKILL, nullptr, 0);
    siginfo_t info{};
    while (::waitid(P_PIDFD, static_cast<id_t>(helper.get()), &info, WEXITED) < 0 &&
           errno == EINTR) {
    }
  });
  const auto p = static_cast<pid_t>(pid);
  MP_RETURN_IF_ERROR(WriteProcFile(p, "uid_map", IdmapUidLine(ids)));
  MP_RETURN_IF_ERROR(WriteProcFile(p, "gid_map", IdmapGidLine(ids)));
  const std::string ns = "/proc/" + std::to_string(p) + "/ns/user";
  UniqueFd fd(::open(ns.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return ErrnoError("open(" + ns + ")");
  return fd;
}

std::string FileSystemName(long f_type) {
  switch (static_cast<unsigned long>(f_type)) {
    case EXT4_SUPER_MAGIC:
      return "ext4";
    case XFS_SUPER_MAGIC:
      return "xfs";
    case BTRFS_SUPER_MAGIC:
      return "btrfs";
    case TMPFS_MAGIC:
      return "tmpfs";
    case OVERLAYFS_SUPER_MAGIC:
      return "overlayfs";
    case V9FS_MAGIC:
      return "9p";
    case NFS_SUPER_MAGIC:
      return "nfs";
    case 0xF15F:  // ECRYPTFS_SUPER_MAGIC
      return "ecryptfs";
    case 0x65735546:  // FUSE_SUPER_MAGIC
      return "fuse";
    case 0xF2F52010:  // F2FS_SUPER_MAGIC
      return "f2fs";
    default: {
      char buf[32];
      std::snprintf(buf, sizeof buf, "0x%lx", static_cast<unsigned long>(f_type));
      return buf;
    }
  }
}

Result<void> CheckIdmappable(const std::string& path, int userns_fd) {
  UniqueFd tree(::open_tree(
      AT_FDCWD, path.c_str(),
      OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE | AT_NO_AUTOMOUNT | AT_SYMLINK_NOFOLLOW));
  if (!tree) return ErrnoError("open_tree(\"" + path + "\")");
  struct mount_attr attr {};
  attr.attr_set = MOUNT_ATTR_IDMAP;
  attr.userns_fd = static_cast<uint64_t>(userns_fd);
  if (::mount_setattr(tree.get(), "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) == 0) {
    return Ok();
  }
  const int e = errno;
  struct statfs sf {};
  const std::string fs = ::statfs(path.c_str(), &sf) == 0 ? FileSystemName(sf.f_type) : "unknown";
  if (e == EINVAL || e == EPERM || e == ENOSYS) {
    return ErrnoError(e, "\"" + path + "\" is on a file system (" + fs +
                             ", or a mount below it) that this kernel cannot mount idmapped, "
                             "which a session with its own uid needs to write there as the "
                             "workspace owner: put it on ext4, xfs or btrfs (docs/policies.md, "
                             "\"Per-session uids and the workspace's file system\"), or turn "
                             "per-session uids off (session_uid_range = off)");
  }
  return ErrnoError(e, "mount_setattr(MOUNT_ATTR_IDMAP, \"" + path + "\" on " + fs + ")");
}

}  // namespace mp::sandbox
