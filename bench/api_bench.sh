#!/usr/bin/env bash
# shellcheck disable=SC2317 # cleanup runs from a trap
# Benchmarks of the HTTP/WebSocket API (bench/README.md, "api_bench"): 1 GiB streamed over
# one WebSocket against the raw pipe, spawn through the API against `monkeyproofd exec`, and
# the RSS of monkeyproofd and monkeyproof-api (idle, 1,000 live sessions, a slow 1 GiB reader).
#
# On the host: builds monkeyproofd and monkeyproof-api for PRESET (default: default), boots
# the test VM and runs itself there as root (`--in-vm`); results land in bench/out/:
#   <stamp>-api-<preset>.txt        everything printed, the summary tables at the end
#   <stamp>-api-<preset>.jsonl      one JSON object per measurement
#   <stamp>-api-<preset>.spawn.csv  every spawn sample
#   <stamp>-api-<preset>.rss-*.tsv  RSS samples (seconds, monkeyproofd KiB, monkeyproof-api KiB)
#   <stamp>-api-<preset>.env        host, qemu, VM and build facts
# Usage: bench/api_bench.sh [PRESET] [--bytes N] [--rounds N] [--warmup N] [--sessions N]
#                           [--slow-rate MIB_S]
#                           [--phases idle,spawn,spawn-unpinned,stream,stream-abba,slow,mass]
#                           [--perf]   (perf profiles of both daemons during each stream)
#                           [--stream-extra]  (also crc32 instead of sha256, and RawWebSocket)
#                           [--mass-deadline SEC]  (stop creating/awaiting sessions after SEC)
#                           [--daemon PATH] [--api PATH]  (other binaries, for experiments)
# Environment: MP_BENCH_SMP (2), MP_BENCH_MEM (4096 MB), MP_BENCH_TIMEOUT (7200 s),
#   MP_BENCH_CPU (1; "none": the spawn phase is not pinned).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd "$BENCH_DIR/.." && pwd -P)
readonly BENCH_DIR REPO_ROOT
# shellcheck source=bench/host_facts.sh
source "$BENCH_DIR/host_facts.sh"
PY=/usr/bin/python3
CLIENT=$BENCH_DIR/api_stream.py

die() {
  echo "api_bench: $*" >&2
  exit 2
}

# ------------------------------------------------------------------------------------ host

