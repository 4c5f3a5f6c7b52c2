#!/bin/sh
# shellcheck shell=dash disable=SC1091,SC2154 # the spec sets nonce, cwd, "$@"
# PID 1 of the test VM (busybox sh), packed as /init by fetch-kernel.sh.
#
# Stage 1 (initramfs): loads the modules, builds the guest root (the host's
# root over 9p as the read-only lower layer of an overlay on tmpfs, the
# guest's own proc/sys/dev/run, cgroup2), then switch_root's into it.
# Stage 2 (new root, still PID 1): runs the command from the spec written by
# run-in-vm.sh, reports its exit status, powers off.
# With "boot=systemd" in the spec (run-in-vm.sh --systemd), stage 1 instead
# hands PID 1 to the host's systemd in the new root: a unit of ours
# (mp-vm-command.service, the only job of the default target mp-vm.target)
# runs the command, reports its status through the run share, mounted at
# /run/mp-vm-run, and powers off.
#
# Channels: /dev/console (ttyS0) goes to the host's console log; the command's
# output goes to ttyS1, which run-in-vm.sh streams to its stdout. The per-run
# share (9p tag "mprun") holds "spec" (sh: nonce=, cwd=, share TAG PATH,
# set -- ARGS); fd 8 appends to its "error", fd 9 writes its "status". Both
# fds survive switch_root, so the share itself never appears in the new root.

BOOT=/run/mp-vm-boot
BB=/bin/busybox
GUEST_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
P9="trans=virtio,version=9p2000.L,msize=512000"

halt() {
  $BB sync
  $BB poweroff -f
  while :; do $BB sleep 60; done
}

die() {
  echo "mp-vm-init: $*" >/dev/console
  { echo "$*" >&8; } 2>/dev/null
  halt
}

must() {
  "$@" || die "failed: $*"
}

load_modules() {
  local m
  while read -r m; do
    must insmod "/lib/modules/$m.ko"
  done </modules.list
}

open_run_share() {
  must mkdir -p /mp-run
  must mount -t 9p -o "$P9" mprun /mp-run
  exec 8>>/mp-run/error 9>/mp-run/status || die "cannot open the run share's files"
  [ -r /mp-run/spec ] || die "no spec in the run share"
}

mount_overlay_root() {
  must mkdir -p /lower /rw
  # cache=loose: the lower layer is read-only and lives for one boot.
  must mount -t 9p -o "$P9,ro,cache=loose" hostroot /lower
  must mount -t tmpfs -o mode=0755 tmpfs /rw
  must mkdir /rw/upper /rw/work
  must mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work \
    overlay /newroot
}

# The guest's own kernel filesystems; nothing of the host's /proc, /sys,
# /dev or /run shows through.
mount_kernel_fs() {
  local d
  for d in proc sys dev; do
    must mkdir -p "/newroot/$d"
    must mount --move "/$d" "/newroot/$d"
  done
  must mkdir -p /newroot/dev/pts /newroot/dev/shm
  must mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts /newroot/dev/pts
  must mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /newroot/dev/shm
  for d in fd:/proc/self/fd stdin:/proc/self/fd/0 stdout:/proc/self/fd/1 \
           stderr:/proc/self/fd/2; do
    [ -e "/newroot/dev/${d%%:*}" ] || must ln -s "${d#*:}" "/newroot/dev/${d%%:*}"
  done
  # /tmp stays the overlay's: a checkout or build tree under the host's /tmp
  # must be visible in the guest (writes still land in the tmpfs upper layer).
  must mkdir -p /newroot/run
  must mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /newroot/run
}

setup_cgroup() {
  local cg=/newroot/sys/fs/cgroup c controllers
  # The same options systemd mounts the unified hierarchy with.
  must mount -t cgroup2 -o nsdelegate,memory_recursiveprot cgroup2 "$cg"
  controllers=" $(cat "$cg/cgroup.controllers") "
  for c in memory pids cpu; do
    case $controllers in
      *" $c "*) ;;
      *) die "cgroup2 lacks the $c controller (has:$controllers)" ;;
    esac
  done
  echo "+cpu +memory +pids" >"$cg/cgroup.subtree_control" ||
    die "cannot enable cpu memory pids in the root cgroup"
}

# Called by the spec: a host directory shared read-write at its own path.
share() {
  must mkdir -p "/newroot$2"
  must mount -t 9p -o "$P9" "$1" "/newroot$2"
}

prepare_stage2() {
  must mkdir -p "/newroot$BOOT"
  must cp "$BB" /init /mp-run/spec "/newroot$BOOT/"
  must touch /newroot/run/mp-test-vm
}

