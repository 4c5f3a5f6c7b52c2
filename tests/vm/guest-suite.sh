#!/usr/bin/env bash
# Runs gtest binaries one after the other inside the test VM (started by
# tests/vm/run-in-vm.sh) and fails unless every test case ran and passed:
# a failure, a crash, a skipped test or a binary that ran no test all fail
# the suite. Ends with the line "N passed, M failed" (test cases).
set -euo pipefail

PASSED=0
FAILED=0
PROBLEMS=()

# Counts per-test result lines ("[       OK ] Suite.Name (12 ms)"); the
# summary gtest prints at the end lists names without a duration.
count_results() {
  local log=$1 tag=$2
  grep -cE "^\[ *${tag} *\] .* \([0-9]+ ms\)\$" "$log" || true
}

# Number of enabled tests the binary would run, from --gtest_list_tests.
count_listed() {
  { "$1" --gtest_list_tests 2>/dev/null || true; } | awk '
    /^[^ ]/ { suite_disabled = ($1 ~ /^DISABLED_/ || $1 ~ /\/DISABLED_/) }
    /^  [^ ]/ { if (!suite_disabled && $1 !~ /^DISABLED_/) n++ }
    END { print n + 0 }'
}

run_binary() {
  local bin=$1 name log xml listed rc=0
  name=$(basename "$bin")
  log=$(mktemp "/tmp/$name.XXXXXX.log")
  xml=/tmp/$name.xml
  rm -f "$xml"
  echo "=== $name"
  listed=$(count_listed "$bin")
  "$bin" --gtest_color=no --gtest_output="xml:$xml" 2>&1 | tee "$log" || rc=${PIPESTATUS[0]}

  local started ok failed skipped unfinished
  started=$(grep -cE '^\[ RUN      \] ' "$log" || true)
  ((listed > started)) || listed=$started
  ok=$(count_results "$log" OK)
  failed=$(count_results "$log" FAILED)
  skipped=$(count_results "$log" SKIPPED)
  if [[ -f $xml ]] && grep -q 'result="skipped"' "$xml"; then
    skipped=$((skipped > 0 ? skipped : $(grep -c 'result="skipped"' "$xml")))
  fi
  # Tests that crashed, and those a crash kept from running at all.
  unfinished=$((listed - ok - failed - skipped))
  ((unfinished >= 0)) || unfinished=0

  PASSED=$((PASSED + ok))
  FAILED=$((FAILED + failed + skipped + unfinished))
  ((rc == 0)) || PROBLEMS+=("$name exited with status $rc")
  ((failed == 0)) || PROBLEMS+=("$name: $failed test(s) failed")
  ((skipped == 0)) || PROBLEMS+=("$name: $skipped test(s) skipped (a skip is a failure here)")
  ((unfinished == 0)) || PROBLEMS+=("$name: $unfinished test(s) did not finish or never ran")
  ((started > 0)) || PROBLEMS+=("$name ran no test")
  rm -f "$log"
}

main() {
  (($#)) || { echo "usage: $0 GTEST_BINARY..." >&2; exit 2; }
  local bin
  for bin in "$@"; do
    if [[ ! -x $bin ]]; then
      PROBLEMS+=("$bin is not an executable file")
      continue
    fi
    run_binary "$bin"
  done
  echo "==="
  local p
  for p in "${PROBLEMS[@]}"; do echo "FAILED: $p"; done
  echo "$PASSED passed, $FAILED failed"
  ((${#PROBLEMS[@]} == 0))
}

main "$@"