host_main() {
  local preset=default
  if (($#)) && [[ $1 != -* ]]; then
    preset=$1
    shift
  fi
  local build=$REPO_ROOT/build/$preset out=$BENCH_DIR/out vm_cache
  vm_cache=$build/vm
  [[ -d $vm_cache ]] || vm_cache=$REPO_ROOT/build/default/vm
  local smp=${MP_BENCH_SMP:-2} mem=${MP_BENCH_MEM:-4096}

  cd "$REPO_ROOT"
  if [[ ! -f $build/build.ninja && ! -f $build/Makefile ]]; then
    cmake --preset "$preset"
  fi
  cmake --build "$build" --target monkeyproofd monkeyproof-api

  mkdir -p "$out"
  local stamp
  stamp=$(date -u +%Y%m%dT%H%M%SZ)-api-$preset
  {
    host_facts "$preset" "$vm_cache" "$smp" "$mem"
    echo "python=$($PY --version 2>&1) websockets=$($PY -c 'import websockets; print(websockets.__version__)')"
    echo "args=$*"
    echo "host_loadavg_before=$(cut -d' ' -f1-3 /proc/loadavg)"
    echo "host_other_qemu_before=$(pgrep -c qemu-system || true)"
  } >"$out/$stamp.env"

  echo "api_bench: running in the VM (TCG, $smp vCPUs, ${mem} MB); results in bench/out/$stamp.*" >&2
  set +e
  "$REPO_ROOT/tests/vm/run-in-vm.sh" --cache "$vm_cache" --smp "$smp" --mem "$mem" \
    --timeout "${MP_BENCH_TIMEOUT:-7200}" --share "$out" -- \
    "$BENCH_DIR/api_bench.sh" --in-vm "$build" "$out/$stamp" "$@" | tee "$out/$stamp.txt"
  local rc=${PIPESTATUS[0]}
  set -e
  echo "host_loadavg_after=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/$stamp.env"
  exit "$rc"
}

# -------------------------------------------------------------------------------------- VM

BASE=/var/tmp/mp-api-bench
PORT=3290
URL=http://127.0.0.1:$PORT
CLI_CGROUP=/sys/fs/cgroup/mp-api-bench-cli
DEV_CGROUP=/sys/fs/cgroup/monkeyproof-dev
DPID=""
APID=""
SAMPLER=""
RSS_D=0
RSS_A=0

cleanup() {
  [[ -z $SAMPLER ]] || kill "$SAMPLER" 2>/dev/null || true
  if [[ -n $DPID ]]; then
    kill -TERM "$DPID" 2>/dev/null || true
    wait "$DPID" 2>/dev/null || true
  fi
}

# VmRSS of the two daemons into RSS_D and RSS_A, without forking (the sampler runs beside
# the measurement, and a fork costs milliseconds under TCG).
read_rss() {
  local pid k v _
  RSS_D=0
  RSS_A=0
  for pid in "$DPID" "$APID"; do
    while read -r k v _; do
      if [[ $k == VmRSS: ]]; then
        if [[ $pid == "$DPID" ]]; then RSS_D=$v; else RSS_A=$v; fi
        break
      fi
    done <"/proc/$pid/status"
  done
}

# One line of /proc/PID/status fields of interest, for the record.
status_line() {
  local who=$1 pid=$2
  printf '%s pid=%s' "$who" "$pid"
  awk '/^(VmRSS|VmHWM|RssAnon|RssFile|RssShmem|VmSize|Threads):/ {printf " %s=%s", $1, $2}' \
    "/proc/$pid/status" | tr -d ':'
  printf ' fds=%s\n' "$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 | wc -l)"
}

reset_hwm() {
  local pid
  for pid in "$DPID" "$APID"; do echo 5 >"/proc/$pid/clear_refs" 2>/dev/null || true; done
}

sampler_start() {  # FILE: "seconds daemon_kib api_kib" every second
  local file=$1
  : >"$file"
  (
    start=${EPOCHREALTIME/./}
    while :; do
      read_rss
      now=${EPOCHREALTIME/./}
      t=$(((now - start) / 100000))
      printf '%d.%d %s %s\n' $((t / 10)) $((t % 10)) "$RSS_D" "$RSS_A" >>"$file"
      sleep 1
    done
  ) &
  SAMPLER=$!
}

sampler_stop() {
  [[ -n $SAMPLER ]] || return 0
  kill "$SAMPLER" 2>/dev/null || true
  wait "$SAMPLER" 2>/dev/null || true
  SAMPLER=""
}

record() {  # a JSON line from the client, or one built here
  echo "$1" >>"$PREFIX.jsonl"
}

client() {  # runs api_stream.py; keeps its BENCH_JSON line
  local line out rc=0
  out=$(MONKEYPROOF_TOKEN=$TOKEN "$PY" "$CLIENT" "$@") || rc=$?
  printf '%s\n' "$out"
  while IFS= read -r line; do
    [[ $line == "BENCH_JSON "* ]] && record "${line#BENCH_JSON }"
  done <<<"$out"
  return "$rc"
}

json_field() {  # FIELD JSON
  "$PY" -c 'import json,sys; print(json.loads(sys.argv[2]).get(sys.argv[1], ""))' "$1" "$2"
}

status_json() {  # PID: the memory fields of /proc/PID/status as JSON members
  awk '/^(VmRSS|VmHWM|RssAnon|RssFile|RssShmem):/ {
    sub(":", "", $1); printf "%s\"%s_kib\":%s", sep, $1, $2; sep = ","}' "/proc/$1/status"
}

memory_json() {  # PHASE [extra json members]
  local phase=$1 extra=${2:-}
  record "{\"kind\":\"memory\",\"phase\":\"$phase\",\"monkeyproofd\":{$(status_json "$DPID")},\"monkeyproof_api\":{$(status_json "$APID")}${extra:+,$extra}}"
}

start_daemons() {
  rm -rf "$BASE"
  # The sessions' workspace lies below the root: a root itself is refused as a cwd.
  mkdir -p "$BASE/ws/default" "$BASE/policies"
  chmod 0777 "$BASE/ws/default"
  # The default exec policy (policies/exec.json) with what a 1 GiB stream and 1,000 live
  # sessions need: no output-rate ceiling, a transcript that holds the whole stream (a slow
  # reader reads it back from there), and an RLIMIT_NPROC above 1,000 sessions' processes
  # (it counts every process of `nobody` in the VM). Everything else as in the default.
  cat >"$BASE/policies/exec.json" <<EOF
{
  "description": "api_bench: exec with the output caps lifted",
  "type": "exec",
  "command": [],
  "run_as": {"user": "nobody"},
  "workspace_roots": ["$BASE/ws"],
  "default_workspace": "$BASE/ws/default",
  "network": "none",
  "rlimits": {"core_bytes": 0, "nofile": 4096, "nproc": 16384, "fsize_bytes": 8589934592},
  "limits": {"memory_max_bytes": 2147483648, "memory_swap_max_bytes": 0, "pids_max": 512,
             "cpu_max_percent": 200},
  "deadlines": {"wall_seconds": 3600, "idle_seconds": 900},
  "output": {"ring_bytes": 1048576, "transcript_max_bytes": 1200000000,
             "max_rate_bytes_per_second": 0},
  "env": {"pass": [], "set": {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
                              "HOME": "/tmp"}},
  "request_env": {"allow": ["LANG", "LC_ALL", "TZ", "TERM", "NO_COLOR", "CI"]}
}
EOF
  # Room for the 1,000 sessions; ended transcripts (1 GiB each, on the guest's tmpfs) are
  # dropped once they pass 1.5 GiB together, so at most two are held at a time.
  cat >"$BASE/monkeyproof.conf" <<EOF
max_sessions = $((SESSIONS + 100))
max_ended_output_bytes = 1610612736
EOF
  "$DAEMON" check-policy "$BASE/policies" >/dev/null
  # About a dozen descriptors per session: the VM's default hard limit (4096) is too low
  # for 1,000 sessions. monkeyproofd raises its soft limit to the hard one.
  ulimit -n 65536
  "$DAEMON" --dev --config "$BASE/monkeyproof.conf" --policies "$BASE/policies" \
    --api "$API_BIN" --api-listen "127.0.0.1:$PORT" 2>"$BASE/daemon.log" &
  DPID=$!
  local i
  TOKEN=""
  for i in $(seq 1 600); do
    TOKEN=$(sed -n 's/.*MONKEYPROOF_TOKEN=\([0-9a-f]*\).*/\1/p' "$BASE/daemon.log" | head -n 1)
    if [[ -n $TOKEN ]] &&
      curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" "$URL/readyz"; then
      break
    fi
    if ! kill -0 "$DPID" 2>/dev/null; then
      cat "$BASE/daemon.log" >&2
      die "monkeyproofd --dev exited"
    fi
    ((i < 600)) || die "the API did not become ready in 120 s"
    sleep 0.2
  done
  APID=$(pgrep -P "$DPID" -x monkeyproof-api)
  [[ -n $APID ]] || die "no monkeyproof-api child of monkeyproofd"
  echo "api_bench: monkeyproofd pid $DPID, monkeyproof-api pid $APID"
}

cpu_over() {  # SECONDS: CPU seconds both daemons use in that many seconds, as JSON members
  local secs=$1 d0 a0 d1 a1 hz
  hz=$(getconf CLK_TCK)
  d0=$(cpu_ticks "$DPID")
  a0=$(cpu_ticks "$APID")
  sleep "$secs"
  d1=$(cpu_ticks "$DPID")
  a1=$(cpu_ticks "$APID")
  printf '"cpu_window_s":%s,"daemon_cpu_s":%s,"api_cpu_s":%s' "$secs" \
    "$(awk "BEGIN {print ($d1 - $d0) / $hz}")" "$(awk "BEGIN {print ($a1 - $a0) / $hz}")"
}

stop_daemons() {
  [[ -n $DPID ]] || return 0
  kill -TERM "$DPID" 2>/dev/null || true
  wait "$DPID" 2>/dev/null || true
  DPID=""
  APID=""
  # --dev's state directory (/tmp/monkeyproof-dev-XXXXXX/state): the transcripts live there,
  # on the guest's tmpfs, which holds one 1 GiB transcript but not two.
  local state
  state=$(sed -n 's/.* ready socket=[^ ]* state=\([^ ]*\) .*/\1/p' "$BASE/daemon.log" | head -n 1)
  [[ $state == /tmp/monkeyproof-dev-*/state ]] && rm -rf "${state%/state}"
  return 0
}

phase_idle() {
  # "After start": ready, then left alone for 5 s. Nothing has been asked but /readyz.
  sleep 5
  echo "== idle"
  status_line monkeyproofd "$DPID"
  status_line monkeyproof-api "$APID"
  memory_json idle
  # CPU while nothing happens: no session, then one idle session (`sleep 600`).
  local cpu
  cpu=$(cpu_over 10)
  echo "   CPU, no session: $cpu"
  record "{\"kind\":\"idle-cpu\",\"sessions\":0,$cpu}"
  local id
  id=$(curl -sf -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d '{"task":"sleep 600","owner":"api-bench"}' "$URL/sessions" |
    sed -n 's/^{"id":"\([^"]*\)".*/\1/p')
  sleep 3
  cpu=$(cpu_over 10)
  echo "   CPU, one idle session ($id): $cpu"
  record "{\"kind\":\"idle-cpu\",\"sessions\":1,$cpu}"
  curl -sf -o /dev/null -X DELETE -H "Authorization: Bearer $TOKEN" "$URL/sessions/$id"
  sleep 2
}

phase_spawn() {  # [CPU|none] (default $CPU)
  local cpu=${1:-$CPU}
  local CPU=$cpu
  echo "== spawn: $ROUNDS rounds (+$WARMUP warm-up), pinned to CPU ${CPU}"
  local pin=()
  if [[ $CPU != none ]]; then
    taskset -a -p -c "$CPU" "$DPID" >/dev/null
    taskset -a -p -c "$CPU" "$APID" >/dev/null
    pin=(taskset -c "$CPU")
  fi
  local d=$DAEMON
  local cli
  # The one-shot CLI with what the bench policy gives an API session: the workspace, the
  # same limits and environment (sh -l reads /etc/profile, which looks at the environment).
  local opts
  opts=$(printf '"%s",' "$d" exec --cgroup-root "$CLI_CGROUP" --workspace "$BASE/ws" \
    --memory-max 2G --pids-max 512 --cpu-max "200000 100000" \
    --env PATH=/usr/local/bin:/usr/bin:/bin --env LANG=C.UTF-8 --env HOME=/tmp --)
  cli=$(printf '{"cli-true":[%s"/bin/true"],"cli-sh":[%s"/bin/sh","-lc","true"]}' "$opts" "$opts")
  MONKEYPROOF_TOKEN=$TOKEN "${pin[@]}" "$PY" "$CLIENT" spawn --url "$URL" \
    --rounds "$ROUNDS" --warmup "$WARMUP" --raw "$PREFIX.spawn-cpu$CPU.csv" --label "cpu=$CPU" \
    --api-variants '{"api-sh":{"task":"true"},"api-true":{"task":"true","command":"/bin/true"}}' \
    --cli "$cli" --ratios '[["api-sh","cli-sh"],["api-true","cli-true"]]' >"$BASE/spawn.out"
  cat "$BASE/spawn.out"
  grep '^BENCH_JSON ' "$BASE/spawn.out" | sed 's/^BENCH_JSON //' >>"$PREFIX.jsonl"
  if [[ $CPU != none ]]; then
    local all
    all="0-$(($(nproc) - 1))"
    taskset -a -p -c "$all" "$DPID" >/dev/null
    taskset -a -p -c "$all" "$APID" >/dev/null
  fi
}

GEN=""
PIPE_DIGEST_SHA=""
PIPE_DIGEST_CRC=""

pipe_run() {  # HASH: the generator straight into the same kind of reader
  local hash=$1 out
  echo "-- pipe ($hash): $GEN | api_stream.py pipe"
  out=$(bash -c "$GEN" | "$PY" "$CLIENT" pipe --hash "$hash")
  echo "$out"
  record "${out#BENCH_JSON }"
  local digest
  digest=$(json_field digest "${out#BENCH_JSON }")
  [[ $(json_field bytes "${out#BENCH_JSON }") == "$BYTES" ]] || die "pipe: byte count differs"
  if [[ $hash == sha256 ]]; then PIPE_DIGEST_SHA=$digest; else PIPE_DIGEST_CRC=$digest; fi
}

cpu_ticks() {  # PID: utime+stime in clock ticks
  awk '{print $14 + $15}' "/proc/$1/stat"
}

ws_run() {  # HASH RATE PHASE CLIENT: one session, one WebSocket, RSS sampled every second
  local hash=$1 rate=$2 phase=$3 kind=${4:-websockets} out line
  echo "-- websocket ($hash, $kind client, rate ${rate:-unlimited} MiB/s): session task \"$GEN\""
  reset_hwm
  sampler_start "$PREFIX.rss-$phase.tsv"
  local d0 a0 d1 a1 hz
  hz=$(getconf CLK_TCK)
  d0=$(cpu_ticks "$DPID")
  a0=$(cpu_ticks "$APID")
  local perf_pid=""
  if ((PERF)); then
    perf record -q -e cpu-clock -F 499 -g -p "$DPID,$APID" -o "$BASE/perf-$phase.data" \
      2>"$BASE/perf-$phase.log" &
    perf_pid=$!
  fi
  out=$(MONKEYPROOF_TOKEN=$TOKEN "$PY" "$CLIENT" stream --url "$URL" --gen "$GEN" \
    --hash "$hash" --rate "${rate:-0}" --client "$kind" --expect-bytes "$BYTES") || true
  if [[ -n $perf_pid ]]; then
    kill -INT "$perf_pid"
    wait "$perf_pid" || true
    # Only the two daemons' own threads: sessions forked from monkeyproofd keep its name
    # until they exec, and the sandbox setup would otherwise count as the supervisor's.
    perf report -i "$BASE/perf-$phase.data" --stdio --no-children --pid "$DPID,$APID" \
      --sort pid,dso,sym --percent-limit 0.5 -g none 2>/dev/null | grep -v '^$' \
      >"$PREFIX.perf-$phase.txt" || true
    perf report -i "$BASE/perf-$phase.data" --stdio --children --pid "$DPID,$APID" \
      --sort pid,sym --percent-limit 2 -g none 2>/dev/null | grep -v '^$' \
      >"$PREFIX.perf-$phase-children.txt" || true
  fi
  d1=$(cpu_ticks "$DPID")
  a1=$(cpu_ticks "$APID")
  sampler_stop
  echo "$out"
  line=$(grep '^BENCH_JSON ' <<<"$out" | sed 's/^BENCH_JSON //') || die "stream: no result"
  local want=$PIPE_DIGEST_SHA got
  [[ $hash == crc32 ]] && want=$PIPE_DIGEST_CRC
  got=$(json_field digest "$line")
  local match=unknown
  if [[ -n $want ]]; then
    if [[ $got == "$want" ]]; then match=true; else match=false; fi
  fi
  echo "   digest $got, pipe's $want: match=$match"
  grep -m 5 'transcript' "$BASE/daemon.log" || true
  local cpu
  cpu=$(printf '"daemon_cpu_s":%s,"api_cpu_s":%s' "$(awk "BEGIN {print ($d1 - $d0) / $hz}")" \
    "$(awk "BEGIN {print ($a1 - $a0) / $hz}")")
  echo "   CPU seconds during the run: monkeyproofd and monkeyproof-api: $cpu"
  record "${line%\}},\"phase\":\"$phase\",\"digest_matches_pipe\":\"$match\",$cpu}"
  memory_json "$phase"
  status_line monkeyproofd "$DPID"
  status_line monkeyproof-api "$APID"
}

phase_stream() {
  echo "== stream: $BYTES bytes"
  pipe_run sha256
  ws_run sha256 "" stream-sha256
  if ((STREAM_EXTRA)); then
    # A cheap check instead of sha256, with the websockets library and with RawWebSocket:
    # whether hashing or the client library is what limits the WebSocket reader.
    pipe_run crc32
    ws_run crc32 "" stream-crc32
    ws_run crc32 "" stream-crc32-raw raw
  fi
}

# The same measurement in A-B-B-A order (pipe, WebSocket, WebSocket, pipe), for a host whose
# load drifts (other VMs, builds): a linear drift then weighs on both sides equally. The
# ratio is the WebSocket's mean rate over the pipe's mean rate; each leg is reported too.
phase_stream_abba() {
  echo "== stream, ABBA: $BYTES bytes per leg"
  local order=(pipe ws ws pipe) leg n=0
  for leg in "${order[@]}"; do
    n=$((n + 1))
    if [[ $leg == pipe ]]; then
      pipe_run sha256
    else
      if ((n > 2)); then
        stop_daemons  # fresh state: the guest's tmpfs holds one transcript at a time
        start_daemons
      fi
      ws_run sha256 "" "stream-abba-$n"
    fi
  done
}

phase_slow() {
  echo "== slow reader: $BYTES bytes at most $SLOW_RATE MiB/s"
  [[ -n $PIPE_DIGEST_SHA ]] || pipe_run sha256
  ws_run sha256 "$SLOW_RATE" slow
}

count_leaves() {  # a leaf removed while find walks the directory is not an error
  { find "$DEV_CGROUP/sessions" -mindepth 1 -maxdepth 1 -type d 2>/dev/null || true; } | wc -l
}

phase_mass() {
  # sleep 3000: creating 1,000 sessions took 708 s on a loaded host, and a session that ends
  # before the measurement would not count (the exec policy's wall deadline is 3,600 s).
  echo "== $SESSIONS live sessions (sleep 3000)"
  echo "   pid_max=$(cat /proc/sys/kernel/pid_max) threads-max=$(cat /proc/sys/kernel/threads-max)" \
    "nofile=$(ulimit -n) mem_available_kib=$(awk '/MemAvailable/ {print $2}' /proc/meminfo)"
  reset_hwm
  sampler_start "$PREFIX.rss-mass.tsv"
  local t0=$SECONDS
  client mass-create --url "$URL" --count "$SESSIONS" --ids "$BASE/mass.ids" \
    --deadline "$MASS_DEADLINE" --task "sleep 3000" || true
  # POST answers 201 once the supervisor has taken the session ("starting" counts as
  # running); wait until every created session has its cgroup leaf.
  local created leaves pids avail
  created=$(grep -c . "$BASE/mass.ids" || true)
  leaves=$(count_leaves)
  while ((leaves < created && SECONDS - t0 < MASS_DEADLINE + 300)); do
    sleep 5
    leaves=$(count_leaves)
  done
  record "{\"kind\":\"mass-leaves\",\"when\":\"created $created\",\"leaves\":$leaves,\"seconds\":$((SECONDS - t0))}"
  sleep 5
  leaves=$(count_leaves)
  pids=$(cat "$DEV_CGROUP/pids.current" 2>/dev/null || echo unknown)
  avail=$(awk '/MemAvailable/ {print $2}' /proc/meminfo)
  echo "   cgroup leaves=$leaves pids=$pids mem_available_kib=$avail"
  status_line monkeyproofd "$DPID"
  status_line monkeyproof-api "$APID"
  grep -m 3 'response_unencodable' "$BASE/daemon.log" || true
  memory_json mass-alive "\"leaves\":$leaves,\"pids\":\"$pids\",\"mem_available_kib\":$avail"
  local cpu
  cpu=$(cpu_over 10)
  echo "   CPU with the sessions alive: $cpu"
  record "{\"kind\":\"idle-cpu\",\"sessions\":$leaves,$cpu}"
  t0=$SECONDS
  client mass-delete --url "$URL" --ids "$BASE/mass.ids" || true
  leaves=$(count_leaves)
  while ((leaves > 0 && SECONDS - t0 < MASS_DEADLINE)); do
    sleep 5
    leaves=$(count_leaves)
  done
  record "{\"kind\":\"mass-leaves\",\"when\":\"after DELETE\",\"leaves\":$leaves,\"seconds\":$((SECONDS - t0))}"
  sleep 5
  sampler_stop
  status_line monkeyproofd "$DPID"
  status_line monkeyproof-api "$APID"
  memory_json mass-after-delete
}

vm_main() {
  [[ ${MP_TEST_VM:-} == 1 ]] || die "--in-vm: refusing to run outside the test VM (it runs the daemons as root)"
  [[ $(id -u) == 0 ]] || die "--in-vm needs root"
  BUILD=$1
  PREFIX=$2
  shift 2
  BYTES=$((1 << 30))
  ROUNDS=30
  WARMUP=3
  SESSIONS=1000
  SLOW_RATE=1
  PERF=0
  STREAM_EXTRA=0
  MASS_DEADLINE=1200
  DAEMON=$BUILD/src/supervisor/monkeyproofd
  API_BIN=$BUILD/src/http/monkeyproof-api
  local phases=idle,spawn,spawn-unpinned,stream,slow,mass
  CPU=${MP_BENCH_CPU:-1}
  while (($#)); do
    case $1 in
      --bytes) BYTES=$2; shift 2 ;;
      --rounds) ROUNDS=$2; shift 2 ;;
      --warmup) WARMUP=$2; shift 2 ;;
      --sessions) SESSIONS=$2; shift 2 ;;
      --slow-rate) SLOW_RATE=$2; shift 2 ;;
      --phases) phases=$2; shift 2 ;;
      --perf) PERF=1; shift ;;
      --stream-extra) STREAM_EXTRA=1; shift ;;
      --mass-deadline) MASS_DEADLINE=$2; shift 2 ;;
      --daemon) DAEMON=$2; shift 2 ;;
      --api) API_BIN=$2; shift 2 ;;
      *) die "unknown option $1" ;;
    esac
  done
  GEN="head -c $BYTES /dev/zero | tr '\\0' a"
  : >"$PREFIX.jsonl"
  trap cleanup EXIT
  echo "api_bench: $(date -u +%Y-%m-%dT%H:%M:%SZ) kernel $(uname -r), $(nproc) CPUs," \
    "$(awk '/MemTotal/ {print $2}' /proc/meminfo) KiB; phases $phases"
  record "{\"kind\":\"setup\",\"daemon\":\"$DAEMON\",\"api\":\"$API_BIN\",\"bytes\":$BYTES,\"rounds\":$ROUNDS,\"warmup\":$WARMUP,\"sessions\":$SESSIONS,\"slow_rate_mib_s\":$SLOW_RATE,\"cpu\":\"$CPU\",\"nproc\":$(nproc),\"mem_kib\":$(awk '/MemTotal/ {print $2}' /proc/meminfo)}"
  start_daemons
  local p ran=0
  for p in ${phases//,/ }; do
    # Each 1 GiB stream and the 1,000 sessions start from fresh daemons and an empty state
    # directory: the RSS figures then belong to that phase alone, and the guest's tmpfs never
    # holds two 1 GiB transcripts (it is half the guest's memory).
    if ((ran)) && [[ $p == stream || $p == stream-abba || $p == slow || $p == mass ]]; then
      echo "api_bench: restarting the daemons for phase $p"
      stop_daemons
      start_daemons
    fi
    ran=1
    case $p in
      idle) phase_idle ;;
      spawn) phase_spawn ;;
      spawn-unpinned) phase_spawn none ;;
      stream) phase_stream ;;
      stream-abba) phase_stream_abba ;;
      slow) phase_slow ;;
      mass) phase_mass ;;
      *) die "unknown phase $p" ;;
    esac
  done
  echo "== summary"
  "$PY" "$CLIENT" summary "$PREFIX"
}

if [[ ${1:-} == --in-vm ]]; then
  shift
  vm_main "$@"
else
  host_main "$@"
fi
