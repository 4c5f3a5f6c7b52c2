#!/usr/bin/env bash
# The README's run command: installs dependencies, builds, and starts what the
# product has so far. Today that is the one-shot sandbox runner; the daemons
# (monkeyproofd's session service and monkeyproof-api) are not built yet.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
if [[ ${MP_SKIP_DEPS:-0} != 1 ]]; then
  "$repo/scripts/install-deps.sh"
fi
"$repo/scripts/build.sh" release
bin="$repo/build/release/src/supervisor/monkeyproofd"
"$bin" --version

cat <<'MSG'

Built. The session daemon and the HTTP/WebSocket API are not implemented yet;
what runs today is the one-shot sandbox runner (needs root and cgroup v2 with
the memory, pids and cpu controllers):

  build/release/src/supervisor/monkeyproofd exec --memory-max 256M --timeout 10 -- /bin/sh -c 'id; hostname'

MSG
if [[ -f /sys/fs/cgroup/cgroup.controllers ]] && grep -qw memory /sys/fs/cgroup/cgroup.controllers; then
  echo "Running that example now:"
  exec "$bin" exec --memory-max 256M --timeout 10 -- /bin/sh -c 'id; hostname'
else
  echo "This host has no cgroup v2 memory controller at /sys/fs/cgroup; running the example"
  echo "inside the test VM instead:"
  exec "$repo/tests/vm/run-in-vm.sh" --cache "$repo/build/release/vm" -- \
    "$bin" exec --memory-max 256M --timeout 10 -- /bin/sh -c 'id; hostname'
fi
