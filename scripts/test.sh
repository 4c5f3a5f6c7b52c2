#!/usr/bin/env bash
# The README's test command: installs dependencies, builds, and runs every
# test tier (unit on the host, privileged inside the qemu test VM).
# Exits non-zero if any test fails or if the privileged tier did not run.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

if [[ ${MP_SKIP_DEPS:-0} != 1 ]]; then
  "$repo/scripts/install-deps.sh"
fi
"$repo/scripts/build.sh" default

build="$repo/build/default"
status=0
"$repo/scripts/lint.sh" || status=1
ctest --test-dir "$build" --output-on-failure -L unit -j "$(nproc)" || status=1
# The agent CLIs at their pinned versions (tests/agents/versions.json), downloaded from the npm
# registry on the first run into the build tree, where the test VM (no network) finds them:
# every preset's flags must be accepted, and the privileged tier then runs them for real.
"$repo/tests/agents/install.sh" "$build" || status=1
# The original MonkeyProof server (its source at a pinned commit) and Bun, for the compatibility
# test and the benchmark smoke (bench/compare.sh --small) in the privileged tier
# (tests/compat/versions.json), also installed on the host.
"$repo/tests/compat/install.sh" "$build" || status=1
ctest --test-dir "$build" --output-on-failure -L agents || status=1
ctest --test-dir "$build" --output-on-failure -L privileged || status=1

# A privileged tier that ran no test has not passed.
ran=$(ctest --test-dir "$build" -N -L privileged | sed -n 's/^Total Tests: //p')
if [[ -z $ran || $ran -eq 0 ]]; then
  echo "test.sh: the privileged tier has no tests registered" >&2
  status=1
fi
exit $status
