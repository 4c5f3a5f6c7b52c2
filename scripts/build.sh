#!/usr/bin/env bash
# Configures and builds one CMake preset (default: "default") and fetches the
# test VM's kernel into the build tree. Usage: scripts/build.sh [PRESET]
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
preset=${1:-default}
cd "$repo"
cmake --preset "$preset"
cmake --build --preset "$preset" -j "$(nproc)"
# The VM needs Debian's kernel package; fetching needs the package mirror once,
# never at test time.
"$repo/tests/vm/fetch-kernel.sh" "$repo/build/$preset/vm"
