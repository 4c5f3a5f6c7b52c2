#!/usr/bin/env bash
# shellcheck disable=SC2317 # cleanup runs from a trap
# The egress path's cost (issue 14, "Benchmark"; bench/README.md, "egress_bench"), in ONE boot
# of the test VM: an N-byte HTTPS download and the connection setup of a small one, from
#   direct   a "host" network session: curl https://NAME/file straight to the upstream
#   proxy    an "allowlist" session: the same curl, through the HTTPS_PROXY the session gets
#            (CONNECT to monkeyproof-egress, TLS end to end with the upstream)
#   gateway  an "allowlist" session: curl $BENCH_BASE_URL/file, plain HTTP to the credential
#            gateway's endpoint, which adds the key and forwards over its own TLS connection
# with monkeyproofd (root) and monkeyproof-egress (an unprivileged uid) as in production and an
# HTTPS upstream (python3's http.server with TLS) on an address the script adds to the VM
# (10.77.9.1, not 127.0.0.0/8). Legs in A-B-C-C-B-A order (direct, proxy, gateway, gateway,
# proxy, direct), one session per leg; a cell is the median over both legs of a variant.
#
# On the host: builds monkeyproofd and monkeyproof-egress for PRESET (default: default), boots
# the VM and runs itself there as root (`--in-vm`). Results in bench/out/:
#   <stamp>-egress.txt    everything printed, the table at the end
#   <stamp>-egress.jsonl  one JSON object per measurement (`egress_bench.py table` reads it)
#   <stamp>-egress.env    host, qemu, VM and build facts
# A full-size run then writes the table into bench/README.md (section "egress_bench").
# Usage: bench/egress_bench.sh [PRESET] [--small] [--bytes N] [--rounds N] [--setups N]
#                              [--no-readme]
#   Full size: 100 MB (100000000 bytes), 3 downloads and 50 setups per leg.
#   --small: 1 MiB, 1 download and 3 setups per leg (the CI smoke's size; never written to
#            README.md)
# Environment: MP_BENCH_SMP (2), MP_BENCH_MEM (3072 MB), MP_BENCH_TIMEOUT (3600 s).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd "$BENCH_DIR/.." && pwd -P)
readonly BENCH_DIR REPO_ROOT
PY=/usr/bin/python3
HELPER=$BENCH_DIR/egress_bench.py

die() {
  echo "egress_bench: $*" >&2
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
  local smp=${MP_BENCH_SMP:-2} mem=${MP_BENCH_MEM:-3072}
  # shellcheck source=bench/host_facts.sh
  source "$BENCH_DIR/host_facts.sh"

  cd "$REPO_ROOT"
  if [[ ! -f $build/build.ninja && ! -f $build/Makefile ]]; then
    cmake --preset "$preset"
  fi
  cmake --build "$build" --target monkeyproofd monkeyproof-egress

  mkdir -p "$out"
  local stamp
  stamp=$(date -u +%Y%m%dT%H%M%SZ)-egress
  {
    host_facts "$preset" "$vm_cache" "$smp" "$mem"
    echo "args=$*"
    echo "host_loadavg_before=$(cut -d' ' -f1-3 /proc/loadavg)"
    echo "host_other_qemu_before=$(pgrep -c qemu-system || true)"
  } >"$out/$stamp.env"

  echo "egress_bench: running in the VM (TCG, $smp vCPUs, ${mem} MB); results in bench/out/$stamp.*" >&2
  set +e
  "$REPO_ROOT/tests/vm/run-in-vm.sh" --cache "$vm_cache" --smp "$smp" --mem "$mem" \
    --timeout "${MP_BENCH_TIMEOUT:-3600}" --share "$out" -- \
    "$BENCH_DIR/egress_bench.sh" --in-vm "$build" "$out/$stamp" "$@" | tee "$out/$stamp.txt"
  local rc=${PIPESTATUS[0]}
  set -e
  echo "host_loadavg_after=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/$stamp.env"
  ((rc == 0)) || exit "$rc"
  if ((readme && !small)); then
    local env=$out/$stamp.env facts=$out/$stamp.facts
    {
      echo "Run $(sed -n 's/^date=//p' "$env"), git $(sed -n 's/^git=//p' "$env"), preset $preset," \
        "\`bench/egress_bench.sh${*:+ $*}\`."
      echo "Host: $(sed -n 's/^host_cpu=//p' "$env"), $(sed -n 's/^host_cpus=//p' "$env") CPUs," \
        "Linux $(sed -n 's/^host_kernel=//p' "$env"), load average" \
        "$(sed -n 's/^host_loadavg_before=//p' "$env") before, $(sed -n 's/^host_loadavg_after=//p' "$env") after;" \
        "$(sed -n 's/^qemu=//p' "$env")."
      echo "Guest: $(sed -n 's/^vm=//p' "$env")."
      grep -m 1 '^egress_bench: sizes' "$out/$stamp.txt" | sed 's/^egress_bench: sizes/Sizes/' || true
      echo "Each cell: the median over the variant's two legs (each leg's median in brackets, in run order)."
    } >"$facts"
    "$PY" "$HELPER" table "$out/$stamp" --readme "$BENCH_DIR/README.md" --facts "$facts"
  fi
}

