// The filesystem view (see filesystem_view.h). Order: make "/" private, clone the bind
// sources, the staging tmpfs, the home's overlay, the allowlisted root (a tmpfs with the host's
// /usr, /etc, ... read-only) under the staging tmpfs, hides, binds, the home, /proc (masked
// like runc), cgroup2, /dev, /tmp, seal the hidden directories and the root, pivot_root.
#include "sandbox/filesystem_view.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "sandbox/child_report.h"

namespace mp::sandbox {
namespace {

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
  if (f < 0) FailInChild(p.report_fd, ChildStep::kMountDev, errno, name);
  ::close(f);
  const int tree = ::open_tree(AT_FDCWD, host_path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
  if (tree < 0) FailInChild(p.report_fd, ChildStep::kMountDev, errno, host_path);
  if (::move_mount(tree, "", dev_mnt, name, MOVE_MOUNT_F_EMPTY_PATH) < 0) {
    FailInChild(p.report_fd, ChildStep::kMountDev, errno, host_path);
  }
  ::close(tree);
}

// The task file in the fresh /tmp (`tmp` is its mount's root), before the pivot while we are
// still root: owned by root, mode 0444, so the sandbox's uid can read it but neither change
// nor remove it (/tmp is sticky). Short writes are continued; ENOSPC is /tmp's size limit.
void WriteTaskFile(const ChildPlan& p, int tmp) {
  const int fd =
      ::openat(tmp, kTaskFileName, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0444);
  if (fd < 0) FailInChild(p.report_fd, ChildStep::kTaskFile, errno, kTaskFilePath);
  size_t done = 0;
  while (done < p.task_file_bytes) {
    const ssize_t n = ::write(fd, p.task_file_data + done, p.task_file_bytes - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) FailInChild(p.report_fd, ChildStep::kTaskFile, n < 0 ? errno : EIO, kTaskFilePath);
    done += static_cast<size_t>(n);
  }
  ::close(fd);
}

void SetupDev(const ChildPlan& p, int new_root) {
  const char* const dev_opts[] = {"mode", "0755", "size", "65536", nullptr};
  const int dev = MakeFs("tmpfs", dev_opts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC);
  if (dev < 0) FailInChild(p.report_fd, ChildStep::kMountDev, errno, "/dev");
  const int target = OpenInRoot(new_root, "/dev");
  if (target < 0 || AttachAt(dev, target) < 0)
    FailInChild(p.report_fd, ChildStep::kMountDev, errno, "/dev");
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
      FailInChild(p.report_fd, ChildStep::kMountDev, errno, l.name);
  }
  if (::mkdirat(dev, "pts", 0755) < 0 || ::mkdirat(dev, "shm", 01777) < 0) {
    FailInChild(p.report_fd, ChildStep::kMountDev, errno, "/dev/pts");
  }
  // A private devpts instance: the sandbox sees only terminals it opens itself.
  // max=: the terminals this sandbox may hold; every instance but the host's shares
  // kernel.pty.max minus kernel.pty.reserve, which one session could otherwise exhaust.
  char max_buf[24];
  const char* const pts_opts[] = {"newinstance",
                                  "",
                                  "ptmxmode",
                                  "0666",
                                  "mode",
                                  "0620",
                                  p.pty_max > 0 ? "max" : nullptr,
                                  FormatU64(p.pty_max, max_buf),
                                  nullptr};
  const int pts = MakeFs("devpts", pts_opts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC);
  if (pts < 0) FailInChild(p.report_fd, ChildStep::kMountDev, errno, "/dev/pts");
  if (::move_mount(pts, "", dev, "pts", MOVE_MOUNT_F_EMPTY_PATH) < 0) {
    FailInChild(p.report_fd, ChildStep::kMountDev, errno, "/dev/pts");
  }
  const char* const shm_opts[] = {"mode", "1777", "size", "67108864", nullptr};
  const int shm = MakeFs("tmpfs", shm_opts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
  if (shm < 0 || ::move_mount(shm, "", dev, "shm", MOVE_MOUNT_F_EMPTY_PATH) < 0) {
    FailInChild(p.report_fd, ChildStep::kMountDev, errno, "/dev/shm");
  }
  ::close(pts);
  ::close(shm);
  // Read-only from here on: nothing in the sandbox may add device nodes or links.
  if (SetAttr(dev, MOUNT_ATTR_RDONLY, 0) < 0)
    FailInChild(p.report_fd, ChildStep::kMountDev, errno, "/dev");
  // The recursive attribute change made pts and shm read-only too; reopen them.
  const int pts_dir = ::openat(dev, "pts", O_PATH | O_CLOEXEC | O_NOFOLLOW);
  const int shm_dir = ::openat(dev, "shm", O_PATH | O_CLOEXEC | O_NOFOLLOW);
  struct mount_attr rw;
  std::memset(&rw, 0, sizeof rw);
  rw.attr_clr = MOUNT_ATTR_RDONLY;
  if (pts_dir < 0 || shm_dir < 0 ||
      ::mount_setattr(pts_dir, "", AT_EMPTY_PATH, &rw, sizeof rw) < 0 ||
      ::mount_setattr(shm_dir, "", AT_EMPTY_PATH, &rw, sizeof rw) < 0) {
    FailInChild(p.report_fd, ChildStep::kMountDev, errno, "/dev/pts");
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
      FailInChild(p.report_fd, ChildStep::kMountProc, errno, name);
    }
    if (SetAttr(tree, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
                0) < 0 ||
        ::move_mount(tree, "", proc, name, MOVE_MOUNT_F_EMPTY_PATH) < 0) {
      FailInChild(p.report_fd, ChildStep::kMountProc, errno, name);
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
      FailInChild(p.report_fd, ChildStep::kMountProc, errno, name);
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
  if (errno != ENOENT) FailInChild(p.report_fd, ChildStep::kMountBind, errno, target);
  char prefix[4096];
  const size_t len = std::strlen(target);
  if (len >= sizeof prefix) FailInChild(p.report_fd, ChildStep::kMountBind, ENAMETOOLONG, target);
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
      if (dir < 0) FailInChild(p.report_fd, ChildStep::kMountBind, errno, target);
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
      if (rc < 0)
        FailInChild(p.report_fd, ChildStep::kMountBind, err == EROFS ? ENOENT : err, target);
    } else {
      FailInChild(p.report_fd, ChildStep::kMountBind, errno, target);
    }
    pos = end + 1;
  }
  const int made = OpenInRoot(new_root, target);
  if (made < 0) FailInChild(p.report_fd, ChildStep::kMountBind, errno, target);
  return made;
}

// The view before the allowlist (ChildPlan::host_root_view): the host's whole tree cloned
// read-only, before the staging tmpfs covers anything. Attached at staged_root by the caller.
int CloneHostRoot(const ChildPlan& p) {
  const int root_tree =
      ::open_tree(AT_FDCWD, "/", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
  if (root_tree < 0) FailInChild(p.report_fd, ChildStep::kMountCloneRoot, errno, "/");
  if (SetAttr(root_tree, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, 0) < 0) {
    FailInChild(p.report_fd, ChildStep::kMountRootReadOnly, errno, "/");
  }
  return root_tree;
}

// The allowlisted view: a fresh tmpfs at staged_root holding the plan's root entries (each
// directory a read-only recursive clone of the host's, each symlink recreated) and the empty
// directories the sandbox mounts its own file systems on. Nothing else of the host's root is
// there: no /run (its sockets), /home, /root, /srv or /var unless a bind brings a path of them.
// The tmpfs stays writable until the binds' mount points are made, then is sealed read-only.
int AttachAllowlistedRoot(const ChildPlan& p) {
  const int rfd = p.report_fd;
  const char* const opts[] = {"mode", "0755", "size", "1048576", "nr_inodes", "4096", nullptr};
  const int root = MakeFs("tmpfs", opts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
  if (root < 0) FailInChild(rfd, ChildStep::kMountCloneRoot, errno, "/");
  if (::move_mount(root, "", AT_FDCWD, p.staged_root, MOVE_MOUNT_F_EMPTY_PATH) < 0) {
    FailInChild(rfd, ChildStep::kMountAttachRoot, errno, p.staged_root);
  }
  for (size_t i = 0; i < p.root_entry_count; ++i) {
    const PlanRootEntry& e = p.root_entries[i];
    if (e.link != nullptr) {
      if (::symlinkat(e.link, root, e.name) < 0)
        FailInChild(rfd, ChildStep::kMountCloneRoot, errno, e.name);
      continue;
    }
    char host_path[256];
    const size_t n = std::strlen(e.name);
    if (n + 2 > sizeof host_path)
      FailInChild(rfd, ChildStep::kMountCloneRoot, ENAMETOOLONG, e.name);
    host_path[0] = '/';
    std::memcpy(host_path + 1, e.name, n + 1);
    const int tree =
        ::open_tree(AT_FDCWD, host_path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
    if (tree < 0) FailInChild(rfd, ChildStep::kMountCloneRoot, errno, host_path);
    if (SetAttr(tree, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, 0) < 0) {
      FailInChild(rfd, ChildStep::kMountRootReadOnly, errno, host_path);
    }
    if (::mkdirat(root, e.name, 0755) < 0 ||
        ::move_mount(tree, "", root, e.name, MOVE_MOUNT_F_EMPTY_PATH) < 0) {
      FailInChild(rfd, ChildStep::kMountAttachRoot, errno, host_path);
    }
    ::close(tree);
  }
  const char* const dirs[] = {"proc", "dev", "tmp", "sys", "sys/fs", "sys/fs/cgroup"};
  for (const char* d : dirs) {
    if (::mkdirat(root, d, 0755) < 0) FailInChild(rfd, ChildStep::kMountCloneRoot, errno, d);
  }
  return root;
}

// The session's private home (ChildPlan::home_seed): a tmpfs at home_layer holding the upper
// and work directories, and an overlay of it over the seed, returned detached (attached at
// home_target once the binds are in place). The upper directory is the home's root: it gets
// the seed's mode and the session's ids, so the session may create files at its top.
int MakeHome(const ChildPlan& p) {
  const int rfd = p.report_fd;
  struct stat seed {};
  if (::stat(p.home_seed, &seed) < 0) FailInChild(rfd, ChildStep::kMountHome, errno, p.home_seed);
  if (!S_ISDIR(seed.st_mode)) FailInChild(rfd, ChildStep::kMountHome, ENOTDIR, p.home_seed);
  char size_buf[24];
  const char* const opts[] = {"mode", "0700", "size", FormatU64(p.home_max_bytes, size_buf),
                              nullptr};
  const int layer = MakeFs("tmpfs", opts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
  if (layer < 0 || ::mkdir(p.home_layer, 0700) < 0 ||
      ::move_mount(layer, "", AT_FDCWD, p.home_layer, MOVE_MOUNT_F_EMPTY_PATH) < 0) {
    FailInChild(rfd, ChildStep::kMountHome, errno, p.home_layer);
  }
  if (::mkdirat(layer, "upper", seed.st_mode & 07777) < 0 || ::mkdirat(layer, "work", 0700) < 0 ||
      ::fchmodat(layer, "upper", seed.st_mode & 07777, 0) < 0 ||
      ::fchownat(layer, "upper", p.uid, p.gid, AT_SYMLINK_NOFOLLOW) < 0) {
    FailInChild(rfd, ChildStep::kMountHome, errno, "upper");
  }
  char upper[128];
  char work[128];
  char lower[128];
  const size_t n = std::strlen(p.home_layer);
  if (n + 7 > sizeof upper) FailInChild(rfd, ChildStep::kMountHome, ENAMETOOLONG, p.home_layer);
  std::memcpy(upper, p.home_layer, n);
  std::memcpy(upper + n, "/upper", 7);
  std::memcpy(work, p.home_layer, n);
  std::memcpy(work + n, "/work", 6);
  std::memcpy(lower, p.home_layer, n);
  std::memcpy(lower + n, "/lower", 7);
  if (p.home_idmap) {
    // The seed as the session's uid sees it: an idmapped, read-only clone (overlayfs takes
    // idmapped layers since Linux 5.19), attached where the overlay can name it.
    const int seed_tree =
        ::open_tree(AT_FDCWD, p.home_seed, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
    struct mount_attr idmap;
    std::memset(&idmap, 0, sizeof idmap);
    idmap.attr_set = MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    idmap.userns_fd = static_cast<uint64_t>(p.idmap_userns_fd);
    if (seed_tree < 0 || p.idmap_userns_fd < 0 ||
        ::mount_setattr(seed_tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &idmap, sizeof idmap) < 0 ||
        ::mkdirat(layer, "lower", 0700) < 0 ||
        ::move_mount(seed_tree, "", AT_FDCWD, lower, MOVE_MOUNT_F_EMPTY_PATH) < 0) {
      FailInChild(rfd, ChildStep::kMountHome, p.idmap_userns_fd < 0 ? EBADF : errno, p.home_seed);
    }
    ::close(seed_tree);
  }
  ::close(layer);
  const char* const ovl[] = {
      "lowerdir", p.home_idmap ? lower : p.home_seed, "upperdir", upper, "workdir", work, nullptr};
  const int home = MakeFs("overlay", ovl, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
  if (home < 0) FailInChild(rfd, ChildStep::kMountHome, errno, p.home_seed);
  return home;
}

}  // namespace

void SetUpFilesystemInChild(const ChildPlan& p) {
  const int rfd = p.report_fd;
  // Nothing we mount may propagate back to the host's namespace.
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0) {
    FailInChild(rfd, ChildStep::kMountPrivate, errno, "/");
  }
  // Clone every bind source before the staging tmpfs covers anything.
  int bind_trees[kMaxBinds];
  bool bind_is_dir[kMaxBinds];
  for (size_t i = 0; i < p.bind_count; ++i) {
    const PlanBind& b = p.binds[i];
    const int src = OpenAt2(AT_FDCWD, b.source, O_PATH | O_CLOEXEC,
                            RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
    if (src < 0) FailInChild(rfd, ChildStep::kMountBind, errno, b.source);
    struct stat st;
    if (::fstat(src, &st) < 0) FailInChild(rfd, ChildStep::kMountBind, errno, b.source);
    bind_is_dir[i] = S_ISDIR(st.st_mode);
    bind_trees[i] =
        ::open_tree(src, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | AT_RECURSIVE);
    if (bind_trees[i] < 0) FailInChild(rfd, ChildStep::kMountBind, errno, b.source);
    ::close(src);
    // Read-write binds never clear RDONLY: that would, recursively, make
    // writable what the host mounted read-only below the source.
    const uint64_t common = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    const int rc = b.mode == BindMode::kReadOnly
                       ? SetAttr(bind_trees[i], common | MOUNT_ATTR_RDONLY, 0)
                       : SetAttr(bind_trees[i], common, 0);
    if (rc < 0) FailInChild(rfd, ChildStep::kMountBind, errno, b.source);
    if (b.idmap) {
      // The owner's files as the session's (sandbox/idmap.h); the parent checked that this
      // file system allows it.
      struct mount_attr idmap;
      std::memset(&idmap, 0, sizeof idmap);
      idmap.attr_set = MOUNT_ATTR_IDMAP;
      idmap.userns_fd = static_cast<uint64_t>(p.idmap_userns_fd);
      if (p.idmap_userns_fd < 0 || ::mount_setattr(bind_trees[i], "", AT_EMPTY_PATH | AT_RECURSIVE,
                                                   &idmap, sizeof idmap) < 0) {
        FailInChild(rfd, ChildStep::kMountBind, p.idmap_userns_fd < 0 ? EBADF : errno, b.source);
      }
    }
  }
  const int host_tree = p.host_root_view ? CloneHostRoot(p) : -1;
  if (::mount("mp-staging", p.staging_dir, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              "size=65536,mode=0700") < 0) {
    FailInChild(rfd, ChildStep::kMountStaging, errno, p.staging_dir);
  }
  if (::mkdir(p.staged_root, 0700) < 0)
    FailInChild(rfd, ChildStep::kMountStaging, errno, p.staged_root);
  // The home's overlay is made while the host's paths still resolve (its lower layer).
  const int home = p.home_seed != nullptr ? MakeHome(p) : -1;
  if (p.idmap_userns_fd >= 0) ::close(p.idmap_userns_fd);
  const int new_root = p.host_root_view ? host_tree : AttachAllowlistedRoot(p);
  if (p.host_root_view &&
      ::move_mount(host_tree, "", AT_FDCWD, p.staged_root, MOVE_MOUNT_F_EMPTY_PATH) < 0) {
    FailInChild(rfd, ChildStep::kMountAttachRoot, errno, p.staged_root);
  }

  // Hides come first, so that a bind may land inside a hidden directory: the
  // other workspaces under a root stay covered while this session's is shown.
  int hide_mounts[kMaxHides];
  size_t hide_count = 0;
  for (size_t i = 0; i < p.hide_count; ++i) {
    const PlanHide& h = p.hides[i];
    const int target = OpenInRoot(new_root, h.target);
    if (target < 0) {
      if (errno == ENOENT) continue;  // nothing there to hide
      FailInChild(rfd, ChildStep::kMountHide, errno, h.target);
    }
    int cover;
    if (h.is_directory) {
      const char* const opts[] = {"mode", "0755", "size", "65536", "nr_inodes", "1024", nullptr};
      cover = MakeFs("tmpfs", opts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
    } else {
      cover = ::open_tree(AT_FDCWD, "/dev/null", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
      if (cover >= 0 && SetAttr(cover, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV, 0) < 0) cover = -1;
    }
    if (cover < 0 || AttachAt(cover, target) < 0)
      FailInChild(rfd, ChildStep::kMountHide, errno, h.target);
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
      FailInChild(rfd, ChildStep::kMountBind, errno, p.binds[i].target);
    }
    ::close(target);
    ::close(bind_trees[i]);
  }

  if (home >= 0) {
    const int target = EnsureTarget(p, new_root, p.home_target, true);
    if (AttachAt(home, target) < 0) FailInChild(rfd, ChildStep::kMountHome, errno, p.home_target);
    ::close(target);
    ::close(home);
  }

  const char* const proc_opts[] = {"hidepid", "invisible", nullptr};
  const int proc =
      MakeFs("proc", proc_opts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
  const int proc_target = OpenInRoot(new_root, "/proc");
  if (proc < 0 || proc_target < 0 || AttachAt(proc, proc_target) < 0) {
    FailInChild(rfd, ChildStep::kMountProc, errno, "/proc");
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
      FailInChild(rfd, ChildStep::kMountCgroup, errno, "/sys/fs/cgroup");
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
    FailInChild(rfd, ChildStep::kMountTmp, errno, "/tmp");
  }
  if (p.task_file_data != nullptr) WriteTaskFile(p, tmp);
  ::close(tmp);
  ::close(tmp_target);

  // Hidden directories were writable while binds were placed in them; seal them.
  struct mount_attr sealed;
  std::memset(&sealed, 0, sizeof sealed);
  sealed.attr_set = MOUNT_ATTR_RDONLY;
  for (size_t i = 0; i < hide_count; ++i) {
    if (::mount_setattr(hide_mounts[i], "", AT_EMPTY_PATH, &sealed, sizeof sealed) < 0) {
      FailInChild(rfd, ChildStep::kMountHide, errno, "seal");
    }
    ::close(hide_mounts[i]);
  }

  // The allowlisted root was writable while mount points were made in it; seal it (alone: the
  // mounts on it keep their own attributes).
  if (!p.host_root_view &&
      ::mount_setattr(new_root, "", AT_EMPTY_PATH, &sealed, sizeof sealed) < 0) {
    FailInChild(rfd, ChildStep::kMountRootReadOnly, errno, "/");
  }

  // pivot_root(".", "."): the old root ends up stacked on "." and is detached
  // right away, taking the staging tmpfs with it.
  if (::fchdir(new_root) < 0 || ::syscall(SYS_pivot_root, ".", ".") < 0 ||
      ::umount2(".", MNT_DETACH) < 0 || ::chdir("/") < 0) {
    FailInChild(rfd, ChildStep::kPivotRoot, errno, p.staged_root);
  }
  ::close(new_root);
}

}  // namespace mp::sandbox
