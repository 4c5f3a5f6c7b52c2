#!/usr/bin/env bash
# Fills CACHE_DIR with what tests/vm/run-in-vm.sh boots: Debian's kernel
# (vmlinuz) and a busybox initramfs holding the 9p/overlay modules of that
# same kernel and tests/vm/guest-init.sh as /init.
#
#   fetch-kernel.sh CACHE_DIR          download if needed, rebuild if stale
#   fetch-kernel.sh --check CACHE_DIR  exit 0 up to date, 1 stale but
#                                      rebuildable offline, 2 incomplete
#
# The kernel package is downloaded once (network); everything else is
# rebuilt from the cached .deb whenever the stamp (hash of the init script,
# this script and busybox) changes, which needs no network.
set -euo pipefail

VM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly VM_DIR
readonly INIT_SCRIPT="$VM_DIR/guest-init.sh"
# Load order matters: each module's dependencies come before it. vsock and af_alg are not
# needed to boot: they are loaded so that the attack suite's socket-family probes reach
# AF_VSOCK and AF_ALG without the filter (the guest has no modprobe to autoload them), which
# shows that their "blocked" results come from the filter (tests/attack). ext4 and loop (with
# what ext4 needs) let tests mount a file system that can be idmapped (tests/privileged).
readonly MODULES=(virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev
                  virtio_pci netfs fscache 9pnet 9pnet_virtio 9p overlay vsock af_alg
                  crc32c_generic crc16 mbcache jbd2 ext4 loop)
# Not loaded, not in the initramfs: copied to CACHE_DIR/autoload/, where the guest sees them
# (the host's root over 9p). The seccomp surface test (tests/attack) installs them as the
# guest's module tree for its control, so that a line discipline or socket family an
# unfiltered probe asks for is really autoloaded. Each has no dependencies: n_hdlc
# (tty-ldisc-13), can (net-pf-29), kcm (net-pf-41), phonet (net-pf-35), qrtr (net-pf-42).
readonly AUTOLOAD_MODULES=(n_hdlc can kcm phonet qrtr)

log() { echo "fetch-kernel: $*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
  echo "usage: $0 [--check] CACHE_DIR" >&2
  exit 2
}

# The cached linux-image-*.deb (the last by name if several), or nothing.
cached_deb() {
  local debs=("$CACHE"/linux-image-*.deb)
  [[ -f ${debs[-1]} ]] && echo "${debs[-1]}"
  return 0
}

TMP_DIRS=()
cleanup() { ((${#TMP_DIRS[@]} == 0)) || rm -rf "${TMP_DIRS[@]}"; }
trap cleanup EXIT

busybox_path() {
  local bb
  bb=$(dpkg -L busybox-static 2>/dev/null | grep -m1 '/bin/busybox$') ||
    die "busybox-static is not installed (apt-get install busybox-static)"
  echo "$bb"
}

stamp_of() {
  local deb=$1
  { basename "$deb"; printf '%s\n' "${MODULES[@]}" "${AUTOLOAD_MODULES[@]}"
    cat "$INIT_SCRIPT" "$VM_DIR/fetch-kernel.sh" "$(busybox_path)"; } | sha256sum | cut -d' ' -f1
}

# 0 up to date, 1 stale (the cached .deb suffices to rebuild), 2 incomplete.
cache_state() {
  local deb
  deb=$(cached_deb)
  [[ -n $deb ]] || return 2
  [[ -f $CACHE/vmlinuz && -f $CACHE/initramfs.cpio.gz && -f $CACHE/initramfs.stamp &&
     -d $CACHE/autoload ]] || return 1
  [[ $(<"$CACHE/initramfs.stamp") == "$(stamp_of "$deb")" ]] || return 1
  return 0
}

kernel_package() {
  local pkg
  pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
          sed -n 's/^ *|\{0,1\}Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n1)
  [[ -n $pkg ]] || die "apt-cache cannot resolve linux-image-amd64 (run apt-get update?)"
  echo "$pkg"
}

download_kernel() {
  local pkg dl
  pkg=$(kernel_package)
  log "downloading $pkg"
  dl=$(mktemp -d "$CACHE/.download.XXXXXX")
  TMP_DIRS+=("$dl")
  # apt drops privileges to _apt for downloads; it cannot write our directory.
  (cd "$dl" && apt-get -q -o APT::Sandbox::User="$(id -un)" download "$pkg" >&2) ||
    die "apt-get download $pkg failed"
  mv "$dl"/linux-image-*.deb "$CACHE"/
}

# Prints the path of module $1 under the unpacked kernel tree $2, or nothing
# if the kernel has it built in; fails if it is neither.
find_module() {
  local name=$1 moddir=$2 file
  file=$(find "$moddir/kernel" \( -name "$name.ko" -o -name "$name.ko.*" \
           -o -name "${name//_/-}.ko" -o -name "${name//_/-}.ko.*" \) -print -quit)
  if [[ -n $file ]]; then echo "$file"; return; fi
  grep -q "/${name}.ko\$" "$moddir/modules.builtin" ||
    die "module $name is neither in the kernel package nor built in"
}

# Busybox insmod loads only plain .ko files.
install_module() {
  local src=$1 dst=$2
  case $src in
    *.ko) cp "$src" "$dst" ;;
    *.ko.xz) xz -dc "$src" >"$dst" ;;
    *.ko.zst) zstd -qdc "$src" >"$dst" ;;
    *.ko.gz) gzip -dc "$src" >"$dst" ;;
    *) die "unknown module compression: $src" ;;
  esac
}

