#!/usr/bin/env bash
# Checks the test VM harness end to end (about eight boots, one of them with systemd):
#   selftest.sh CACHE_DIR      (CACHE_DIR filled by tests/vm/fetch-kernel.sh)
# Prints PASS/FAIL per check and exits non-zero if any check failed.
set -euo pipefail

VM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
readonly VM_DIR
readonly RUN="$VM_DIR/run-in-vm.sh"
FAILURES=0
CACHE=""
WORK=""

pass() { echo "PASS: $1"; }

fail() {
  echo "FAIL: $1"
  FAILURES=$((FAILURES + 1))
}

# Shows what a failed run printed.
show() {
  local f
  for f in "$@"; do
    [[ -s $f ]] || continue
    echo "  --- $(basename "$f"):"
    sed 's/^/  | /' "$f"
  done
}

# vm NAME RUN-IN-VM-ARGS...: runs the harness with stdout in $WORK/NAME.out,
# stderr in $WORK/NAME.err; prints its exit status.
vm() {
  local name=$1 rc=0
  shift
  "$RUN" --cache "$CACHE" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" || rc=$?
  echo "$rc"
}

check_exit_status() {
  local rc
  rc=$(vm status -- sh -c 'echo hi; exit 3')
  if [[ $rc == 3 ]] && cmp -s "$WORK/status.out" <(echo hi); then
    pass "exit status 3 and output 'hi' come back unchanged"
  else
    fail "sh -c 'echo hi; exit 3': status $rc"
    show "$WORK/status.out" "$WORK/status.err"
  fi
}