# -------------------------------------------------------------------------------------- VM

BASE=/var/tmp/mp-egress-bench
CGROUP=/sys/fs/cgroup/mp-egress-bench
UPSTREAM=10.77.9.1
NAME=bench.mp-test
PORT=443
EGRESS_UID=65532 # no passwd entry needed; not nobody (the sessions' uid)
DPID=""
EPID=""
UPID=""
ADDED_ADDR=0

cleanup() {
  local pid
  for pid in "$DPID" "$EPID" "$UPID"; do
    [[ -n $pid ]] || continue
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  ((ADDED_ADDR)) && ip addr del "$UPSTREAM/32" dev lo 2>/dev/null
  [[ -f $BASE/hosts.saved ]] && cp "$BASE/hosts.saved" /etc/hosts
  return 0
}

cpu_ticks() { # PID: utime+stime of the process, clock ticks
  awk '{print $14 + $15}' "/proc/$1/stat"
}

policy() { # NAME NETWORK
  cat >"$BASE/policies/$1.json" <<EOF
{"description": "egress_bench: $1", "type": "exec", "command": [],
 "run_as": {"user": "nobody"},
 "workspace_roots": ["$BASE/ws"], "default_workspace": "$BASE/ws/w",
 "network": $2,
 "deadlines": {"wall_seconds": 0, "idle_seconds": 0},
 "env": {"set": {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}}}
EOF
}

# The upstream: HTTPS (TLS 1.3 with the system's OpenSSL), HTTP/1.1 with Content-Length, the
# files of $BASE/www; one thread per connection.
UPSTREAM_PY='import functools, http.server, ssl, sys
addr, port, cert, key, root = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer((addr, port), functools.partial(Handler, directory=root))
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()'

