#!/usr/bin/env bash
# shellcheck disable=SC2317 # cleanup runs from a trap
# The original MonkeyProof server (Bun) against ours (monkeyproofd + monkeyproof-api), side by
# side in ONE boot of the test VM (bench/README.md, "compare"): spawn-to-exit of `sh -lc true`
# and of `/bin/true` through command/args, the POST round trip, 50 and 500 sessions at once,
# one session's stream read by a native client (bench/stream_client.cc) and by the Python one,
# server CPU-seconds per GiB streamed, idle and peak RSS; legs in A-B-B-A order (original, ours,
# ours, original) with the same clients; the physical limits (posix_spawn of /bin/true, the raw
# pipe) before and after the legs.
#
# On the host: builds monkeyproofd, monkeyproof-api and stream_client for PRESET (default:
# default), installs the original and Bun (tests/compat/install.sh; npm), boots the VM and runs
# itself there as root (`--in-vm`). The original runs every command it is sent as whoever runs
# it: it is started only inside the VM, as root there. Results in bench/out/:
#   <stamp>-compare.txt    everything printed, the table at the end
#   <stamp>-compare.jsonl  one JSON object per measurement (`compare.py table` reads it)
#   <stamp>-compare.env    host, qemu, VM and build facts
# A full-size run then writes the table into bench/README.md (section "compare").
# Usage: bench/compare.sh [PRESET] [--small] [--bytes N] [--rounds N] [--concurrency A,B]
#                         [--no-readme]
#   Full size: 40 rounds, 50 and 500 sessions at once (--concurrency 50,500), 128 MiB streamed.
#   --small: 2 rounds, 5 and 10 sessions at once, 1 MiB streamed (the CI smoke's size;
#            never written to README.md)
# Environment: MP_BENCH_SMP (2), MP_BENCH_MEM (4096 MB), MP_BENCH_TIMEOUT (5400 s).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd "$BENCH_DIR/.." && pwd -P)
readonly BENCH_DIR REPO_ROOT
PY=/usr/bin/python3
CMP=$BENCH_DIR/compare.py

die() {
  echo "compare: $*" >&2
  exit 2
}

# ------------------------------------------------------------------------------------ host

