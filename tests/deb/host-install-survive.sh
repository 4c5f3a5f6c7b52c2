# shellcheck shell=bash disable=SC2154  # the variables are host-install-guest.sh's
# The host install test's survival scenario (issue 16), sourced by host-install-guest.sh, whose
# helpers (api, field, check, wait_for, token, $ws, $tmp, $leaves_cg, $deb) it uses.
#
#   survive           five sessions: two print a known sequence continuously ("p1 1".."p1 N",
#                     then "p1 end N"), one interactive on a terminal, one waiting on stdin,
#                     one that exits 42 while no supervisor runs. Events, each followed by the
#                     checks below: `systemctl restart monkeyproofd`; `systemctl
#                     daemon-reexec`; `kill -9` of the supervisor (systemd restarts it after
#                     RestartSec=2s; the fifth session exits meanwhile); `daemon-reexec`
#                     again; `dpkg -i` of a newer build of the package. After each: every
#                     session running (or ended with its real exit code), supervisorRestarts
#                     counted up, stdin and resize answered, one supervisor, the same processes
#                     in each leaf, every session process in a leaf, /metrics' re-adoptions.
#                     At the end: each printer's whole output equals its sequence (sha256),
#                     the reader's exit code, no process or leaf left.
#   survive-control   the same sessions with fd_store = off and one `systemctl restart`: the
#                     checks must fail (sessions end as supervisor_restart, the printers'
#                     output is not their sequence), or the test could not see a loss.
#
# The newer package is this one repacked with a bumped version (dpkg-deb -R, Version edited in
# DEBIAN/control, dpkg-deb -b): the same binaries, but dpkg runs the upgrade's maintainer
# scripts as for any newer build, which is what decides whether sessions survive an upgrade.

survive_ids=()     # p1 p2 term reader exiter
survive_leaf=()    # "id=count" of each leaf's processes other than sleep, at the start
survive_event=0    # events so far: the input and the terminal size after each differ

not() { ! "$@"; }

# The printers: bursts of 20 lines with a pause of 0.1 s between them (at most 200 lines a second,
# some 100 kB a minute), until the file stop-TAG appears in the workspace. One bash process each,
# which forks nothing while it prints: `read -t` on a pipe that nobody writes is its pause (a
# forked sleep every 20 lines of two printers printing as fast as they could kept the emulated
# VM's two CPUs busy).
survive_printer() {
  # shellcheck disable=SC2016  # the script is the session's, not this shell's
  printf 'exec 3<> <(:); i=0; until [ -e stop-%s ]; do i=$((i+1)); echo "%s $i"; ((i %% 20)) || read -t 0.1 -u 3; done; echo "%s end $i"' "$1" "$1" "$1"
}

survive_spawn() {
  local code json
  survive_ids=()
  rm -f "$ws"/stop-p1 "$ws"/stop-p2 "$ws"/go-x
  for tag in p1 p2; do
    json=$(python3 -c 'import json,sys; print(json.dumps({"command": "/bin/bash", "args": ["-c"], "task": sys.argv[1], "cwd": sys.argv[2]}))' "$(survive_printer $tag)" "$ws")
    code=$(api POST /sessions "$json")
    [[ $code == 201 ]] || { log "  | spawn $tag: $code $(body)"; return 1; }
    survive_ids+=("$(field id)")
  done
  code=$(api POST /sessions "{\"type\":\"interactive\",\"command\":\"/bin/sh\",\"args\":[\"-c\"],\"task\":\"while read l; do echo \\\"in:\$l \$(stty size)\\\"; done\",\"cwd\":\"$ws\",\"pty\":{\"rows\":20,\"cols\":70}}")
  [[ $code == 201 ]] || { log "  | spawn term: $code $(body)"; return 1; }
  survive_ids+=("$(field id)")
  code=$(api POST /sessions "{\"task\":\"while read l; do echo got:\$l; done; echo eof; exit 5\",\"cwd\":\"$ws\"}")
  [[ $code == 201 ]] || return 1
  survive_ids+=("$(field id)")
  code=$(api POST /sessions "{\"command\":\"/bin/bash\",\"args\":[\"-c\"],\"task\":\"exec 3<> <(:); until [ -e go-x ]; do read -t 0.1 -u 3; done; echo bye; exit 42\",\"cwd\":\"$ws\"}")
  [[ $code == 201 ]] || return 1
  survive_ids+=("$(field id)")
  local id
  for id in "${survive_ids[@]}"; do wait_for 60 state_is "$id" running || return 1; done
  sleep 1  # every session's shell has started its loop
  survive_leaf=()
  for id in "${survive_ids[@]}"; do survive_leaf+=("$id=$(survive_procs "$id")"); done
}