setup() {
  rm -rf "$BASE"
  mkdir -p "$BASE/policies" "$BASE/ws/w" "$BASE/www" "$BASE/egress"
  chmod 0755 "$BASE" "$BASE/www"
  chown nobody "$BASE/ws/w"
  chown "$EGRESS_UID" "$BASE/egress"
  chmod 0700 "$BASE/egress"
  ip addr add "$UPSTREAM/32" dev lo
  ADDED_ADDR=1
  cp /etc/hosts "$BASE/hosts.saved"
  echo "$UPSTREAM $NAME" >>/etc/hosts
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj "/CN=$NAME" -addext "subjectAltName=DNS:$NAME" -keyout "$BASE/key.pem" \
    -out "$BASE/cert.pem" 2>/dev/null
  # The sessions' CA file: in the workspace (their /tmp and /var/tmp are their own).
  install -m 0644 "$BASE/cert.pem" "$BASE/ws/w/ca.pem"
  # Random bytes, so that a byte-exact check means something.
  head -c "$BYTES" /dev/urandom >"$BASE/www/file"
  printf 'small\n' >"$BASE/www/small"
  chmod 0644 "$BASE/www/file" "$BASE/www/small"
  FILE_SHA=$(sha256sum "$BASE/www/file" | cut -d' ' -f1)
  "$PY" -c "$UPSTREAM_PY" "$UPSTREAM" "$PORT" "$BASE/cert.pem" "$BASE/key.pem" "$BASE/www" \
    >"$BASE/upstream.log" 2>&1 &
  UPID=$!

  policy exec '"host"' # the direct leg's (a directory needs exec.json)
  policy proxy "{\"mode\": \"allowlist\", \"allow\": [\"$NAME:$PORT\"]}"
  policy gateway "{\"mode\": \"allowlist\", \"allow\": [], \"gateway\": [
    {\"base_url_env\": \"BENCH_BASE_URL\", \"key_env\": \"BENCH_API_KEY\",
     \"upstream\": \"https://$NAME:$PORT\",
     \"auth\": {\"header\": \"x-api-key\", \"secret\": \"bench-key\"}}]}"
  mkdir -m 0700 "$BASE/creds"
  echo "mp-bench-key-0f3a" >"$BASE/creds/bench-key"
  chmod 0600 "$BASE/creds/bench-key"
  echo "socket = $BASE/egress/handover.sock" >"$BASE/egress.conf"
  # The upstream is an address of the VM itself, which the loopback guard closes to host-network
  # sessions: open here, so that the direct leg reaches the same server.
  cat >"$BASE/monkeyproof.conf" <<EOF
api_user = root
session_host_loopback = allow
egress_socket = $BASE/egress/handover.sock
credentials_dir = $BASE/creds
EOF
  "$DAEMON" check-policy "$BASE/policies" >/dev/null
  setpriv --reuid="$EGRESS_UID" --regid="$EGRESS_UID" --clear-groups -- "$EGRESS" \
    --config "$BASE/egress.conf" --unsafe-test-private-upstream "$UPSTREAM:$PORT" \
    --upstream-ca "$BASE/cert.pem" >"$BASE/egress.log" 2>&1 &
  EPID=$!
  "$DAEMON" --config "$BASE/monkeyproof.conf" --state-dir "$BASE/state" \
    --socket "$BASE/run/control.sock" --cgroup-root "$CGROUP" --policies "$BASE/policies" \
    --audit-log "$BASE/audit.log" >"$BASE/daemon.log" 2>&1 &
  DPID=$!
  local _
  for _ in $(seq 1 300); do
    [[ -S $BASE/run/control.sock ]] && grep -q 'event=listening' "$BASE/egress.log" &&
      curl -sf -o /dev/null --cacert "$BASE/cert.pem" "https://$NAME:$PORT/small" && return 0
    kill -0 "$DPID" 2>/dev/null || { cat "$BASE/daemon.log" >&2; die "monkeyproofd exited"; }
    kill -0 "$EPID" 2>/dev/null || { cat "$BASE/egress.log" >&2; die "monkeyproof-egress exited"; }
    kill -0 "$UPID" 2>/dev/null || { cat "$BASE/upstream.log" >&2; die "the upstream exited"; }
    sleep 0.2
  done
  tail -n 20 "$BASE"/*.log >&2
  die "the daemons or the upstream were not ready within 60 s"
}

# The session's script for one leg: ROUNDS downloads of the file into the workspace (curl's
# timings and byte count), each checked with sha256sum after its timing and removed, then
# SETUPS fetches of the small file, each a new curl process and connection. Lines go to OUT.
leg_task() { # VARIANT OUT
  local variant=$1 out=$2 url small curl="curl -sS --max-time 1200"
  if [[ $variant == gateway ]]; then
    # shellcheck disable=SC2016 # expanded by the session's shell
    url='"$BENCH_BASE_URL/file"'
    # shellcheck disable=SC2016 # expanded by the session's shell
    small='"$BENCH_BASE_URL/small"'
  else
    url="https://$NAME:$PORT/file"
    small="https://$NAME:$PORT/small"
    curl+=" --cacert $BASE/ws/w/ca.pem"
  fi
  local wt='{"time_total":%{time_total},"time_starttransfer":%{time_starttransfer},"size":%{size_download},"code":%{http_code}}'
  local ws='{"time_connect":%{time_connect},"time_appconnect":%{time_appconnect},"time_starttransfer":%{time_starttransfer},"time_total":%{time_total},"code":%{http_code}}\n'
  cat <<EOF
exec > $out.tmp 2>&1
echo "env proxy=\${HTTPS_PROXY:-none} base=\${BENCH_BASE_URL:-none}"
for r in \$(seq 1 $ROUNDS); do
  t=\$($curl -o $out.file -w '$wt' $url)
  echo "T \$t \$(sha256sum < $out.file | cut -d' ' -f1)"
  rm -f $out.file
done
for r in \$(seq 1 $SETUPS); do
  echo "S \$($curl -o /dev/null -w '$ws' $small)"
done
mv $out.tmp $out
EOF
}

leg() { # N VARIANT
  local n=$1 variant=$2 preset out task id
  preset=$variant
  [[ $variant == direct ]] && preset="exec"
  out=$BASE/ws/w/leg-$n
  task=$(leg_task "$variant" "$out")
  echo "== leg $n: $variant, ${SECONDS} s into the run"
  local u0 e0 t0 t1
  u0=$(cpu_ticks "$UPID")
  e0=$(cpu_ticks "$EPID")
  t0=$(date +%s%N)
  id=$("$PY" "$HELPER" spawn "$BASE/run/control.sock" "$preset" "$task") || die "spawn of leg $n failed"
  local limit=$((SECONDS + 3000))
  while [[ ! -e $out ]]; do
    ((SECONDS < limit)) || die "leg $n ($id) did not finish"
    sleep 0.2
  done
  t1=$(date +%s%N)
  local u1 e1 hz
  u1=$(cpu_ticks "$UPID")
  e1=$(cpu_ticks "$EPID")
  hz=$(getconf CLK_TCK)
  echo "   session $id: $(head -n 1 "$out")"
  # The leg's CPU of the upstream and of monkeyproof-egress, shared out over its downloads by
  # their time (the setups are small beside them).
  "$PY" - "$out" "$n" "$variant" "$BYTES" "$FILE_SHA" "$((u1 - u0))" "$((e1 - e0))" "$hz" \
    "$(((t1 - t0) / 1000))" >>"$PREFIX.jsonl" <<'PY'
import json, re, sys
out, leg, variant, nbytes, sha, uticks, eticks, hz, leg_us = sys.argv[1:]
leg, nbytes, uticks, eticks, hz = int(leg), int(nbytes), int(uticks), int(eticks), int(hz)
transfers, setups = [], []
for line in open(out):
    if line.startswith("T "):
        js, got = line[2:].rstrip("\n").rsplit(" ", 1)
        t = json.loads(re.sub(r":0+(\d)", r":\1", js))  # curl's "000" code
        t["sha_matches"] = got == sha
        transfers.append(t)
    elif line.startswith("S "):
        setups.append(json.loads(re.sub(r":0+(\d)", r":\1", line[2:])))
    elif line.strip() and not line.startswith("env "):
        print(json.dumps({"kind": "note", "leg": leg, "variant": variant, "text": line.strip()}))
print(json.dumps({"kind": "leg", "leg": leg, "variant": variant,
                  "upstream_cpu_s": uticks / hz, "egress_cpu_s": eticks / hz,
                  "leg_s": int(leg_us) / 1e6}))
busy = sum(t["time_total"] for t in transfers) or 1
for t in transfers:
    ok = t["size"] == nbytes and t["code"] == 200 and t["sha_matches"]
    share = t["time_total"] / busy
    print(json.dumps({"kind": "transfer", "leg": leg, "variant": variant, "bytes": nbytes,
                      "time_total": t["time_total"], "ttfb": t["time_starttransfer"],
                      "size": t["size"], "code": t["code"], "ok": ok,
                      "mib_s": t["size"] / (1 << 20) / t["time_total"] if t["time_total"] else None,
                      "upstream_cpu_fraction": uticks / hz * share / t["time_total"],
                      "egress_cpu_s_per_gib": eticks / hz * share / (nbytes / (1 << 30))}))
for s in setups:
    if s["code"] != 200:
        print(json.dumps({"kind": "note", "leg": leg, "variant": variant,
                          "text": "setup answered %s" % s["code"]}))
        continue
    s.update({"kind": "setup", "leg": leg, "variant": variant})
    # No TLS on the gateway's client side: curl reports 0 for time_appconnect there.
    if variant == "gateway":
        s["time_appconnect"] = None
    print(json.dumps(s))
PY
  grep "\"leg\": $n," "$PREFIX.jsonl" | grep -v '"kind": "setup"' | sed 's/^/   /'
  rm -f "$out"
}

vm_main() {
  [[ ${MP_TEST_VM:-} == 1 ]] || die "--in-vm: refusing to run outside the test VM (root daemons, /etc/hosts)"
  [[ $(id -u) == 0 ]] || die "--in-vm needs root"
  local build
  build=$(cd "$1" && pwd -P) || die "no build directory $1"
  PREFIX=$2
  shift 2
  BYTES=100000000
  ROUNDS=3
  SETUPS=50
  while (($#)); do
    case $1 in
      --small) BYTES=$((1 << 20)); ROUNDS=1; SETUPS=3; shift ;;
      --bytes) BYTES=$2; shift 2 ;;
      --rounds) ROUNDS=$2; shift 2 ;;
      --setups) SETUPS=$2; shift 2 ;;
      --no-readme) shift ;;
      *) die "unknown option $1" ;;
    esac
  done
  DAEMON=$build/src/supervisor/monkeyproofd
  EGRESS=$build/src/egress/monkeyproof-egress
  local f
  for f in "$DAEMON" "$EGRESS"; do
    [[ -x $f ]] || die "$f is missing: build it on the host first"
  done
  : >"$PREFIX.jsonl"
  trap cleanup EXIT
  trap 'exit 143' TERM INT # the EXIT trap then restores /etc/hosts and the address
  echo "egress_bench: $(date -u +%Y-%m-%dT%H:%M:%SZ) kernel $(uname -r), $(nproc) CPUs," \
    "$(awk '/MemTotal/ {print $2}' /proc/meminfo) KiB, curl $(curl --version | head -n 1 | cut -d' ' -f2)," \
    "$($PY --version), $(openssl version | cut -d' ' -f1-2)"
  echo "egress_bench: sizes: $BYTES bytes downloaded $ROUNDS times per leg (each checked with" \
    "sha256sum after its timing), $SETUPS setups (a new curl and connection for a 6-byte file) per leg;" \
    "legs direct, proxy, gateway, gateway, proxy, direct."
  setup
  leg 1 direct
  leg 2 proxy
  leg 3 gateway
  leg 4 gateway
  leg 5 proxy
  leg 6 direct
  echo "== table (${SECONDS} s into the run)"
  "$PY" "$HELPER" table "$PREFIX"
}

if [[ ${1:-} == --in-vm ]]; then
  shift
  vm_main "$@"
else
  host_main "$@"
fi
