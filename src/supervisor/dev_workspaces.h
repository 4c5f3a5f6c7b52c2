// Development mode's default workspaces: `monkeyproofd --dev` creates each policy's missing
// default_workspace and hands it to the policy's run_as user (the package's tmpfiles.d does the
// same for the shipped policies), so that a session without a cwd can write there. Runs in
// monkeyproofd (root) at start, before any session: a session of an earlier run may have
// planted symlinks in the workspaces, so nothing here follows one.
#pragma once

#include "common/result.h"
#include "supervisor/policy.h"

namespace mp::supervisor {

// Creates every missing default workspace of `policies`, component by component from "/"
// without following symlinks, and only below directories that root owns and nobody else may
// write (so that no other user can swap a component while it runs); the new directory is
// chowned through its descriptor. An existing default workspace is left as it is. Fails,
// naming the path and what to do, on a symlink, a directory others may write, or an unknown
// run_as user or group.
Result<void> CreateDefaultWorkspaces(const PolicySet& policies);

}  // namespace mp::supervisor