host_main() {
  local preset=default
  if (($#)) && [[ $1 != -* ]]; then
    preset=$1
    shift
  fi
  local readme=1 small=0 a
  for a in "$@"; do
    [[ $a == --no-readme ]] && readme=0
    [[ $a == --small ]] && small=1
  done
  local build=$REPO_ROOT/build/$preset out=$BENCH_DIR/out vm_cache
  vm_cache=$build/vm
  [[ -d $vm_cache ]] || vm_cache=$REPO_ROOT/build/default/vm
  local smp=${MP_BENCH_SMP:-2} mem=${MP_BENCH_MEM:-4096}
  # shellcheck source=bench/host_facts.sh
  source "$BENCH_DIR/host_facts.sh"

  cd "$REPO_ROOT"
  if [[ ! -f $build/build.ninja && ! -f $build/Makefile ]]; then
    cmake --preset "$preset"
  fi
  cmake --build "$build" --target monkeyproofd monkeyproof-api stream_client
  "$REPO_ROOT/tests/compat/install.sh" "$build" >&2

  mkdir -p "$out"
  local stamp
  stamp=$(date -u +%Y%m%dT%H%M%SZ)-compare
  {
    host_facts "$preset" "$vm_cache" "$smp" "$mem"
    echo "bun=$("$build/compat/original/bin/bun" --version)"
    echo "original=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["original"]["commit"])' \
      "$REPO_ROOT/tests/compat/versions.json")"
    echo "args=$*"
    echo "host_loadavg_before=$(cut -d' ' -f1-3 /proc/loadavg)"
    echo "host_other_qemu_before=$(pgrep -c qemu-system || true)"
  } >"$out/$stamp.env"

  echo "compare: running in the VM (TCG, $smp vCPUs, ${mem} MB); results in bench/out/$stamp.*" >&2
  set +e
  "$REPO_ROOT/tests/vm/run-in-vm.sh" --cache "$vm_cache" --smp "$smp" --mem "$mem" \
    --timeout "${MP_BENCH_TIMEOUT:-5400}" --share "$out" -- \
    "$BENCH_DIR/compare.sh" --in-vm "$build" "$out/$stamp" "$@" | tee "$out/$stamp.txt"
  local rc=${PIPESTATUS[0]}
  set -e
  echo "host_loadavg_after=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/$stamp.env"
  ((rc == 0)) || exit "$rc"
  if ((readme && !small)); then
    # The facts above the table: what ran where, from the .env and the run's own lines.
    local env=$out/$stamp.env facts=$out/$stamp.facts
    {
      echo "Run $(sed -n 's/^date=//p' "$env"), git $(sed -n 's/^git=//p' "$env"), preset $preset," \
        "\`bench/compare.sh $*\`."
      echo "Host: $(sed -n 's/^host_cpu=//p' "$env"), $(sed -n 's/^host_cpus=//p' "$env") CPUs," \
        "Linux $(sed -n 's/^host_kernel=//p' "$env"), load average" \
        "$(sed -n 's/^host_loadavg_before=//p' "$env") before, $(sed -n 's/^host_loadavg_after=//p' "$env") after;" \
        "$(sed -n 's/^qemu=//p' "$env")."
      echo "Guest: $(sed -n 's/^vm=//p' "$env"). Bun $(sed -n 's/^bun=//p' "$env"), the original at" \
        "$(sed -n 's/^original=\(.\{12\}\).*/\1/p' "$env")."
      grep -m 1 '^compare: sizes' "$out/$stamp.txt" | sed 's/^compare: sizes/Sizes/' || true
      echo "Each cell: the mean of the server's two legs (the legs in brackets, in run order)."
    } >"$facts"
    "$PY" "$CMP" table "$out/$stamp" --readme "$BENCH_DIR/README.md" --facts "$facts"
  fi
}

# -------------------------------------------------------------------------------------- VM

BASE=/var/tmp/mp-compare
OURS_PORT=39331
ORIG_PORT=39332
CGROUP=/sys/fs/cgroup/mp-compare
API_USER=mp-bench-api
DPID=""
APID=""
OPID=""
TOKEN=""

cleanup() {
  local pid
  for pid in "$OPID" "$APID" "$DPID"; do
    [[ -n $pid ]] || continue
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}

record() {  # JSON [extra members]: one line of PREFIX.jsonl
  local json=$1 extra=${2:-}
  if [[ $json != "{"* ]]; then
    echo "compare: a client printed no result (${extra})" >&2
    return 0
  fi
  [[ -z $extra ]] || json="${json%\}},$extra}"
  echo "$json" >>"$PREFIX.jsonl"
}

bench_line() {  # the BENCH_JSON line of a client's output
  sed -n 's/^BENCH_JSON //p' <<<"$1" | tail -n 1
}

cpu_ticks() {  # PID...: utime+stime, clock ticks, summed
  local pid t=0 v
  for pid in "$@"; do
    v=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    t=$((t + v))
  done
  echo "$t"
}

status_kib() {  # FIELD PID...: a /proc/PID/status field in KiB, summed
  local field=$1 pid t=0 v
  shift
  for pid in "$@"; do
    v=$(awk -v f="$field:" '$1 == f {print $2}' "/proc/$pid/status")
    t=$((t + v))
  done
  echo "$t"
}

write_policy() {  # the shipped exec policy, with what the benchmark needs
  "$PY" - "$REPO_ROOT/policies/exec.json" "$BASE/policies/exec.json" "$BASE/ws" "$BYTES" <<'PY'
import json, re, sys
src, dst, ws, nbytes = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
p = json.loads(re.sub(r'^\s*//.*$', "", open(src).read(), flags=re.M))
p["workspace_roots"] = [ws]
p["default_workspace"] = ws + "/default"  # below the root: a root itself is refused as a cwd
# The original has no output ceiling: the stream is read at full speed, and the transcript
# holds all of it. RLIMIT_NPROC counts every process of the session user: 500 sessions' worth.
p["output"]["max_rate_bytes_per_second"] = 0
p["output"]["transcript_max_bytes"] = max(p["output"]["transcript_max_bytes"], nbytes + (1 << 20))
p["rlimits"]["nproc"] = 16384
json.dump(p, open(dst, "w"), indent=1)
PY
}

start_ours() {
  id "$API_USER" >/dev/null 2>&1 ||
    useradd --system --user-group --no-create-home --shell /usr/sbin/nologin "$API_USER"
  write_policy
  # Room for the 500 sessions and their ended records; one ended stream transcript at a time.
  cat >"$BASE/monkeyproof.conf" <<EOF
api_user = $API_USER
max_sessions = 2000
max_ended_output_bytes = $((BYTES + (64 << 20)))
EOF
  # One address opens every connection here: the per-address flood limits (128 connections
  # before auth, 100 new per second) would turn 500 sessions at once into retries.
  cat >"$BASE/api.conf" <<EOF
max_connections = 8192
max_preauth_connections_per_address = 0
accept_rate_per_address = 0
EOF
  TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
  printf '# compare.sh\n%s\n' "$TOKEN" >"$BASE/api-token"
  chown "root:$API_USER" "$BASE/api-token"
  chmod 0640 "$BASE/api-token"
  "$DAEMON" check-policy "$BASE/policies" >/dev/null
  "$DAEMON" --config "$BASE/monkeyproof.conf" --state-dir "$BASE/state" \
    --socket "$BASE/run/control.sock" --cgroup-root "$CGROUP" --policies "$BASE/policies" \
    --audit-log "$BASE/audit.log" 2>"$BASE/daemon.log" &
  DPID=$!
  for _ in $(seq 1 300); do
    [[ -S $BASE/run/control.sock ]] && break
    kill -0 "$DPID" 2>/dev/null || { cat "$BASE/daemon.log" >&2; die "monkeyproofd exited"; }
    sleep 0.2
  done
  setpriv --reuid="$API_USER" --regid="$API_USER" --init-groups -- "$API_BIN" \
    --config "$BASE/api.conf" --listen "127.0.0.1:$OURS_PORT" \
    --control-socket "$BASE/run/control.sock" --token-file "$BASE/api-token" 2>"$BASE/api.log" &
  APID=$!
}

start_original() {
  # As the compatibility test starts it (tests/privileged/compat_test.cc): HOME and its working
  # directory are the workspace. MAX_SESSIONS: the original counts ended sessions too (kept for
  # an hour), and refuses the 51st session by default.
  (cd "$BASE/ws-original" && exec env -i PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 \
    HOME="$BASE/ws-original" PORT="$ORIG_PORT" AGENT_WS_TOKEN="$TOKEN" MAX_SESSIONS=100000 \
    "$BUN" run "$ORIGINAL_DIR/src/index.ts") >"$BASE/original.log" 2>&1 &
  OPID=$!
}

wait_ready() {  # NAME URL PATH PID
  local name=$1 url=$2 path=$3 pid=$4
  for _ in $(seq 1 600); do
    curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" "$url$path" && return 0
    kill -0 "$pid" 2>/dev/null || {
      tail -n 30 "$BASE"/*.log >&2
      die "$name exited before it answered $path"
    }
    sleep 0.2
  done
  tail -n 30 "$BASE"/*.log >&2
  die "$name did not answer $path within 120 s"
}

limits() {  # LEG: posix_spawn of /bin/true and the raw pipe, the same generator as the stream
  local leg=$1 out
  out=$("$CLIENT_BIN" spawn-true --count "$((ROUNDS * 2))")
  record "$(bench_line "$out")" "\"server\":\"host\",\"leg\":$leg"
  out=$(bash -c "$GEN" | "$CLIENT_BIN" pipe)
  record "$(bench_line "$out")" "\"server\":\"host\",\"leg\":$leg"
  PIPE_SHA=$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1])["sha256"])' "$(bench_line "$out")")
  echo "   limits: $(bench_line "$out")"
}

leg() {  # N SERVER
  local n=$1 server=$2 url pids out line
  if [[ $server == ours ]]; then
    url=http://127.0.0.1:$OURS_PORT
    pids=("$DPID" "$APID")
  else
    url=http://127.0.0.1:$ORIG_PORT
    pids=("$OPID")
  fi
  local tag="\"server\":\"$server\",\"leg\":$n"
  echo "== leg $n: $server ($url), ${SECONDS} s into the run"
  out=$("$PY" "$CMP" spawn --url "$url" --token "$TOKEN" --rounds "$ROUNDS" --warmup "$WARMUP")
  record "$(bench_line "$out")" "$tag"
  echo "   $(bench_line "$out")"
  local slot count
  for slot in 50 500; do
    count=$C50
    [[ $slot == 500 ]] && count=$C500
    out=$("$PY" "$CMP" concurrency --url "$url" --token "$TOKEN" --count "$count" \
      --native "$CLIENT_BIN") ||
      echo "   concurrency $count: some sessions failed (see the line below)"
    record "$(bench_line "$out")" "$tag,\"slot\":\"$slot\""
    echo "   $(bench_line "$out")"
  done
  # The stream starts two seconds after the POST, so that either client is reading before the
  # first byte (the original sends only what is read after a client joins, plus a catch-up).
  local task="sleep 2; $GEN" c0 c1 hz
  hz=$(getconf CLK_TCK)
  c0=$(cpu_ticks "${pids[@]}")
  out=$("$CLIENT_BIN" stream --url "$url" --token "$TOKEN" --task "$task" --expect "$BYTES")
  c1=$(cpu_ticks "${pids[@]}")
  line=$(bench_line "$out")
  local match=false
  grep -q "\"sha256\":\"$PIPE_SHA\"" <<<"$line" && match=true
  record "$line" "$tag,\"expect\":$BYTES,\"sha_matches_pipe\":$match,\"server_cpu_s\":$(awk "BEGIN {print ($c1 - $c0) / $hz}")"
  echo "   $line (sha256 = pipe's: $match)"
  out=$("$PY" "$CMP" stream --url "$url" --token "$TOKEN" --task "$task" --expect "$BYTES")
  record "$(bench_line "$out")" "$tag,\"expect\":$BYTES"
  echo "   $(bench_line "$out")"
  # The original appends each session's output to a transcript in its workspace; drop them so
  # that the guest's memory holds one stream at a time (ours drops ended transcripts itself,
  # max_ended_output_bytes).
  rm -rf "$BASE/ws-original/.session"
}

vm_main() {
  [[ ${MP_TEST_VM:-} == 1 ]] || die "--in-vm: refusing to run outside the test VM (it runs the original as root)"
  [[ $(id -u) == 0 ]] || die "--in-vm needs root"
  local build
  build=$(cd "$1" && pwd -P) || die "no build directory $1"
  PREFIX=$2
  shift 2
  BYTES=$((128 << 20))
  ROUNDS=40
  WARMUP=3
  C50=50
  C500=500
  while (($#)); do
    case $1 in
      --small) BYTES=$((1 << 20)); ROUNDS=2; WARMUP=1; C50=5; C500=10; shift ;;
      --bytes) BYTES=$2; shift 2 ;;
      --rounds) ROUNDS=$2; shift 2 ;;
      --concurrency) C50=${2%,*}; C500=${2#*,}; shift 2 ;;
      --no-readme) shift ;;
      *) die "unknown option $1" ;;
    esac
  done
  DAEMON=$build/src/supervisor/monkeyproofd
  API_BIN=$build/src/http/monkeyproof-api
  CLIENT_BIN=$build/bench/stream_client
  ORIGINAL_DIR=$build/compat/original
  BUN=$ORIGINAL_DIR/bin/bun
  local f
  for f in "$DAEMON" "$API_BIN" "$CLIENT_BIN" "$BUN" "$ORIGINAL_DIR/src/index.ts"; do
    [[ -e $f ]] || die "$f is missing: build it (and run tests/compat/install.sh $build) on the host first"
  done
  GEN="head -c $BYTES /dev/zero | tr '\\0' a"
  : >"$PREFIX.jsonl"
  trap cleanup EXIT
  echo "compare: $(date -u +%Y-%m-%dT%H:%M:%SZ) kernel $(uname -r), $(nproc) CPUs," \
    "$(awk '/MemTotal/ {print $2}' /proc/meminfo) KiB"
  echo "compare: sizes: $ROUNDS rounds (+$WARMUP warm-up) per spawn variant and leg;" \
    "$C50 and $C500 sessions at once (\`sleep 2; echo done\`); $BYTES bytes streamed" \
    "(\`$GEN\`, two seconds after the POST); legs original, ours, ours, original."
  rm -rf "$BASE"
  mkdir -p "$BASE/ws/default" "$BASE/ws-original" "$BASE/policies"
  chmod 0777 "$BASE/ws/default"
  # About a dozen descriptors per session in monkeyproofd, two per connection in either server.
  ulimit -n 65536
  start_ours
  start_original
  wait_ready ours "http://127.0.0.1:$OURS_PORT" /readyz "$APID"
  wait_ready original "http://127.0.0.1:$ORIG_PORT" /health "$OPID"
  sleep 5  # quiet, then idle RSS: nothing asked yet but readiness
  record "{\"kind\":\"rss\",\"phase\":\"idle\",\"kib\":$(status_kib VmRSS "$DPID" "$APID")}" '"server":"ours"'
  record "{\"kind\":\"rss\",\"phase\":\"idle\",\"kib\":$(status_kib VmRSS "$OPID")}" '"server":"original"'
  echo "== physical limits (before)"
  limits 0
  leg 1 original
  leg 2 ours
  leg 3 ours
  leg 4 original
  echo "== physical limits (after)"
  limits 5
  record "{\"kind\":\"rss\",\"phase\":\"peak\",\"kib\":$(status_kib VmHWM "$DPID" "$APID")}" '"server":"ours"'
  record "{\"kind\":\"rss\",\"phase\":\"peak\",\"kib\":$(status_kib VmHWM "$OPID")}" '"server":"original"'
  echo "== table (${SECONDS} s into the run)"
  "$PY" "$CMP" table "$PREFIX"
}

if [[ ${1:-} == --in-vm ]]; then
  shift
  vm_main "$@"
else
  host_main "$@"
fi