stage1() {
  export PATH=/bin:/sbin:/usr/bin:/usr/sbin
  mount -t devtmpfs devtmpfs /dev || halt
  exec </dev/console >/dev/console 2>&1
  must mount -t proc proc /proc
  must mount -t sysfs sysfs /sys
  load_modules
  open_run_share
  mount_overlay_root
  mount_kernel_fs
  . /mp-run/spec
  must hostname mp-test-vm
  prepare_stage2
  if [ "${boot:-}" = systemd ]; then
    # systemd mounts cgroup2 and brings loopback up itself.
    prepare_systemd
    # shellcheck disable=SC2093 # die reports a failed exec
    exec switch_root /newroot /lib/systemd/systemd
    die "switch_root to systemd failed"
  fi
  setup_cgroup
  must ip link set lo up
  # shellcheck disable=SC2093 # die reports a failed exec
  exec switch_root /newroot "$BOOT/busybox" sh "$BOOT/init" stage2
  die "switch_root failed"
}

# The units of a systemd boot, written into the overlay (they vanish at power-off): a target
# that pulls in only basic.target and the command, and the command's unit. Timers stay off so
# that no apt or cleanup job starts under the test.
prepare_systemd() {
  local etc=/newroot/etc/systemd/system u
  [ -x /newroot/lib/systemd/systemd ] || die "boot=systemd but the host has no /lib/systemd/systemd"
  must mkdir -p /newroot/run/mp-vm-run "$etc"
  must mount --move /mp-run /newroot/run/mp-vm-run
  cat >"$etc/mp-vm.target" <<EOF || die "cannot write mp-vm.target"
[Unit]
Description=Test VM: basic system and the command
Requires=basic.target
After=basic.target
Wants=mp-vm-command.service
AllowIsolate=yes
EOF
  cat >"$etc/mp-vm-command.service" <<EOF || die "cannot write mp-vm-command.service"
[Unit]
Description=Test VM command (tests/vm/run-in-vm.sh --systemd)
After=basic.target
[Service]
Type=oneshot
ExecStart=$BOOT/busybox sh $BOOT/init systemd-command
StandardInput=null
TimeoutStartSec=infinity
EOF
  must ln -sf mp-vm.target "$etc/default.target"
  # tmp.conf would empty /tmp at boot (the overlay's view of the host's /tmp, where a checkout
  # under test may live), walking it over 9p for minutes.
  must mkdir -p /newroot/etc/tmpfiles.d
  : >/newroot/etc/tmpfiles.d/tmp.conf || die "cannot write tmpfiles.d/tmp.conf"
  for u in timers.target apt-daily.service apt-daily-upgrade.service; do
    must ln -sf /dev/null "$etc/$u"
  done
}

# Waits (up to ~2 s) until only PID 1 and kernel threads are left, so every
# holder of ttyS1 has closed it and its output has drained.
wait_for_strays() {
  local tries=20 d
  while [ $tries -gt 0 ]; do
    for d in /proc/[0-9]*; do
      [ "$d" != /proc/1 ] && [ -e "$d/exe" ] && break
      d=
    done
    [ -z "$d" ] && return
    $BB sleep 0.1
    tries=$((tries - 1))
  done
}

run_command() {
  local out=/dev/ttyS1
  [ -c $out ] || die "no $out for the command's output"
  $BB stty -F $out raw -echo || die "stty $out failed"
  cd "$cwd" 2>/dev/null || die "working directory $cwd does not exist in the guest"
  # /bin/sh (the host's) execs the command: busybox would prefer its own
  # applets over PATH, and env would take a first argument with '=' for an
  # assignment.
  $BB env -i MP_TEST_VM=1 PATH=$GUEST_PATH HOME=/root TERM=dumb LANG=C.UTF-8 \
    /bin/sh -c 'exec "$@"' mp-vm "$@" </dev/null >$out 2>&1 8>&- 9>&-
}

# shellcheck disable=SC2120 # "$@" comes from the spec
stage2() {
  BB=$BOOT/busybox
  share() { :; }
  . $BOOT/spec
  $BB rm -f $BOOT/spec
  local status=0
  run_command "$@" || status=$?
  echo "$nonce $status" >&9
  $BB kill -9 -1 2>/dev/null
  wait_for_strays
  $BB stty -F /dev/ttyS1 >/dev/null 2>&1
  halt
}

# The command under systemd (mp-vm-command.service): as stage2, but the status goes to the run
# share's file by path, and the processes to stop are everyone's but PID 1's.
systemd_command() {
  BB=$BOOT/busybox
  share() { :; }
  . $BOOT/spec
  local status=0
  run_command "$@" || status=$?
  echo "$nonce $status" >/run/mp-vm-run/status
  # The shell's own kill: kill(-1) spares the caller, which a separate kill process would not.
  kill -9 -1 2>/dev/null
  $BB sleep 0.5
  $BB stty -F /dev/ttyS1 >/dev/null 2>&1
  halt
}

if [ "${1:-}" = stage2 ]; then
  stage2
elif [ "${1:-}" = systemd-command ]; then
  systemd_command
else
  stage1
fi
