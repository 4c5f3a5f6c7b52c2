#!/usr/bin/env bash
# The README's run command: installs dependencies, builds (release), starts the product
# (monkeyproofd --dev, which starts monkeyproof-api with a new token) and runs a curl example
# against it. With MP_RUN_FOREGROUND=1 on a cgroup v2 host it keeps serving until Ctrl-C.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
if [[ ${MP_SKIP_DEPS:-0} != 1 ]]; then
  "$repo/scripts/install-deps.sh"
fi
"$repo/scripts/build.sh" release
build="$repo/build/release"
"$build/src/supervisor/monkeyproofd" --version

as_root() { if [[ $EUID == 0 ]]; then "$@"; else sudo "$@"; fi; }
# The product needs root and cgroup v2 with the memory, pids and cpu controllers.
if [[ -f /sys/fs/cgroup/cgroup.controllers ]] && grep -qw memory /sys/fs/cgroup/cgroup.controllers; then
  if [[ ${MP_RUN_FOREGROUND:-0} == 1 ]]; then
    # Serve until Ctrl-C: the supervisor, and the API on 127.0.0.1:3200 with a new token.
    as_root "$build/src/supervisor/monkeyproofd" --dev; exit
  fi
  as_root "$repo/scripts/dev-demo.sh" "$build"; exit
else
  echo "This host has no cgroup v2 memory controller at /sys/fs/cgroup; starting the product"
  echo "inside the test VM instead:"
  exec "$repo/tests/vm/run-in-vm.sh" --cache "$build/vm" --timeout 600 -- \
    "$repo/scripts/dev-demo.sh" "$build"
fi
