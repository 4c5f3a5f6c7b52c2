#!/usr/bin/env bash
# The POST /sessions round trip of two builds in one VM boot, in A-B-B-A order (bench/README.md,
# "Where the POST round trip goes"). Each leg starts `monkeyproofd --dev` with that build's
# monkeyproof-api, sends COUNT POSTs of {"task":"true","command":"/bin/true"} over one
# keep-alive connection (each after the previous session ended) and stops the daemons. A build
# made with timing stamps (/tmp/mp-stamps.<pid> per process) also gets its per-step medians.
#
# Usage (host): bench/post_timing.sh A_DIR B_DIR [COUNT]
#   A_DIR, B_DIR: directories holding monkeyproofd and monkeyproof-api (copies of two builds).
# Results: bench/out/<stamp>-post-timing.txt. Not a test: nothing here asserts a time.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd "$BENCH_DIR/.." && pwd -P)
PY=/usr/bin/python3
CLIENT=$BENCH_DIR/post_timing.py
PORT=3290

die() {
  echo "post_timing: $*" >&2
  exit 2
}

host_main() {
  (($# >= 2)) || die "usage: bench/post_timing.sh A_DIR B_DIR [COUNT]"
  local a b count=${3:-30} out=$BENCH_DIR/out stamp
  a=$(cd "$1" && pwd -P)
  b=$(cd "$2" && pwd -P)
  local d
  for d in "$a" "$b"; do
    [[ -x $d/monkeyproofd && -x $d/monkeyproof-api ]] || die "$d: no monkeyproofd and monkeyproof-api"
  done
  local vm_cache=$REPO_ROOT/build/default/vm
  mkdir -p "$out"
  stamp=$(date -u +%Y%m%dT%H%M%SZ)-post-timing
  "$REPO_ROOT/tests/vm/run-in-vm.sh" --cache "$vm_cache" --smp 2 --mem 3072 --timeout 1800 \
    --share "$out" -- "$BENCH_DIR/post_timing.sh" --in-vm "$out/$stamp" "$a" "$b" "$count" |
    tee "$out/$stamp.txt"
}

leg() {  # LABEL DIR COUNT PREFIX
  local label=$1 dir=$2 count=$3 prefix=$4 base=/var/tmp/mp-post-timing
  rm -rf "$base" /tmp/mp-stamps.*
  mkdir -p "$base/ws" "$base/policies"
  chmod 0777 "$base/ws"
  sed -e "s|\"workspace_roots\": \[[^]]*\]|\"workspace_roots\": [\"$base/ws\"]|" \
    -e "s|\"default_workspace\": \"[^\"]*\"|\"default_workspace\": \"$base/ws\"|" \
    "$REPO_ROOT/policies/exec.json" >"$base/policies/exec.json"
  grep -q "\"default_workspace\": \"$base/ws\"" "$base/policies/exec.json" ||
    die "policies/exec.json: could not set the workspace"
  "$dir/monkeyproofd" --dev --policies "$base/policies" --api "$dir/monkeyproof-api" \
    --api-listen "127.0.0.1:$PORT" 2>"$base/daemon.log" &
  local dpid=$! token="" tries
  for ((tries = 0; ; tries++)); do
    token=$(sed -n 's/.*MONKEYPROOF_TOKEN=\([0-9a-f]*\).*/\1/p' "$base/daemon.log" | head -n 1)
    if [[ -n $token ]] && curl -sf -o /dev/null -H "Authorization: Bearer $token" \
      "http://127.0.0.1:$PORT/readyz"; then
      break
    fi
    kill -0 "$dpid" 2>/dev/null || { cat "$base/daemon.log" >&2; die "$label: monkeyproofd exited"; }
    ((tries < 600)) || die "$label: the API did not become ready in 120 s"
    sleep 0.2
  done
  MONKEYPROOF_TOKEN=$token "$PY" "$CLIENT" post --hostport "127.0.0.1:$PORT" --count "$count" \
    >"$prefix.$label.posts"
  kill -TERM "$dpid"
  wait "$dpid" 2>/dev/null || true
  local stamps=()
  for f in /tmp/mp-stamps.*; do [[ -e $f ]] && stamps+=("$f"); done
  "$PY" "$CLIENT" report --label "$label" "$prefix.$label.posts" "${stamps[@]}"
  if ((${#stamps[@]})); then cat "${stamps[@]}" >"$prefix.$label.stamps"; fi
  return 0
}

vm_main() {
  [[ ${MP_TEST_VM:-} == 1 ]] || die "--in-vm: refusing to run outside the test VM"
  local prefix=$1 a=$2 b=$3 count=$4
  echo "post_timing: $(date -u +%FT%TZ) kernel $(uname -r), $(nproc) CPUs; A=$a B=$b"
  leg A1 "$a" "$count" "$prefix"
  leg B1 "$b" "$count" "$prefix"
  leg B2 "$b" "$count" "$prefix"
  leg A2 "$a" "$count" "$prefix"
}

if [[ ${1:-} == --in-vm ]]; then
  shift
  vm_main "$@"
else
  host_main "$@"
fi
