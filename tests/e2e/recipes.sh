#!/usr/bin/env bash
# docs/recipes.md, command by command, against a running monkeyproof-api whose presets are the
# real codex-worker and codex-interactive (tests/privileged/agent_e2e_test.cc sets this up with
# the stub model of tests/agents/stub_model.py). Each recipe is done with curl, then with the
# monkeyproof CLI; every answer is printed (so the bodies in the document can be taken from a
# real run) and checked. The WebSocket resume snippet is taken from the document itself and run
# as it stands.
#
# Needs MP_API_URL, MP_API_TOKEN, MP_CLI (the CLI binary) and MP_E2E_WORKSPACE (a workspace
# root whose recipes/ and recipes-cli/ the session user may write); PYTHON names an interpreter
# with python3-websockets (default python3). Exits 1 at the first failed check, saying why.
set -euo pipefail

URL=${MP_API_URL:?MP_API_URL is not set}
TOKEN=${MP_API_TOKEN:?MP_API_TOKEN is not set}
CLI=${MP_CLI:?MP_CLI is not set}
WS=${MP_E2E_WORKSPACE:?MP_E2E_WORKSPACE is not set}/recipes
WS_CLI=$MP_E2E_WORKSPACE/recipes-cli
PY=${PYTHON:-python3}
DOC=$(cd "$(dirname "$0")/../.." && pwd)/docs/recipes.md
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mp-recipes.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export MONKEYPROOF_URL=$URL MONKEYPROOF_TOKEN=$TOKEN XDG_CONFIG_HOME=$WORK/config
unset MONKEYPROOF_TOKEN_FILE
START=$SECONDS
CHECKS=0
N=0
BODY=/dev/null
HEADERS=/dev/null
STATUS=

step() { echo "== [$((SECONDS - START)) s] $*"; }

fail() {
  echo "FAILED (recipes): $*" >&2
  echo "  last status: $STATUS body: $(head -c 800 "$BODY")" >&2
  exit 1
}

# req METHOD PATH [JSON]: one curl request as in the document; prints it and the answer.
req() {
  local method=$1 path=$2 data=${3:-}
  N=$((N + 1))
  BODY=$WORK/$N.body
  HEADERS=$WORK/$N.headers
  local args=(-sS --max-time 60 -X "$method" -H "Authorization: Bearer $TOKEN" -D "$HEADERS"
    -o "$BODY" -w '%{http_code}')
  [[ -z $data ]] || args+=(-H 'Content-Type: application/json' -d "$data")
  STATUS=$(curl "${args[@]}" "$URL$path") || fail "curl $method $path failed"
  echo "> $method $path${data:+ $data}"
  echo "< $STATUS $(head -c 3000 "$BODY")"
  grep -i '^x-' "$HEADERS" | tr -d '\r' | sed 's/^/< /' || true
}

expect_status() {
  [[ $STATUS == "$1" ]] || fail "expected status $1, got $STATUS"
  CHECKS=$((CHECKS + 1))
}

# jcheck EXPR WHAT: EXPR (Python; the current body parsed as j) must hold.
jcheck() {
  "$PY" -c 'import json, sys
j = json.load(open(sys.argv[1]))
sys.exit(0 if eval("(" + sys.argv[2] + ")") else 1)' "$BODY" "$1" || fail "$2 (check: $1)"
  CHECKS=$((CHECKS + 1))
}

# jget EXPR: prints EXPR evaluated on the current body.
jget() {
  "$PY" -c 'import json, sys
j = json.load(open(sys.argv[1]))
print(eval("(" + sys.argv[2] + ")"))' "$BODY" "$1"
}

header() {
  local name value want=${1,,}
  while IFS=': ' read -r name value; do
    [[ ${name,,} == "$want" ]] && printf '%s\n' "${value%$'\r'}" && return 0
  done <"$HEADERS"
  printf '\n'
}

# wait_ended ID [SECONDS]: GET /sessions/ID every second until it is no longer running.
wait_ended() {
  local i
  for ((i = 0; i < ${2:-600}; i++)); do
    STATUS=$(curl -sS --max-time 60 -H "Authorization: Bearer $TOKEN" -o "$WORK/poll" \
      -w '%{http_code}' "$URL/sessions/$1") || fail "curl GET /sessions/$1"
    grep -q '"status":"running"' "$WORK/poll" || { req GET "/sessions/$1"; return 0; }
    sleep 1
  done
  fail "session $1 still running after ${2:-600} s"
}

