#!/usr/bin/env bash
# The monkeyproof CLI (src/cli; `monkeyproof --help`) against a running monkeyproof-api: run
# with exit statuses and streams, --detach, --stdin, ls, show, logs, send, kill, policies,
# version, token create/ls/revoke with a minted token at work and then revoked, and a bad
# token. Needs MP_CLI (the binary), MP_API_URL and MP_API_TOKEN. Exits 1 at
# the first failed check, saying why.
set -euo pipefail

CLI=${MP_CLI:?MP_CLI is not set}
export MONKEYPROOF_URL=${MP_API_URL:?MP_API_URL is not set}
export MONKEYPROOF_TOKEN=${MP_API_TOKEN:?MP_API_TOKEN is not set}
unset MONKEYPROOF_TOKEN_FILE
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mp-cli-check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export XDG_CONFIG_HOME=$WORK/config  # no config file of this machine's user counts
START=$SECONDS
CHECKS=0

fail() {
  echo "FAILED (cli_check): $*" >&2
  for f in out err; do
    [[ -s $WORK/$f ]] && echo "  $f: $(head -c 600 "$WORK/$f")" >&2
  done
  exit 1
}

# mp ARGS...: runs the CLI with stdin from /dev/null (or $WORK/in when MP_IN=1); its stdout in
# $WORK/out, stderr in $WORK/err, status in RC.
mp() {
  RC=0
  if [[ ${MP_IN:-0} == 1 ]]; then
    timeout 120 "$CLI" "$@" <"$WORK/in" >"$WORK/out" 2>"$WORK/err" || RC=$?
  else
    timeout 120 "$CLI" "$@" </dev/null >"$WORK/out" 2>"$WORK/err" || RC=$?
  fi
}

expect() {  # expect WHAT CONDITION...: a [[ ]] test
  local what=$1
  shift
  "$@" || fail "$what"
  CHECKS=$((CHECKS + 1))
}

is() { [[ $1 == "$2" ]]; }
has() { grep -q -- "$2" "$1"; }
starts() { [[ $1 == "$2"* ]]; }

step() { echo "  [$((SECONDS - START)) s] $*"; }

step "version and policies"
mp version
expect "version exits 0 (status $RC)" is "$RC" 0
expect "version names the server's version" has "$WORK/out" "0\."
mp policies
expect "policies exits 0 (status $RC)" is "$RC" 0
for p in exec printer shell; do expect "policies lists $p" has "$WORK/out" "$p"; done
mp --json policies
expect "policies --json is the server's JSON" has "$WORK/out" '"policies"'

step "run: output and exit status"
mp run -- echo hi
expect "run -- echo hi exits 0 (status $RC)" is "$RC" 0
expect "run -- echo hi prints hi" is "$(cat "$WORK/out")" hi
expect "run names the session on stderr" has "$WORK/err" "s-"
mp run -- sh -c "'exit 3'"
expect "run -- sh -c \"'exit 3'\" exits 3 (status $RC)" is "$RC" 3
mp run -- 'echo to-out; echo to-err >&2'
expect "stdout to stdout" is "$(cat "$WORK/out")" to-out
expect "stderr to stderr" has "$WORK/err" to-err
head -c 3000000 /dev/urandom >"$WORK/in"
MP_IN=1 mp run --stdin -- 'sleep 2; sha256sum'
expect "run --stdin with 3 MB to a slow reader exits 0 (status $RC)" is "$RC" 0
expect "run --stdin delivers 3 MB intact" is "$(cat "$WORK/out")" "$(sha256sum <"$WORK/in")"
# The words are joined with spaces, as ssh does: sh -c gets "exit" and $0=3.
mp run -- sh -c 'exit 3'
echo "    note: run -- sh -c 'exit 3' exits $RC (task \"sh -c exit 3\")"

step "run --detach, ls, show"
mp run --detach --owner cli-check --label CLI -- sleep 600
expect "run --detach exits 0 (status $RC)" is "$RC" 0
ID=$(tr -d '[:space:]' <"$WORK/out")
expect "run --detach prints the id ($ID)" starts "$ID" s-
mp ls --owner cli-check
expect "ls exits 0 (status $RC)" is "$RC" 0
expect "ls lists the session" has "$WORK/out" "$ID"
expect "ls shows it running" has "$WORK/out" running
mp ls --owner cli-check --status exited
expect "ls --status exited leaves it out" is "$(grep -c -- "$ID" "$WORK/out" || true)" 0
mp --json ls --label cli
expect "ls --json --label is JSON with the session" has "$WORK/out" "\"id\":\"$ID\""
mp show "$ID"
expect "show exits 0 (status $RC)" is "$RC" 0
expect "show names the session" has "$WORK/out" "$ID"
expect "show says running" has "$WORK/out" running
mp show s-0000000000000000000000doesnotexist
expect "show of an unknown session exits 1 (status $RC)" is "$RC" 1

