#!/usr/bin/env bash
# Style gates: clang-format on every C++ file (fast; scripts/test.sh runs it)
# and, with --tidy, clang-tidy on every source of src/ (minutes on 2 cores).
# Needs a configured build/default (compile_commands.json) for --tidy.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

mapfile -t files < <(git ls-files 'src/*.cc' 'src/*.h' 'tests/*.cc' 'tests/*.h' 'bench/*.cc')
bad=0
for f in "${files[@]}"; do
  if ! clang-format --dry-run -Werror "$f" >/dev/null 2>&1; then
    echo "lint: $f is not clang-formatted (clang-format -i $f)" >&2
    bad=1
  fi
done
if [[ ${1:-} == --tidy ]]; then
  mapfile -t sources < <(git ls-files 'src/*.cc')
  printf '%s\n' "${sources[@]}" | xargs -P "$(nproc)" -n 1 clang-tidy -p build/default --quiet || bad=1
fi
if ((bad)); then
  echo "lint: failed" >&2
  exit 1
fi
echo "lint: ok (${#files[@]} files formatted${1:+, clang-tidy clean})"
