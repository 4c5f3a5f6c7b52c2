// Idmapped binds for sessions that run as a uid of their own: the workspace (and state dirs)
// are mounted through a user namespace that maps the directory's owner to the session's
// ids, so the session sees the owner's files as its own and what it creates lands on disk as
// the owner's (kernel >= 5.12; which file systems allow it: docs/policies.md). Supervisor
// side, before clone: the child only applies the namespace's fd to its bind clones
// (filesystem_view.cc). Not thread-safe: forks a short-lived helper.
#pragma once

#include <sys/types.h>

#include <string>

#include "common/result.h"
#include "common/unique_fd.h"

namespace mp::sandbox {

// Who the files belong to on disk, and who the session is.
struct IdmapIds {
  uid_t owner_uid;
  gid_t owner_gid;
  uid_t session_uid;
  gid_t session_gid;
};

// The uid_map (gid_map) line of the mount's user namespace: "OWNER SESSION 1". On an idmapped
// mount the kernel shows a file of on-disk id OWNER as SESSION, and stores a file the
// session creates as OWNER.
std::string IdmapUidLine(const IdmapIds& ids);
std::string IdmapGidLine(const IdmapIds& ids);

// A user namespace with those maps, as an fd for mount_setattr(MOUNT_ATTR_IDMAP). A helper
// process is cloned into a new user namespace, its maps written, its namespace opened, and
// the helper killed and reaped before this returns.
Result<UniqueFd> MakeIdmapUserns(const IdmapIds& ids);

// Whether `path` (an existing directory) can be mounted idmapped with `userns_fd`: a detached
// recursive clone of it gets MOUNT_ATTR_IDMAP and is dropped. The error names the path and
// its file system, and what to do, when this kernel cannot idmap it (tmpfs, overlayfs, 9p,
// NFS on 6.1).
Result<void> CheckIdmappable(const std::string& path, int userns_fd);

// A short name for a statfs f_type ("ext4", "tmpfs", ...), or its value in hex.
std::string FileSystemName(long f_type);

}  // namespace mp::sandbox