# wait_file PATH TEXT [SESSION]: until the agent has written TEXT (and a newline) to PATH. With
# SESSION (an interactive one), Enter is pressed again every 30 s, as a person would when a
# line stays in the prompt: an Enter taken as part of a paste, or typed while a turn ran.
wait_file() {
  local i
  for ((i = 0; i < 300; i++)); do
    [[ -f $1 && $(cat "$1") == "$2" ]] && { CHECKS=$((CHECKS + 1)); return 0; }
    if [[ -n ${3:-} ]] && ((i % 30 == 29)); then
      echo "   (Enter again after $((i + 1)) s)"
      curl -sS --max-time 60 -o /dev/null -X POST -H "Authorization: Bearer $TOKEN" \
        -H 'Content-Type: application/json' -d '{"input":"\r"}' "$URL/sessions/$3/input" || true
    fi
    sleep 1
  done
  fail "$1 does not hold '$2' after 300 s"
}

# screen ID: the session's output without terminal control sequences, last 1500 characters.
screen() {
  curl -sS --max-time 60 -H "Authorization: Bearer $TOKEN" "$URL/sessions/$1/output" |
    "$PY" -c 'import re, sys
t = sys.stdin.buffer.read().decode("utf-8", "replace")
t = re.sub(r"\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b\[[0-9;?<>=]*[ -/]*[@-~]|\x1b.", " ", t)
print(re.sub(r"\s+", " ", t)[-1500:])'
}

# mp ARGS...: the CLI, stdout in $WORK/out, stderr in $WORK/err, status in RC.
mp() {
  RC=0
  echo "\$ monkeyproof $*"
  timeout 900 "$CLI" "$@" >"$WORK/out" 2>"$WORK/err" || RC=$?
  echo "  (status $RC) stdout: $(head -c 1500 "$WORK/out")"
  [[ ! -s $WORK/err ]] || echo "  stderr: $(head -c 600 "$WORK/err")"
}

expect() {
  local what=$1
  shift
  "$@" || fail "$what"
  CHECKS=$((CHECKS + 1))
}

# The final agent_message of codex exec --json output in file $1.
agent_message() {
  "$PY" -c 'import json, sys
last = None
for line in open(sys.argv[1], encoding="utf-8"):
    line = line.strip()
    if line.startswith("{"):
        e = json.loads(line)
        if e.get("type") == "item.completed" and e["item"].get("type") == "agent_message":
            last = e["item"]["text"]
print(last)' "$1"
}

step "Recipe 1 (curl): a one-shot Codex worker"
req GET /policies
expect_status 200
jcheck '{"codex-worker", "codex-interactive"} <= {p["name"] for p in j["policies"]}' \
  "GET /policies lists the Codex presets"
req POST /sessions '{"type":"print","preset":"codex-worker","cwd":"'"$WS"'",
  "task":"Create the file '"$WS"'/notes.txt containing the text: first note",
  "owner":"orchestrator","labels":["ticket-42"]}'
expect_status 201
jcheck 'j["type"] == "print" and j["preset"] == "codex-worker" and j["status"] == "running"
        and j["owner"] == "orchestrator" and j["labels"] == ["ticket-42"]' "SessionInfo"
jcheck '" exec --json " in j["command"] and j["command"].endswith(j["task"])' \
  "the preset's command with the task last"
WORKER=$(jget 'j["id"]')
req POST "/sessions/$WORKER/close-stdin"
expect_status 200
jcheck 'j == {"closed": True}' "close-stdin"
wait_ended "$WORKER"
jcheck 'j["status"] == "exited" and j["exitCode"] == 0 and j["endReason"] == "exit"' \
  "the worker exited 0"
jcheck '"agent_message" in j["recentOutput"] and
        j["transcriptPath"] == "/sessions/" + j["id"] + "/transcript"' "detail"
req GET "/sessions/$WORKER/output"
expect_status 200
expect "x-output-ended is true" [ "$(header x-output-ended)" == true ]
cp "$BODY" "$WORK/worker.jsonl"
expect "the last agent message" [ "$(agent_message "$WORK/worker.jsonl")" == \
  "Done: the file is written." ]
expect "the file the worker wrote" [ "$(cat "$WS/notes.txt")" == "first note" ]

step "Recipe 1 (CLI): a one-shot Codex worker"
mp run --stdin --type print --preset codex-worker --cwd "$WS_CLI" --owner orchestrator \
  --label ticket-43 "Create the file $WS_CLI/notes.txt containing the text: cli note" </dev/null
expect "run exits with the worker's status" [ "$RC" == 0 ]
expect "run streams the JSON events" [ "$(agent_message "$WORK/out")" == \
  "Done: the file is written." ]
