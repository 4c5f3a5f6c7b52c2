#!/usr/bin/env bash
# shellcheck disable=SC2317 # cleanup and on_signal run from traps
# Boots the test VM (Debian's kernel under qemu, the host's root as a
# throwaway overlay, cgroup2 with cpu/memory/pids) and runs one command in
# it as root. Streams the command's output to stdout and exits with its exit
# status; exits 125 if the VM itself fails. See tests/vm/README.md.
set -euo pipefail

VM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$VM_DIR/../.." && pwd)
readonly VM_DIR REPO_ROOT
readonly HARNESS_FAILED=125

CACHE=$REPO_ROOT/build/default/vm
TIMEOUT=900
MEM=2048
SMP=2
SHARES=()
SYSTEMD=0
CMD=()
TMP=""
QEMU_PID=""
QEMU=()

usage() {
  cat >&2 <<EOF
usage: $0 [--cache DIR] [--timeout SEC] [--mem MB] [--smp N] [--share HOSTDIR]... [--systemd]
                -- CMD [ARGS...]
  --cache DIR      kernel + initramfs from tests/vm/fetch-kernel.sh (default $CACHE)
  --timeout SEC    power the VM off and fail after SEC seconds (default $TIMEOUT)
  --mem MB         guest memory (default $MEM)
  --smp N          guest CPUs (default $SMP)
  --share HOSTDIR  mount HOSTDIR read-write at the same path in the guest
  --systemd        boot the host's systemd as PID 1 and run CMD from a unit once
                   basic.target is up (about 30-50 s more under software emulation)
Environment: MP_VM_KVM=1 uses KVM instead of software emulation;
             MP_VM_DEBUG=1 shows kernel messages and prints the guest console.
EOF
  exit "$HARNESS_FAILED"
}

fail() {
  echo "run-in-vm: $*" >&2
  exit "$HARNESS_FAILED"
}

positive_int() {
  [[ $2 =~ ^[1-9][0-9]*$ ]] || fail "$1 needs a positive integer, got '$2'"
}

