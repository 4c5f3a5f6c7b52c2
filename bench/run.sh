#!/usr/bin/env bash
# Builds spawn_bench and monkeyproofd for PRESET (default: default) if needed,
# runs the benchmark inside the test VM and keeps the results in bench/out/:
#   <stamp>-<preset>.txt   the driver's table and BENCH lines
#   <stamp>-<preset>.csv   every sample
#   <stamp>-<preset>.env   host, qemu, VM and build facts
# Arguments after PRESET go to spawn_bench (e.g. --runs 50, --only ours,bwrap).
# The driver is pinned to guest CPU $MP_BENCH_CPU (default 1; "none" for no
# pinning): under TCG the two vCPUs differ a lot in speed, see README.md.
# Usage: bench/run.sh [PRESET] [spawn_bench options...]
# The API benchmarks (streaming, spawn through the API, daemon memory) run the same way
# with bench/api_bench.sh [PRESET] [options...]; see README.md, "api_bench".
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd "$BENCH_DIR/.." && pwd -P)
# shellcheck source=bench/host_facts.sh
source "$BENCH_DIR/host_facts.sh"
readonly BENCH_DIR REPO_ROOT

PRESET=default
if (($#)) && [[ $1 != -* ]]; then
  PRESET=$1
  shift
fi
BUILD=$REPO_ROOT/build/$PRESET
OUT=$BENCH_DIR/out
VM_CACHE=$BUILD/vm
[[ -d $VM_CACHE ]] || VM_CACHE=$REPO_ROOT/build/default/vm
SMP=${MP_BENCH_SMP:-2}
MEM=${MP_BENCH_MEM:-2048}
CPU=${MP_BENCH_CPU:-1}
PIN=()
[[ $CPU == none ]] || PIN=(--cpu "$CPU")

cd "$REPO_ROOT"
if [[ ! -f $BUILD/build.ninja && ! -f $BUILD/Makefile ]]; then
  cmake --preset "$PRESET"
fi
cmake --build "$BUILD" --target spawn_bench monkeyproofd

mkdir -p "$OUT"
stamp=$(date -u +%Y%m%dT%H%M%SZ)-$PRESET
{
  host_facts "$PRESET" "$VM_CACHE" "$SMP" "$MEM"
  echo "bwrap=$(bwrap --version 2>/dev/null || echo missing)"
  echo "unshare=$(unshare --version 2>/dev/null || echo missing)"
  # TCG timings swing with host load: other VMs or builds on the host inflate them.
  echo "host_loadavg_before=$(cut -d' ' -f1-3 /proc/loadavg)"
  echo "host_other_qemu_before=$(pgrep -c qemu-system || true)"
} >"$OUT/$stamp.env"

echo "bench: running in the VM (TCG, $SMP vCPUs, driver pinned to CPU $CPU);" \
  "results in bench/out/$stamp.*" >&2
set +e
"$REPO_ROOT/tests/vm/run-in-vm.sh" --cache "$VM_CACHE" --smp "$SMP" --mem "$MEM" \
  --timeout "${MP_BENCH_TIMEOUT:-3600}" --share "$OUT" -- \
  "$BUILD/bench/spawn_bench" "${PIN[@]}" --raw "$OUT/$stamp.csv" "$@" | tee "$OUT/$stamp.txt"
rc=${PIPESTATUS[0]}  # the VM's (the driver's) status, not tee's
set -e
echo "host_loadavg_after=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/$stamp.env"
exit "$rc"