expect "run names the session on stderr" grep -q '^monkeyproof: session s-.* started' "$WORK/err"
expect "the file the CLI's worker wrote" [ "$(cat "$WS_CLI/notes.txt")" == "cli note" ]
CLI_WORKER=$(sed -n 's/^monkeyproof: session \(s-[^ ]*\) started.*/\1/p' "$WORK/err")
mp run --detach --type print --preset codex-worker --cwd "$WS_CLI" --owner orchestrator \
  "Create the file $WS_CLI/second.txt containing the text: detached"
expect "run --detach prints the id" grep -qx 's-[A-Za-z0-9]*' "$WORK/out"
DETACHED=$(cat "$WORK/out")
req POST "/sessions/$DETACHED/close-stdin"
expect_status 200
wait_ended "$DETACHED"
jcheck 'j["exitCode"] == 0' "the detached worker exited 0"
expect "the detached worker's file" [ "$(cat "$WS_CLI/second.txt")" == "detached" ]

step "Recipe 3 (curl): reading output with offsets"
req GET "/sessions/$WORKER/output?since=0&limit=200"
expect_status 200
TOTAL=$(header x-output-total-size)
expect "first page headers" [ "$(header x-output-offset)" == 0 -a \
  "$(header x-output-next-offset)" == 200 -a "$(header x-output-ended)" == false ]
cp "$BODY" "$WORK/pages"
NEXT=200
while ((NEXT < TOTAL)); do
  req GET "/sessions/$WORKER/output?since=$NEXT&limit=200"
  expect_status 200
  expect "page at $NEXT starts there" [ "$(header x-output-offset)" == "$NEXT" ]
  cat "$BODY" >>"$WORK/pages"
  NEXT=$(header x-output-next-offset)
done
expect "the last page ends the output" [ "$(header x-output-ended)" == true ]
expect "the pages make the whole output" cmp -s "$WORK/pages" "$WORK/worker.jsonl"
# The transcript is the original's text: its header, then the output with stderr marked;
# its offsets count that text.
req GET "/sessions/$WORKER/transcript"
expect_status 200
cp "$BODY" "$WORK/transcript"
TTOTAL=$(header x-transcript-total-size)
expect "transcript size" [ "$(stat -c %s "$WORK/transcript")" == "$TTOTAL" -a \
  "$(header x-transcript-next-offset)" == "$TTOTAL" ]
expect "the transcript: header, then the output with [stderr] marks" "$PY" -c 'import sys
t, o = open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read()
head = ("# Session %s\n## Task\n\n" % sys.argv[3]).encode()
body = t[t.index(b"\n\n---\n") + 6:]
sys.exit(0 if t.startswith(head) and body.replace(b"[stderr] ", b"") == o else 1)' \
  "$WORK/transcript" "$WORK/worker.jsonl" "$WORKER"
req GET "/sessions/$WORKER/transcript?since=200"
expect_status 200
expect "transcript headers" [ "$(header x-transcript-offset)" == 200 -a \
  "$(header x-transcript-next-offset)" == "$TTOTAL" -a \
  "$(header x-transcript-total-size)" == "$TTOTAL" ]
expect "the transcript from 200" cmp -s "$BODY" <(tail -c +201 "$WORK/transcript")

step "Recipe 3 (WebSocket): the resume snippet of docs/recipes.md, run as it stands"
awk '/^```python$/ { on = 1; next } /^```$/ { on = 0 } on' "$DOC" >"$WORK/follow.py"
expect "docs/recipes.md has the Python snippet" grep -q 'since=' "$WORK/follow.py"
MP_URL=$URL MP_TOKEN=$TOKEN "$PY" "$WORK/follow.py" "$WORKER" >"$WORK/ws.out" ||
  fail "the snippet failed on $WORKER"
expect "the snippet's output is the whole output" cmp -s "$WORK/ws.out" "$WORK/worker.jsonl"
MP_URL=$URL MP_TOKEN=$TOKEN "$PY" "$WORK/follow.py" "$WORKER" 200 >"$WORK/ws.out" ||
  fail "the snippet failed on $WORKER from 200"
expect "the snippet from 200" cmp -s "$WORK/ws.out" <(tail -c +201 "$WORK/worker.jsonl")

step "Recipe 3 (CLI): logs"
mp logs "$WORKER"
expect "logs prints the whole output" cmp -s "$WORK/out" "$WORK/worker.jsonl"
mp logs --since 200 "$WORKER"
expect "logs --since 200" cmp -s "$WORK/out" <(tail -c +201 "$WORK/worker.jsonl")
mp logs -f "$CLI_WORKER"
expect "logs -f of an ended session returns" [ "$RC" == 0 ]
expect "logs -f prints its output" [ "$(agent_message "$WORK/out")" == "Done: the file is written." ]