# The processes of a session's leaf, sleep (the printers' pauses come and go) left out.
survive_procs() {
  local pid n=0
  for pid in $(cat "$leaves_cg/$1/cgroup.procs" 2>/dev/null); do
    local comm=""
    read -r comm <"/proc/$pid/comm" 2>/dev/null
    [[ $comm == sleep ]] || n=$((n + 1))
  done
  echo "$n"
}

# survive_output ID: the session's whole raw output (GET /output from 0 to the end, 1 MiB a
# request) on stdout; fails on a gap or a failed request.
survive_output() {
  python3 - "$url" "$(token)" "$1" <<'EOF'
import sys, urllib.request
url, token, sid = sys.argv[1:4]
out, since = b"", 0
while True:
    req = urllib.request.Request(f"{url}/sessions/{sid}/output?since={since}",
                                 headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(req, timeout=60) as r:
        if r.headers.get("x-output-gaps"):
            sys.exit(f"gaps in the output: {r.headers['x-output-gaps']}")
        data, nxt = r.read(), int(r.headers["x-output-next-offset"])
    out += data
    if nxt == since or not data:
        break
    since = nxt
sys.stdout.buffer.write(out)
EOF
}

# survive_sequence_ok ID TAG: the printer's whole output is its sequence up to its end line,
# compared by sha256; prints both sums and the last line when not.
survive_sequence_ok() {
  survive_output "$1" >"$tmp/out-$2" || return 1
  local n want got
  n=$(tail -n 1 "$tmp/out-$2" | sed -n "s/^$2 end \([0-9]*\)\$/\1/p")
  got=$(sha256sum <"$tmp/out-$2" | cut -d' ' -f1)
  want=$({ seq 1 "${n:-0}" | sed "s/^/$2 /"; echo "$2 end ${n:-0}"; } | sha256sum | cut -d' ' -f1)
  log "  | $2: $(wc -c <"$tmp/out-$2") bytes, ${n:-no} lines, sha256 $got (sequence: $want)"
  [[ -n $n && $got == "$want" ]] || { log "  | $2 ends with: $(tail -c 60 "$tmp/out-$2" | tr '\n' '|')"; return 1; }
}

# The output of the session holds a line LINE (carriage returns dropped). One curl: only the
# reader's and the terminal's outputs, a few lines each, are looked at so.
output_has() {
  local out
  out=$(curl -sS --max-time 60 -H "Authorization: Bearer $(token)" "$url/sessions/$1/output") || return 1
  grep -qxF "$2" <<<"${out//$'\r'/}"
}

# survive_alive N: the four long sessions run, each has lived through N restarts. One python3
# for the four (a curl and two python3 a session made this the costliest poll under emulation);
# it prints the state of the first session that is not so, in one line.
survive_alive() {
  python3 - "$url" "$(token)" "$1" "${survive_ids[@]:0:4}" <<'EOF'
import json, sys, urllib.request
url, token, restarts = sys.argv[1:4]
for sid in sys.argv[4:]:
    req = urllib.request.Request(f"{url}/sessions/{sid}", headers={"Authorization": "Bearer " + token})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            b = json.load(r)
    except Exception as e:
        sys.exit(print(f"host-install:   | {sid}: {e}") or 1)
    if b.get("state") != "running":
        brief = " ".join(f"{k}={b.get(k)}" for k in ("state", "endReason", "exitCode", "signal", "supervisorRestarts", "outputBytes"))
        sys.exit(print(f"host-install:   | {sid}: {brief}") or 1)
    if str(b.get("supervisorRestarts")) != restarts:
        sys.exit(print(f"host-install:   | {sid}: supervisorRestarts {b.get('supervisorRestarts')}, not {restarts}") or 1)
EOF
}

# survive_interact E: stdin reaches the reader; the terminal takes a resize, then a line.
survive_interact() {
  local reader=${survive_ids[3]} term=${survive_ids[2]} rows=$((20 + $1)) cols=$((70 + $1))
  [[ $(api POST "/sessions/$reader/input" "{\"input\":\"ev$1\\n\"}") == 200 ]] || return 1
  wait_for 30 output_has "$reader" "got:ev$1" || { log "  | reader: no got:ev$1"; return 1; }
  [[ $(api POST "/sessions/$term/resize" "{\"rows\":$rows,\"cols\":$cols}") == 200 ]] || { log "  | resize: $(body)"; return 1; }
  [[ $(api POST "/sessions/$term/input" "{\"input\":\"ev$1\\n\"}") == 200 ]] || return 1
  wait_for 30 output_has "$term" "in:ev$1 $rows $cols" || { log "  | terminal: no 'in:ev$1 $rows $cols'"; return 1; }
}

# No process more or less: one process in the supervisor's unit, each leaf as at the start,
# every process of nobody (the sessions' user) in a session leaf.
survive_no_extra() {
  local entry pid n
  # (each session's init is a clone of monkeyproofd, with its name: count the unit's cgroup)
  local procs=/sys/fs/cgroup/system.slice/monkeyproofd.service/cgroup.procs
  [[ $(wc -l <"$procs") == 1 ]] || { log "  | $(wc -l <"$procs") processes in monkeyproofd.service"; return 1; }
  for entry in "${survive_leaf[@]}"; do
    [[ -d $leaves_cg/${entry%%=*} ]] || continue  # ended
    n=$(survive_procs "${entry%%=*}")
    [[ $n == "${entry#*=}" ]] || { log "  | leaf ${entry%%=*}: $n processes, not ${entry#*=}"; return 1; }
  done
  for pid in $(pgrep -u nobody); do
    grep -q "^0::/system.slice/monkeyproof-sessions.service/sessions/s-" "/proc/$pid/cgroup" 2>/dev/null ||
      { [[ -d /proc/$pid ]] && { log "  | process $pid ($(cat "/proc/$pid/comm")) outside the leaves"; return 1; }; }
  done
  return 0
}

# grep reads the whole body (no -q): quitting at the match would cut curl off mid-write (exit
# 23), which pipefail turns into a failure once /metrics is longer than one write.
metrics_readopted() {
  curl -sS --max-time 60 -H "Authorization: Bearer $(token)" "$url/metrics" |
    grep -x "monkeyproof_sessions_readopted $1" >/dev/null
}

# survive_checks WHAT N LIVE: after an event: N restarts lived through, LIVE sessions adopted.
survive_checks() {
  survive_event=$((survive_event + 1))
  check "survive $1: the API answers again" wait_for 60 api_answers
  check "survive $1: every session running, supervisorRestarts $2" wait_for 30 survive_alive "$2"
  check "survive $1: stdin and resize" survive_interact "$survive_event"
  # (retried: a shell between fork and exec of its sleep counts once, briefly)
  check "survive $1: no extra process" wait_for 10 survive_no_extra
  [[ -z ${3:-} ]] || check "survive $1: /metrics monkeyproof_sessions_readopted $3" metrics_readopted "$3"
}

# The supervisor's start, in ms since the epoch.
supervisor_started_ms() {
  echo $(($(date -d "$(systemctl show -P ExecMainStartTimestamp monkeyproofd)" +%s%N) / 1000000))
}

test_survive() {
  local anchor pid t0 x version
  if ! survive_spawn; then bad "survive: sessions started"; return; fi
  ok "survive: sessions started"
  anchor=$(systemctl show -P InvocationID monkeyproof-sessions)
  x=${survive_ids[4]}

  log "survive: systemctl restart monkeyproofd"
  pid=$(systemctl show -P MainPID monkeyproofd)
  systemctl restart monkeyproofd
  check "survive restart: a new supervisor" test "$(systemctl show -P MainPID monkeyproofd)" != "$pid"
  survive_checks restart 1 5

  log "survive: systemctl daemon-reexec"
  pid=$(systemctl show -P MainPID monkeyproofd)
  systemctl daemon-reexec
  check "survive daemon-reexec: the same supervisor" wait_for 30 sh -c "[ \"\$(systemctl show -P MainPID monkeyproofd)\" = $pid ]"
  survive_checks daemon-reexec 1

  # The fifth session exits while no supervisor runs (systemd waits RestartSec=2s).
  log "survive: kill -9 of the supervisor"
  kill -9 "$pid"
  touch "$ws/go-x"
  check "survive kill -9: restarted by systemd" wait_for 60 sh -c "p=\$(systemctl show -P MainPID monkeyproofd); [ \"\$p\" != $pid ] && [ \"\$p\" != 0 ] && systemctl -q is-active monkeyproofd"
  survive_checks "kill -9" 2 5
  check "survive kill -9: the command that ended meanwhile: exited" wait_for 30 state_is "$x" exited
  check "survive kill -9: its exit code 42" test "$(field exitCode)" = 42
  check "survive kill -9: it ended before the supervisor started" python3 -c '
import datetime, json, sys
ended = datetime.datetime.fromisoformat(json.load(open(sys.argv[1]))["endedAt"].replace("Z", "+00:00"))
sys.exit(not ended.timestamp() * 1000 < int(sys.argv[2]))' "$tmp/body" "$(supervisor_started_ms)"
  check "survive kill -9: its output" sh -c "[ \"\$(curl -sS --max-time 60 -H 'Authorization: Bearer $(token)' $url/sessions/$x/output)\" = bye ]"
  check "survive kill -9: its leaf gone" wait_for 30 test ! -e "$leaves_cg/$x"

  log "survive: systemctl daemon-reexec"
  systemctl daemon-reexec
  survive_checks daemon-reexec 2

  # A newer build: this package repacked with a bumped version.
  version=$(dpkg-deb -f "$deb" Version)
  rm -rf "$tmp/newer"
  dpkg-deb -R "$deb" "$tmp/newer"
  sed -i "s/^Version: .*/Version: $version+survive1/" "$tmp/newer/DEBIAN/control"
  dpkg-deb -Znone -b "$tmp/newer" "$tmp/newer.deb" >/dev/null  # (uncompressed: no xz under emulation)
  log "survive: dpkg -i $(dpkg-deb -f "$tmp/newer.deb" Package)_$version+survive1 over $version"
  pid=$(systemctl show -P MainPID monkeyproofd)
  t0=$(date '+%Y-%m-%d %H:%M:%S')
  dpkg -i "$tmp/newer.deb" >"$tmp/dpkg-newer.log" 2>&1
  check "survive upgrade: dpkg -i the newer build" test "$(dpkg-query -W -f='${Version}' monkeyproof)" = "$version+survive1"
  check "survive upgrade: one restart of the supervisor" sh -c "[ \"\$(systemctl show -P MainPID monkeyproofd)\" != $pid ] && [ \$(journalctl --no-pager -u monkeyproofd --since '$t0' | grep -c 're-adopted 4 running sessions, 0 could not be') = 1 ]"
  check "survive upgrade: the sessions unit not restarted" test "$(systemctl show -P InvocationID monkeyproof-sessions)" = "$anchor"
  survive_checks upgrade 3 4

  # The end: the printers stop, the reader reads end of file, the terminal is killed.
  touch "$ws/stop-p1" "$ws/stop-p2"
  api POST "/sessions/${survive_ids[3]}/close-stdin" >/dev/null
  api DELETE "/sessions/${survive_ids[2]}" >/dev/null
  check "survive end: p1 exited" wait_for 60 state_is "${survive_ids[0]}" exited
  check "survive end: p1's output is its sequence, whole and in order" survive_sequence_ok "${survive_ids[0]}" p1
  check "survive end: p2 exited" wait_for 60 state_is "${survive_ids[1]}" exited
  check "survive end: p2's output is its sequence, whole and in order" survive_sequence_ok "${survive_ids[1]}" p2
  check "survive end: the reader exited" wait_for 30 state_is "${survive_ids[3]}" exited
  check "survive end: the reader's exit code 5" test "$(field exitCode)" = 5
  check "survive end: the reader's output" test "$(survive_output "${survive_ids[3]}" | paste -sd,)" = \
    "got:ev1,got:ev2,got:ev3,got:ev4,got:ev5,eof"
  check "survive end: the terminal killed" wait_for 30 state_is "${survive_ids[2]}" killed
  check "survive end: no leaf left" wait_for 30 sh -c "[ \$(find $leaves_cg -mindepth 1 -maxdepth 1 -type d | wc -l) = 0 ]"
  check "survive end: no session process left" wait_for 30 sh -c "! pgrep -u nobody >/dev/null"
  # Every session's output went through its stage (and the terminal's through its queue) under
  # the shipped unit: the supervisor never fell back to a plain read.
  check "survive end: output staged throughout (no 'no output staging' or 'staging stopped')" \
    sh -c "! journalctl --no-pager -u monkeyproofd | grep -qE 'no output staging|output staging stopped'"
  ((failed == 0)) || journalctl --no-pager -n 40 -u monkeyproofd | sed 's/^/  | /'
}

ended_by_restart() { [[ $(api GET "/sessions/$1") == 200 && $(field endReason) == supervisor_restart ]]; }

# The control: the same sessions with fd_store = off, one restart. Each check of the survival
# scenario must now fail.
test_survive_control() {
  local conf=/etc/monkeyproof/monkeyproof.conf id
  cp -p "$conf" "$tmp/monkeyproof.conf.saved"
  echo "fd_store = off" >>"$conf"
  systemctl restart monkeyproofd
  if survive_spawn; then ok "control: sessions started (fd_store = off)"; else
    bad "control: sessions started (fd_store = off)"
    cp -p "$tmp/monkeyproof.conf.saved" "$conf"
    systemctl restart monkeyproofd
    return
  fi
  log "control: systemctl restart monkeyproofd"
  systemctl restart monkeyproofd
  check "control: the API answers again" wait_for 60 api_answers
  touch "$ws/stop-p1" "$ws/stop-p2" "$ws/go-x"
  check "control: the survival check fails: the sessions did not survive" not survive_alive 1
  for id in "${survive_ids[@]}"; do
    check "control: $id ended as supervisor_restart" ended_by_restart "$id"
  done
  check "control: the checksum check fails: p1's output is not its sequence" \
    not survive_sequence_ok "${survive_ids[0]}" p1
  check "control: no leaf left" wait_for 30 sh -c "[ \$(find $leaves_cg -mindepth 1 -maxdepth 1 -type d | wc -l) = 0 ]"
  check "control: no session process left" wait_for 30 sh -c "! pgrep -u nobody >/dev/null"
  cp -p "$tmp/monkeyproof.conf.saved" "$conf"
  systemctl restart monkeyproofd
  check "control: fd_store back to auto, active" wait_for 60 systemctl -q is-active monkeyproofd
}
