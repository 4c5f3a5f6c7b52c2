# shellcheck shell=bash
# Sourced by bench/run.sh and bench/api_bench.sh: the facts of the host and the VM that every
# result file's .env records.
# host_facts PRESET VM_CACHE SMP MEM: prints preset, git revision, host, qemu and VM lines.
host_facts() {
  local preset=$1 vm_cache=$2 smp=$3 mem=$4 repo
  repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
  echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "preset=$preset"
  echo "git=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)$(
    git -C "$repo" diff --quiet -- src 2>/dev/null || echo '+dirty-src')"
  echo "host_kernel=$(uname -r)"
  echo "host_cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
  echo "host_cpus=$(nproc)"
  echo "qemu=$(qemu-system-x86_64 --version | head -n 1)"
  local debs=("$vm_cache"/linux-image-*.deb)
  echo "vm=tcg smp=$smp mem=${mem}M kernel_pkg=$(basename "${debs[0]}")"
}