step "send, logs, kill"
# shellcheck disable=SC2016 # the session's shell expands $x
mp run --detach -- 'read x; echo "got:$x"; printf "\001\377\000end"'
SENDER=$(tr -d '[:space:]' <"$WORK/out")
mp send "$SENDER" hello there
expect "send exits 0 (status $RC)" is "$RC" 0
mp logs -f "$SENDER"
expect "logs -f exits 0 (status $RC)" is "$RC" 0
printf 'got:hello there\n\001\377\000end' >"$WORK/want"
cmp -s "$WORK/out" "$WORK/want" || fail "logs -f is not byte-exact: $(od -c "$WORK/out" | head -5)"
CHECKS=$((CHECKS + 1))
mp logs --since 4 "$SENDER"
printf 'hello there\n\001\377\000end' >"$WORK/want"
cmp -s "$WORK/out" "$WORK/want" || fail "logs --since 4: $(od -c "$WORK/out" | head -5)"
CHECKS=$((CHECKS + 1))
mp kill "$ID"
expect "kill exits 0 (status $RC)" is "$RC" 0
expect "kill prints killed ID" has "$WORK/out" "killed $ID"
for _ in $(seq 1 100); do
  mp --json show "$ID"
  has "$WORK/out" '"status":"running"' || break
  sleep 0.2
done
# An exec session ended by DELETE reads "exited" (128 + signal) as in the original; its
# exact state is killed.
expect "the killed session is killed" has "$WORK/out" '"state":"killed"'
mp kill "$ID"
expect "kill of an ended session exits 0 (status $RC)" is "$RC" 0

step "token create, a minted token at work, token revoke"
mp token create --owner cli-scoped --rights read,create --preset printer \
  --workspace "${MP_E2E_WORKSPACE:?MP_E2E_WORKSPACE is not set}/w" --ttl 10m
expect "token create exits 0 (status $RC)" is "$RC" 0
SCOPED=$(tr -d '[:space:]' <"$WORK/out")
expect "token create prints the token alone on stdout" starts "$SCOPED" mpt_
TOKEN_ID=$(cut -d_ -f2 <<<"$SCOPED")
expect "token create names its id on stderr" has "$WORK/err" "token $TOKEN_ID"
mp token ls
expect "token ls exits 0 (status $RC)" is "$RC" 0
expect "token ls lists it" has "$WORK/out" "$TOKEN_ID"
expect "token ls shows its workspace" has "$WORK/out" "$MP_E2E_WORKSPACE/w"
expect "token ls never shows the secret" is "$(grep -c -- "${SCOPED##*_}" "$WORK/out" || true)" 0
MONKEYPROOF_TOKEN=$SCOPED mp run --type print --preset printer -- hi
expect "the minted token runs a printer session (status $RC)" is "$RC" 0
expect "its output streams" has "$WORK/out" "printed: hi"
MONKEYPROOF_TOKEN=$SCOPED mp --json ls
expect "the minted token lists its session" has "$WORK/out" "\"owner\":\"cli-scoped\""
expect "the session was created by the token" has "$WORK/out" "\"createdBy\":\"token:$TOKEN_ID\""
expect "the minted token does not see other owners' sessions" \
  is "$(grep -c -- "$ID" "$WORK/out" || true)" 0
MONKEYPROOF_TOKEN=$SCOPED mp run -- echo not-a-preset
expect "the minted token cannot run outside its presets (status $RC)" is "$RC" 1
MONKEYPROOF_TOKEN=$SCOPED mp token ls
expect "a scoped token cannot list tokens (status $RC)" is "$RC" 1
expect "... and is told it needs the admin token" has "$WORK/err" "admin token"
mp token revoke "$TOKEN_ID"
expect "token revoke exits 0 (status $RC)" is "$RC" 0
expect "token revoke prints revoked ID" has "$WORK/out" "revoked $TOKEN_ID"
MONKEYPROOF_TOKEN=$SCOPED mp ls
expect "a revoked token exits 1 (status $RC)" is "$RC" 1
expect "a revoked token is told so" has "$WORK/err" "token revoked"
expect "... and what to do" has "$WORK/err" "ask whoever minted it for a new one"
mp token revoke "$TOKEN_ID"
expect "revoking it again still succeeds (status $RC)" is "$RC" 0

step "a wrong token"
MONKEYPROOF_TOKEN=wrong-wrong-wrong-wrong-wrong-wrong-1234 mp ls
expect "a wrong token exits 1 (status $RC)" is "$RC" 1
expect "a wrong token says so" grep -qi "unauthorized\|401\|token" "$WORK/err"

echo "cli_check: $CHECKS checks passed in $((SECONDS - START)) s"