check_args() {
  local rc
  # shellcheck disable=SC2016,SC1003 # literal on purpose
  local -a args=('a b' "it's" '"dq"' '' '$HOME' $'two\nlines' 'k=v' '\' '*' '--' ' ')
  rc=$(vm args -- printf '<%s>\n' "${args[@]}")
  if [[ $rc == 0 ]] && cmp -s "$WORK/args.out" <(printf '<%s>\n' "${args[@]}"); then
    pass "arguments with spaces, quotes and newlines arrive intact"
  else
    fail "arguments: status $rc"
    show "$WORK/args.out" "$WORK/args.err"
  fi
}

# One boot checks the guest's environment; results land in a --share.
check_guest() {
  local share=$WORK/share probe rc
  probe=$VM_DIR/.selftest-probe-$$
  mkdir "$share"
  # shellcheck disable=SC2016 # expanded in the guest
  local script='
    s=$1 probe=$2
    cat /sys/fs/cgroup/cgroup.subtree_control >"$s/subtree_control"
    { unshare -U -r -p -m -n --fork id; echo "status $?"; } >"$s/unshare" 2>&1
    echo "MP_TEST_VM=$MP_TEST_VM" >"$s/env"
    [ -e /run/mp-test-vm ] && echo marker >>"$s/env"
    pwd >"$s/cwd"
    echo written >"$probe" && cat "$probe" >"$s/overlay"'
  rc=$(cd "$VM_DIR" && vm guest --share "$share" -- sh -c "$script" sh "$share" "$probe")
  if [[ $rc != 0 ]]; then
    fail "guest environment script: status $rc"
    show "$WORK/guest.out" "$WORK/guest.err"
    return
  fi
  expect_file "--share writes reach the host" "$share/env" $'MP_TEST_VM=1\nmarker'
  expect_file "cgroup.subtree_control lists cpu memory pids" "$share/subtree_control" \
    "cpu memory pids"
  expect_file "unshare -U -r -p -m -n --fork id works" "$share/unshare" \
    $'uid=0(root) gid=0(root) groups=0(root)\nstatus 0'
  expect_file "the command runs in the host's working directory" "$share/cwd" "$VM_DIR"
  expect_file "the host tree is writable in the guest" "$share/overlay" "written"
  if [[ -e $probe ]]; then
    fail "a guest write reached the host's read-only root ($probe)"
    rm -f "$probe"
  else
    pass "guest writes to the host tree do not reach the host"
  fi
}

expect_file() {
  local what=$1 file=$2 want=$3
  if [[ -f $file && $(<"$file") == "$want" ]]; then
    pass "$what"
  else
    fail "$what"
    show "$file"
  fi
}

check_no_spoofing() {
  local rc
  # shellcheck disable=SC2016 # expanded in the guest
  rc=$(vm spoof -- sh -c 'echo 0; for fd in 3 4 5 6 7 8 9; do echo "x 0" >&$fd; done; exit 5')
  if [[ $rc == 5 ]]; then
    pass "a command cannot fake its exit status"
  else
    fail "spoofing command: status $rc, want 5"
    show "$WORK/spoof.out" "$WORK/spoof.err"
  fi
}

check_missing_cache() {
  local rc
  rc=$("$RUN" --cache "$WORK/no-cache" -- true 2>"$WORK/nocache.err" >/dev/null || echo $?)
  if [[ $rc == 125 ]] && grep -q 'fetch-kernel.sh' "$WORK/nocache.err"; then
    pass "a missing cache exits 125 and names fetch-kernel.sh"
  else
    fail "missing cache: status ${rc:-0}"
    show "$WORK/nocache.err"
  fi
}

check_setup_failure() {
  local rc
  # /run is the guest's own tmpfs: a host directory there does not exist in the guest.
  local invisible
  invisible=$(mktemp -d /run/mp-vm-selftest.XXXXXX)
  rc=$(cd "$invisible" && vm setup -- true)
  rmdir "$invisible"
  if [[ $rc == 125 ]] && grep -q 'working directory' "$WORK/setup.err"; then
    pass "a guest setup failure exits 125 and says why"
  else
    fail "guest setup failure: status $rc"
    show "$WORK/setup.out" "$WORK/setup.err"
  fi
}

check_timeout() {
  local rc start elapsed
  start=$SECONDS
  rc=$(vm timeout --timeout 5 -- sleep 600)
  elapsed=$((SECONDS - start))
  if [[ $rc == 125 ]] && ((elapsed < 30)) && grep -q 'timed out' "$WORK/timeout.err"; then
    pass "a timeout exits 125 (after ${elapsed}s)"
  else
    fail "timeout: status $rc after ${elapsed}s"
    show "$WORK/timeout.out" "$WORK/timeout.err"
  fi
}

# --systemd: systemd is PID 1, the command runs in its unit, and its exit status and output come
# back as in the plain boot (the host install test trusts both).
check_systemd() {
  local rc
  # shellcheck disable=SC2016 # expanded in the guest
  rc=$(vm systemd --systemd -- sh -c 'cat /proc/1/comm; sed -n "s/^0:://p" /proc/self/cgroup; exit 5')
  if [[ $rc == 5 ]] &&
     cmp -s "$WORK/systemd.out" <(printf 'systemd\n/system.slice/mp-vm-command.service\n'); then
    pass "--systemd: PID 1 is systemd, the command runs in its unit, status 5 comes back"
  else
    fail "--systemd: status $rc"
    show "$WORK/systemd.out" "$WORK/systemd.err"
  fi
}

main() {
  (($# == 1)) || { echo "usage: $0 CACHE_DIR" >&2; exit 2; }
  # Absolute: some checks run the harness from another directory.
  CACHE=$(realpath -m "$1")
  WORK=$(mktemp -d /tmp/mp-vm-selftest.XXXXXX)
  trap 'rm -rf "$WORK"' EXIT

  check_missing_cache
  check_exit_status
  check_args
  check_guest
  check_no_spoofing
  check_setup_failure
  check_timeout
  check_systemd

  if ((FAILURES)); then
    echo "$FAILURES check(s) failed"
    return 1
  fi
  echo "all checks passed"
}

main "$@"