parse_args() {
  while (($#)); do
    case $1 in
      --cache) (($# >= 2)) || usage; CACHE=$2; shift 2 ;;
      --timeout) (($# >= 2)) || usage; positive_int "$1" "$2"; TIMEOUT=$2; shift 2 ;;
      --mem) (($# >= 2)) || usage; positive_int "$1" "$2"; MEM=$2; shift 2 ;;
      --smp) (($# >= 2)) || usage; positive_int "$1" "$2"; SMP=$2; shift 2 ;;
      --share)
        (($# >= 2)) || usage
        [[ -d $2 ]] || fail "--share $2: not a directory"
        SHARES+=("$(cd "$2" && pwd -P)")
        shift 2 ;;
      --systemd) SYSTEMD=1; shift ;;
      --) shift; break ;;
      *) usage ;;
    esac
  done
  (($#)) || usage
  CMD=("$@")
}

# Uses the cache as it is, rebuilds a stale initramfs (offline, from the
# cached kernel package), or fails if the kernel was never fetched.
check_cache() {
  local state=0
  "$VM_DIR/fetch-kernel.sh" --check "$CACHE" || state=$?
  case $state in
    0) ;;
    1) "$VM_DIR/fetch-kernel.sh" "$CACHE" >&2 ||
         fail "rebuilding the stale initramfs in $CACHE failed" ;;
    *) fail "no VM kernel in $CACHE: run tests/vm/fetch-kernel.sh $CACHE" ;;
  esac
  CACHE=$(cd "$CACHE" && pwd)
}

sh_quote() {
  printf "'%s'" "${1//\'/\'\\\'\'}"
}

# qemu option values escape a comma by doubling it.
qemu_escape() {
  printf '%s' "${1//,/,,}"
}

# The spec is sourced by the guest's init (tests/vm/guest-init.sh).
write_spec() {
  local nonce=$1 i arg
  {
    echo "nonce=$nonce"
    echo "cwd=$(sh_quote "$(pwd -P)")"
    ((SYSTEMD)) && echo "boot=systemd"
    for i in "${!SHARES[@]}"; do
      echo "share mpshare$i $(sh_quote "${SHARES[$i]}")"
    done
    printf 'set --'
    for arg in "${CMD[@]}"; do printf ' %s' "$(sh_quote "$arg")"; done
    echo
  } >"$TMP/run/spec"
}

# The uncompressed kernel boots faster (PVH); the bzImage is the fallback.
boot_kernel() {
  if [[ -f $CACHE/vmlinux ]]; then echo "$CACHE/vmlinux"; else echo "$CACHE/vmlinuz"; fi
}

qemu_args() {
  local append="console=ttyS0 panic=-1"
  if [[ ${MP_VM_DEBUG:-0} == 1 ]]; then
    append+=" loglevel=7"
  else
    append+=" quiet loglevel=3"
  fi
  if [[ ${MP_VM_KVM:-0} == 1 ]]; then
    [[ -r /dev/kvm && -w /dev/kvm ]] || fail "MP_VM_KVM=1 but /dev/kvm is not usable"
    QEMU+=(-accel kvm -cpu host)
  else
    QEMU+=(-accel tcg -cpu max)
  fi
  # shellcheck disable=SC2054 # commas separate qemu's sub-options
  QEMU+=(-m "$MEM" -smp "$SMP" -no-reboot -nodefaults -no-user-config -display none
    -kernel "$(boot_kernel)" -initrd "$CACHE/initramfs.cpio.gz" -append "$append"
    -chardev "file,id=console,path=$(qemu_escape "$TMP/console.log")" -serial chardev:console
    -chardev stdio,id=out,signal=off -serial chardev:out
    -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap
    -virtfs "local,path=$(qemu_escape "$TMP/run"),mount_tag=mprun,security_model=none")
  local i
  for i in "${!SHARES[@]}"; do
    # shellcheck disable=SC2054 # commas separate qemu's sub-options
    QEMU+=(-virtfs "local,path=$(qemu_escape "${SHARES[$i]}"),mount_tag=mpshare$i,security_model=none,multidevs=remap")
  done
}

console_tail() {
  [[ -s $TMP/console.log ]] || return 0
  echo "run-in-vm: last lines of the guest console:" >&2
  tail -n 30 "$TMP/console.log" | sed 's/^/  | /' >&2
}

# Prints the command's exit status if the guest reported one for this nonce.
reported_status() {
  local nonce=$1 got status
  [[ -s $TMP/run/status ]] || return 1
  read -r got status <"$TMP/run/status" || true
  [[ $got == "$nonce" && $status =~ ^[0-9]+$ ]] || return 1
  echo "$status"
}

stop_qemu() {
  [[ -n $QEMU_PID ]] || return 0
  kill -TERM "$QEMU_PID" 2>/dev/null || true
  wait "$QEMU_PID" 2>/dev/null || true
  QEMU_PID=""
}

cleanup() {
  stop_qemu
  [[ -z $TMP ]] || rm -rf "$TMP"
}

on_signal() {
  stop_qemu
  fail "interrupted"
}

main() {
  parse_args "$@"
  command -v qemu-system-x86_64 >/dev/null || fail "qemu-system-x86_64 is not installed"
  check_cache

  trap cleanup EXIT
  trap on_signal INT TERM HUP
  TMP=$(mktemp -d "${TMPDIR:-/tmp}/mp-vm.XXXXXX")
  mkdir "$TMP/run"
  local nonce
  nonce=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
  write_spec "$nonce"
  QEMU=(qemu-system-x86_64)
  qemu_args

  local rc=0
  timeout --kill-after=10 "$TIMEOUT" "${QEMU[@]}" </dev/null &
  QEMU_PID=$!
  wait "$QEMU_PID" || rc=$?
  QEMU_PID=""

  [[ ${MP_VM_DEBUG:-0} == 1 && -f $TMP/console.log ]] && cat "$TMP/console.log" >&2
  ((rc != 124)) || { console_tail; fail "timed out after ${TIMEOUT}s: ${CMD[*]}"; }
  local status
  if status=$(reported_status "$nonce"); then
    exit "$status"
  fi
  console_tail
  [[ -s $TMP/run/error ]] && fail "guest setup failed: $(<"$TMP/run/error")"
  ((rc == 0)) || fail "qemu exited with status $rc before the command finished"
  fail "the VM powered off without reporting the command's exit status (guest crash or panic?)"
}

main "$@"
