#!/usr/bin/env bash
# Installs every build and test dependency of MonkeyProof on Debian 12 from
# Debian's own packages. Needs root. Safe to run again.
set -euo pipefail

packages=(
  # toolchain and build
  build-essential cmake ninja-build pkg-config git
  # libraries
  libseccomp-dev libcap-dev libboost-dev nlohmann-json3-dev libssl-dev
  # tests
  libgtest-dev libgmock-dev python3 python3-websockets
  # the original MonkeyProof's interactive mode, run by the compatibility test (tests/compat)
  tmux
  # fuzzing (libFuzzer ships with clang's runtime)
  clang libclang-rt-14-dev
  # the test VM: Debian's kernel is fetched into the build tree by tests/vm/fetch-kernel.sh
  qemu-system-x86 busybox-static cpio kmod
  # the Debian package (packaging/deb/build-deb.sh) and its host install test
  debhelper dpkg-dev help2man lintian systemd
  # benchmarks and tooling
  bubblewrap util-linux iproute2 curl clang-format clang-tidy
)

# The agent tier (tests/agents) installs the agent CLIs, and the Node.js the flag check runs
# them on (tests/agents/node-version), with npm. A machine that has Node and npm keeps its own;
# Debian's nodejs (18) is enough to run npm.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  packages+=(nodejs npm)
fi

if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps.sh: run as root (it calls apt-get)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${packages[@]}"