# Checks every module's dependencies are built in or loaded before it.
check_depends() {
  local name=$1 ko=$2 dep
  shift 2
  local -a loaded=("$@")
  for dep in $(modinfo -F depends "$ko" | tr ',' ' '); do
    [[ " ${loaded[*]} " == *" ${dep//-/_} "* ]] ||
      die "module $name needs $dep, which is not loaded before it"
  done
}

add_modules() {
  local moddir=$1 root=$2 name src
  local -a loaded=()
  mkdir -p "$root/lib/modules"
  for name in "${MODULES[@]}"; do
    src=$(find_module "$name" "$moddir")
    if [[ -z $src ]]; then
      log "$name is built into the kernel"
      continue
    fi
    install_module "$src" "$root/lib/modules/$name.ko"
    check_depends "$name" "$root/lib/modules/$name.ko" "${loaded[@]}"
    loaded+=("$name")
    echo "$name" >>"$root/modules.list"
  done
  : >>"$root/modules.list"
}

# The modules of AUTOLOAD_MODULES, uncompressed, in directory $2 (replaced whole).
add_autoload_modules() {
  local moddir=$1 out=$2 name src
  rm -rf "$out.new"
  mkdir -p "$out.new"
  for name in "${AUTOLOAD_MODULES[@]}"; do
    src=$(find_module "$name" "$moddir")
    [[ -n $src ]] || die "module $name is built into the kernel: it cannot show an autoload"
    install_module "$src" "$out.new/$name.ko"
    check_depends "$name" "$out.new/$name.ko"
  done
  rm -rf "$out"
  mv "$out.new" "$out"
}

add_busybox() {
  local root=$1 bb applet
  bb=$(busybox_path)
  mkdir -p "$root/bin" "$root/sbin" "$root/usr/bin" "$root/usr/sbin"
  cp "$bb" "$root/bin/busybox"
  for applet in $("$root/bin/busybox" --list-full); do
    [[ -e $root/$applet ]] || ln -s /bin/busybox "$root/$applet"
  done
}

# The ELF kernel inside a bzImage. qemu boots it directly through its PVH
# entry point, which skips the BIOS boot path and the decompression: under
# software emulation that saves about 3 s per boot.
extract_vmlinux() {
  local bz=$1 out=$2 i off
  local -a magics=($'\xfd7zXZ' $'\x28\xb5\x2f\xfd' $'\x1f\x8b\x08')
  local -a tools=("xz -dc" "zstd -qdc" "gzip -dc")
  for i in "${!magics[@]}"; do
    while read -r off; do
      tail -c "+$((off + 1))" "$bz" | ${tools[$i]} >"$out" 2>/dev/null || true
      [[ $(head -c4 "$out") == $'\x7fELF' ]] && return 0
    done < <(LC_ALL=C grep -aboF "${magics[$i]}" "$bz" | cut -d: -f1)
  done
  rm -f "$out"
  return 1
}

build_initramfs() {
  local deb=$1 work kver
  work=$(mktemp -d "$CACHE/.build.XXXXXX")
  TMP_DIRS+=("$work")
  log "unpacking $(basename "$deb")"
  dpkg -x "$deb" "$work/kernel"
  kver=$(ls "$work/kernel/lib/modules")
  [[ $kver != *$'\n'* && -f $work/kernel/boot/vmlinuz-$kver ]] ||
    die "unexpected layout in $(basename "$deb")"

  local root=$work/root
  mkdir -p "$root"/{dev,proc,sys,newroot}
  add_busybox "$root"
  add_modules "$work/kernel/lib/modules/$kver" "$root"
  add_autoload_modules "$work/kernel/lib/modules/$kver" "$CACHE/autoload"
  install -m 0755 "$INIT_SCRIPT" "$root/init"
  (cd "$root" && find . -print0 | cpio --null -o -H newc --owner=0:0 --quiet) |
    gzip -1 >"$work/initramfs.cpio.gz"

  cp "$work/kernel/boot/vmlinuz-$kver" "$work/vmlinuz"
  if extract_vmlinux "$work/vmlinuz" "$work/vmlinux"; then
    mv "$work/vmlinux" "$CACHE/vmlinux"
  else
    log "warning: cannot extract vmlinux from vmlinuz; boots will be slower"
    rm -f "$CACHE/vmlinux"
  fi
  mv "$work/vmlinuz" "$CACHE/vmlinuz"
  mv "$work/initramfs.cpio.gz" "$CACHE/initramfs.cpio.gz"
  stamp_of "$deb" >"$work/stamp"
  mv "$work/stamp" "$CACHE/initramfs.stamp"
  log "built initramfs for kernel $kver"
}

main() {
  local check=0
  [[ ${1:-} == --check ]] && { check=1; shift; }
  (($# == 1)) || usage
  CACHE=$1

  if ((check)); then
    [[ -d $CACHE ]] || exit 2
    local state=0
    cache_state || state=$?
    exit "$state"
  fi

  mkdir -p "$CACHE"
  CACHE=$(cd "$CACHE" && pwd)
  [[ -n $(cached_deb) ]] || download_kernel
  local deb
  deb=$(cached_deb)
  if cache_state; then
    log "cache up to date ($(basename "$deb"))"
    return
  fi
  build_initramfs "$deb"
}

main "$@"
