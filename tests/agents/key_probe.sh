#!/bin/sh
# Runs inside an agent preset's session (tests/privileged/agent_e2e_test.cc, as the preset's
# command with its arguments, which it ignores) and looks for the test's API keys where a
# prompt-injected agent would: every process environment it can read and every file it can
# read outside /usr and the agent CLIs. The test keys are sk-stub-openai-HEX, sk-ant-stub-HEX
# and stub-gemini-HEX; the pattern below wants 8 hex digits after the prefix, so it never
# matches itself. Prints one line per hit and a last line
# "KEY-PROBE env_hits=N file_hits=M readable_environs=E" (E > 0: the probe saw processes).
pattern='(stub-openai|ant-stub|stub-gemini)-[0-9a-f]{8}'
env_hits=0
readable=0
all_hits=""
for f in /proc/[0-9]*/environ; do
  contents=$( (tr '\0' '\n' < "$f") 2>/dev/null) || continue
  readable=$((readable + 1))
  if printf '%s\n' "$contents" | grep -Eq "$pattern"; then
    env_hits=$((env_hits + 1))
    echo "KEY-IN-ENV $f ($(tr '\0' ' ' < "${f%/environ}/cmdline" 2>/dev/null | head -c 80))"
  fi
done
for dir in / /etc /var /run /tmp /dev/shm /opt /srv /home /root "$HOME" "$PWD"; do
  [ -d "$dir" ] || continue
  if [ "$dir" = / ]; then
    # Only the files directly in / (the directories are walked one by one).
    set -- $(find / -maxdepth 1 -type f 2>/dev/null)
    [ $# -gt 0 ] || continue
    hits=$(grep -lE "$pattern" "$@" 2>/dev/null)
  else
    hits=$(grep -rlE "$pattern" --exclude-dir=mp-e2e-agents --exclude-dir=node_modules \
      "$dir" 2>/dev/null)
  fi
  all_hits="$all_hits
$hits"
done
# The directories overlap ($HOME and $PWD lie below others): each file once.
file_hits=0
for h in $(printf '%s\n' "$all_hits" | sort -u); do
  file_hits=$((file_hits + 1))
  echo "KEY-IN-FILE $h"
done
echo "KEY-PROBE env_hits=$env_hits file_hits=$file_hits readable_environs=$readable"
