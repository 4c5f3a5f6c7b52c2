// The privileged tier's guard: these tests write to /sys/fs/cgroup and run
// sandboxes as root, which is only allowed inside the project's test VM.
#pragma once

namespace mp::testing {

// True when this process runs as root inside the test VM (tests/vm): the
// harness sets MP_TEST_VM=1 and creates /run/mp-test-vm, and /sys/fs/cgroup
// is cgroup2.
bool InTestVm();

}  // namespace mp::testing