step "Recipe 2 (curl): an interactive Codex session that receives follow-up input"
req POST /sessions '{"type":"interactive","preset":"codex-interactive","cwd":"'"$WS"'",
  "task":"Create the file '"$WS"'/todo.txt containing the text: step one",
  "pty":{"rows":40,"cols":120},"owner":"orchestrator","labels":["ticket-44"]}'
expect_status 201
jcheck 'j["type"] == "interactive" and j["pty"] == {"rows": 40, "cols": 120}' "SessionInfo"
TUI=$(jget 'j["id"]')
wait_file "$WS/todo.txt" "step one"
req POST "/sessions/$TUI/input" '{"input":"Create the file '"$WS"'/todo2.txt containing the text: step two"}'
expect_status 200
jcheck 'j == {"sent": True}' "input"
# A terminal UI takes a burst of characters for a paste: give it a moment before Enter, and
# press Enter again while the text waits in its prompt (it may have arrived mid-turn).
sleep 2
req POST "/sessions/$TUI/input" '{"input":"\r"}'
expect_status 200
wait_file "$WS/todo2.txt" "step two" "$TUI"
req POST "/sessions/$TUI/resize" '{"rows":50,"cols":160}'
expect_status 200
jcheck 'j == {"resized": True}' "resize"
req GET "/sessions/$TUI"
expect_status 200
jcheck 'j["status"] == "running" and j["pty"] == {"rows": 50, "cols": 160} and
        j["outputBytes"] > 0' "still running, resized"
echo "screen: $(screen "$TUI")"

step "Recipe 2 (CLI): follow-up input"
mp send -n "$TUI" "Create the file $WS/todo3.txt containing the text: step three"
expect "send" [ "$RC" == 0 -a ! -s "$WORK/out" ]
sleep 2
mp --json send -n "$TUI" $'\r'
expect "send --json" [ "$RC" == 0 -a "$(cat "$WORK/out")" == '{"sent":true}' ]
wait_file "$WS/todo3.txt" "step three" "$TUI"
echo "screen: $(screen "$TUI")"

step "Recipe 4 (curl): kill a session and inspect it later"
req DELETE "/sessions/$TUI"
expect_status 200
jcheck 'j == {"killed": True}' "DELETE"
wait_ended "$TUI" 60
jcheck 'j["status"] == "killed" and j["state"] == "killed" and
        j["endReason"] == "killed_by_request" and j["signal"] in (9, 15) and j["exitCode"] is None
        and j["endedAt"] is not None' "the killed session"
jcheck 'j["resources"] is not None and set(j["resources"]) ==
        {"memoryPeakBytes", "cpuUsageUsec", "pidsPeak"}' "resources of an ended session"
BYTES=$(jget 'j["outputBytes"]')
req GET "/sessions/$TUI/transcript"
expect_status 200
expect "the transcript holds the whole screen output" [ "$(header x-transcript-total-size)" == \
  "$BYTES" ]
req GET "/sessions?owner=orchestrator&status=killed"
expect_status 200
jcheck '[s["id"] for s in j] == ["'"$TUI"'"]' "listed as killed"
req GET "/sessions?label=ticket-42"
expect_status 200
jcheck '[s["id"] for s in j] == ["'"$WORKER"'"]' "found by its label"

step "Recipe 4 (CLI): kill and inspect"
mp run --detach --type interactive --preset codex-interactive --cwd "$WS_CLI" \
  --owner orchestrator "Say hello."
expect "run --detach (interactive)" grep -qx 's-[A-Za-z0-9]*' "$WORK/out"
TUI2=$(cat "$WORK/out")
mp kill "$TUI2"
expect "kill" [ "$RC" == 0 -a "$(cat "$WORK/out")" == "killed $TUI2" ]
wait_ended "$TUI2" 60
mp show "$TUI2"
expect "show" grep -q 'killed_by_request' "$WORK/out"
mp --json show "$TUI2"
cp "$WORK/out" "$WORK/show.json"
BODY=$WORK/show.json
jcheck 'j["status"] == "killed" and j["endReason"] == "killed_by_request"' "show --json"
mp ls --owner orchestrator --status killed
expect "ls lists both killed sessions" [ "$(grep -c '^s-' "$WORK/out")" == 2 ]
mp kill "$TUI2"
expect "kill of an ended session is no error" [ "$RC" == 0 ]

echo "recipes: $CHECKS checks passed in $((SECONDS - START)) s"
