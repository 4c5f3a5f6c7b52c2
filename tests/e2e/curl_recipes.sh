#!/usr/bin/env bash
# The original MonkeyProof server's curl recipes against monkeyproof-api (docs/api.md,
# ../shared/monkeyproof-api.md): create an exec session, list with filters, get, send input,
# read the transcript with ?since and its x-transcript-* headers, DELETE, and the 404s and
# 401s, each checked with python3 -c on the JSON. Needs MP_API_URL and MP_API_TOKEN; PYTHON
# names the interpreter (default python3). Exits 1 after the first failed check, saying why.
set -euo pipefail

URL=${MP_API_URL:?MP_API_URL is not set}
TOKEN=${MP_API_TOKEN:?MP_API_TOKEN is not set}
PY=${PYTHON:-python3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mp-curl-recipes.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
START=$SECONDS
CHECKS=0
# Every answer gets its own files ($WORK/N.body, N.headers); BODY, HEADERS and STATUS describe
# the current one. Starting a process costs most of the run under emulation, so the helpers
# use bash builtins, and the JSON checks are queued and run in one python3 at the end.
N=0
BODY=/dev/null
HEADERS=/dev/null
STATUS=
: >"$WORK/checks"
# For polling without starting a process per poll (bash's /dev/tcp).
HOSTPORT=${URL#http://}
HOSTPORT=${HOSTPORT%%/*}

step() {
  echo "  [$((SECONDS - START)) s] $*"
}

fail() {
  flush_checks || true
  echo "FAILED (curl_recipes): $*" >&2
  echo "  last status: $STATUS body: $(head -c 600 "$BODY")" >&2
  exit 1
}

next_files() {
  N=$((N + 1))
  BODY=$WORK/$N.body
  HEADERS=$WORK/$N.headers
}

# req METHOD PATH [JSON [CURL_ARGS...]]: the original's curl invocation.
req() {
  local method=$1 path=$2 data=${3:-}
  shift $(($# >= 3 ? 3 : $#))
  next_files
  local args=(-sS --max-time 60 -X "$method" -H "Authorization: Bearer $TOKEN" -D "$HEADERS"
    -o "$BODY" -w '%{http_code}')
  if [[ -n $data ]]; then
    args+=(-H 'Content-Type: application/json' -d "$data")
  fi
  STATUS=$(curl "${args[@]}" "$@" "$URL$path") || fail "curl $method $path failed"
}

# batch "METHOD PATH"...: several requests in one curl process (--next between them); then
# pick K (from 1) makes the Kth answer the current one.
batch() {
  local args=() spec
  BATCH_FIRST=$((N + 1))
  for spec in "$@"; do
    next_files
    ((N == BATCH_FIRST)) || args+=(--next)
    args+=(-sS --max-time 60 -X "${spec%% *}" -H "Authorization: Bearer $TOKEN"
      -D "$HEADERS" -o "$BODY" -w '%{http_code}\n' "$URL${spec#* }")
  done
  mapfile -t BATCH_CODES < <(curl "${args[@]}" || echo failed)
  ((${#BATCH_CODES[@]} == $#)) || fail "curl batch: answers ${BATCH_CODES[*]} for $# requests"
}

pick() {
  BODY=$WORK/$((BATCH_FIRST + $1 - 1)).body
  HEADERS=$WORK/$((BATCH_FIRST + $1 - 1)).headers
  STATUS=${BATCH_CODES[$(($1 - 1))]}
}

# expect_status CODE: the current answer's status.
expect_status() {
  [[ $STATUS == "$1" ]] || fail "expected status $1, got $STATUS"
  CHECKS=$((CHECKS + 1))
}

# jcheck EXPR WHAT: EXPR (Python, the current body parsed as j) must be true. Queued as three
# NUL-terminated fields; flush_checks evaluates the queue.
jcheck() {
  CHECKS=$((CHECKS + 1))
  printf '%s\0%s\0%s\0' "$BODY" "$1" "$2" >>"$WORK/checks"
}

flush_checks() {
  "$PY" -c '
import json, sys
fields = open(sys.argv[1], "rb").read().decode().split("\0")[:-1]
bad = 0
for path, expr, what in zip(fields[0::3], fields[1::3], fields[2::3]):
    text = open(path, "rb").read()
    try:
        j = json.loads(text)
        ok = eval("(" + expr + ")")
    except Exception as e:
        ok = False
        what += " [%r]" % e
    if not ok:
        bad += 1
        print("FAILED (curl_recipes): %s\n  check: %s\n  body: %r" % (
            what, " ".join(expr.split()), text[:600]), file=sys.stderr)
sys.exit(1 if bad else 0)' "$WORK/checks" || exit 1
  : >"$WORK/checks"
}

# json_id: the "id" member of the current body (the first one: a SessionInfo's own).
json_id() {
  local text
  IFS= read -r -d '' text <"$BODY" || true
  [[ $text =~ \"id\":\"([^\"]*)\" ]] && printf '%s\n' "${BASH_REMATCH[1]}"
}

# header NAME: a response header's value (case-insensitive name).
header() {
  local name value want=${1,,}
  while IFS=': ' read -r name value; do
    [[ ${name,,} == "$want" ]] && printf '%s\n' "${value%$'\r'}" && return 0
  done <"$HEADERS"
  printf '\n'
}

# wait_ended ID: polls GET /sessions/ID until its status is no longer running.
wait_ended() {
  local i line running
  for ((i = 0; i < 600; i++)); do
    running=0
    exec 3<>"/dev/tcp/${HOSTPORT%:*}/${HOSTPORT##*:}" || fail "connect $HOSTPORT"
    printf 'GET /sessions/%s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nConnection: close\r\n\r\n' \
      "$1" "$TOKEN" >&3
    while IFS= read -r -u 3 line || [[ -n $line ]]; do
      [[ $line == *'"status":"running"'* ]] && running=1
      line=
    done
    exec 3<&-
    if ((!running)); then
      req GET "/sessions/$1"
      expect_status 200
      return 0
    fi
    sleep 0.1
  done
  fail "session $1 still running after 60 s"
}

step "The service is there"
batch "GET /" "GET /health" "GET /policies"
pick 1
expect_status 200
jcheck 'j["name"] == "monkeyproof" and j["status"] == "operational" and
        isinstance(j["version"], str) and isinstance(j["message"], str)' "GET / shape"
pick 2
expect_status 200
jcheck 'j == {"ok": True}' "GET /health"
pick 3
expect_status 200
jcheck '{p["name"] for p in j["policies"]} >= {"exec", "printer", "shell"} and
        all(set(p) >= {"name", "type", "description", "bypassesAgentPermissions"}
            for p in j["policies"])' "GET /policies lists the test presets"

step "Create an exec session (the original's first recipe)"
req POST /sessions '{"task":"echo hello; echo oops >&2; exit 3","type":"exec","owner":"recipes",
  "labels":[" Alpha ","alpha","BETA",""]}'
expect_status 201
jcheck 'set(j) >= {"id", "task", "taskPreview", "cwd", "command", "type", "status", "exitCode",
                   "pid", "createdAt", "endedAt", "outputLines", "wsClients", "owner", "labels"}' \
  "SessionInfo has the original members"
jcheck 'j["type"] == "exec" and j["status"] == "running" and j["exitCode"] is None and
        j["endedAt"] is None and j["wsClients"] == 0 and j["owner"] == "recipes"' \
  "a new session is running"
jcheck 'j["labels"] == ["alpha", "beta"]' "labels trimmed, lower-cased, de-duplicated"
jcheck 'j["command"].startswith("/bin/sh -lc") and j["task"] == j["taskPreview"]' \
  "exec runs /bin/sh -lc TASK"
jcheck 'isinstance(j["pid"], int) and j["pid"] > 0' "pid is a number"
jcheck '__import__("re").fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", j["createdAt"])' \
  "createdAt is ISO 8601 with milliseconds"
FIRST=$(json_id)

step "Get: the detail of an ended session"
wait_ended "$FIRST"
jcheck 'j["status"] == "exited" and j["exitCode"] == 3 and j["endedAt"] is not None' \
  "GET /sessions/:id after exit 3"
jcheck '"hello" in j["recentOutput"] and "[stderr] oops" in j["recentOutput"]' \
  "recentOutput marks stderr lines"
jcheck 'j["outputLines"] == 2 and j["outputBytes"] == 11' "outputLines and outputBytes"
jcheck 'j["transcriptPath"].endswith(j["id"] + "/transcript")' "transcriptPath"

step "Input (the original's second recipe): stdin reaches an exec session"
# shellcheck disable=SC2016 # the session's shell expands $a and $b
req POST /sessions '{"task":"read a; read b; echo \"$a-$b\"","owner":"recipes","labels":["input"]}'
expect_status 201
INPUT=$(json_id)
req POST "/sessions/$INPUT/input" '{"input":"one\n"}'
expect_status 200
jcheck 'j == {"sent": True}' "input answer"
req POST "/sessions/$INPUT/input" '{"input":"two\n"}'
expect_status 200
wait_ended "$INPUT"
jcheck 'j["exitCode"] == 0 and "one-two" in j["recentOutput"]' "both input lines arrived"
# A large input travels in several control frames, in order.
req POST /sessions '{"task":"sha256sum","owner":"recipes"}'
expect_status 201
BIG=$(json_id)
seq -f 'line %06.0f' 0 19999 >"$WORK/big.txt"
{
  printf '{"input":"'
  mapfile -t lines <"$WORK/big.txt"
  printf '%s\\n' "${lines[@]}"
  printf '"}'
} >"$WORK/big.json"
req POST "/sessions/$BIG/input" "@$WORK/big.json"
expect_status 200
req POST "/sessions/$BIG/close-stdin"
expect_status 200
jcheck 'j == {"closed": True}' "close-stdin answer"
WANT=$(sha256sum <"$WORK/big.txt")
WANT=${WANT%% *}
wait_ended "$BIG"
jcheck 'j["exitCode"] == 0 and j["recentOutput"].startswith("'"$WANT"'")' \
  "200 KB of input arrived whole and in order"
req POST "/sessions/$INPUT/input" '{"input":"late\n"}'
expect_status 400
jcheck 'isinstance(j["error"], str)' "input to an ended session is the original's 400"
req POST "/sessions/$INPUT/input" '{"text":"x"}'
expect_status 400
jcheck 'j["error"] == "input is required"' "input without input"

step "Transcript with since and its headers"
# The original's transcript text: its header, then the output with stderr marked; offsets
# count that text.
req POST /sessions '{"task":"printf abcdefghij; echo oops >&2","owner":"recipes"}'
expect_status 201
TRANSCRIPT=$(json_id)
wait_ended "$TRANSCRIPT"
TEXT="# Session $TRANSCRIPT
## Task

printf abcdefghij; echo oops >&2

---
abcdefghij[stderr] oops"
SIZE=$((${#TEXT} + 1)) # and the final newline
req GET "/sessions/$TRANSCRIPT/transcript"
expect_status 200
[[ $(<"$BODY") == "$TEXT" && $(stat -c %s "$BODY") == "$SIZE" ]] || fail "transcript body"
[[ $(header content-type) == text/plain* ]] || fail "transcript content-type $(header content-type)"
[[ $(header x-transcript-offset) == 0 && $(header x-transcript-total-size) == "$SIZE" &&
  $(header x-transcript-next-offset) == "$SIZE" ]] || fail "transcript headers"
FROM=$((SIZE - 20)) # "efghij[stderr] oops\n": the end without "abcd"
req GET "/sessions/$TRANSCRIPT/transcript?since=$FROM"
expect_status 200
[[ $(<"$BODY") == "efghij[stderr] oops" ]] || fail "transcript since=$FROM body"
[[ $(header x-transcript-offset) == "$FROM" && $(header x-transcript-next-offset) == "$SIZE" ]] ||
  fail "transcript since=$FROM headers"
req GET "/sessions/$TRANSCRIPT/transcript?since=$SIZE"
expect_status 200
[[ ! -s $BODY && $(header x-transcript-next-offset) == "$SIZE" ]] || fail "transcript at the end"
req GET "/sessions/$TRANSCRIPT/transcript?since=$((SIZE + 1000))"
expect_status 200
[[ ! -s $BODY && $(header x-transcript-offset) == "$SIZE" &&
  $(header x-transcript-next-offset) == "$SIZE" ]] || fail "transcript past the end: clamped"
req GET "/sessions/$TRANSCRIPT/output"
expect_status 200
[[ $(<"$BODY") == "abcdefghijoops" ]] || fail "/output keeps the raw bytes"
req GET "/sessions/$TRANSCRIPT/transcript?since=nope"
expect_status 400
CHECKS=$((CHECKS + 8))

step "print sessions and exec with command + args"
req POST /sessions '{"task":"hello from print","type":"print","preset":"printer","owner":"other"}'
expect_status 201
PRINT=$(json_id)
wait_ended "$PRINT"
jcheck 'j["type"] == "print" and j["exitCode"] == 0 and
        j["recentOutput"] == "printed: hello from print\n"' "print runs the preset with the task last"
req POST /sessions '{"task":"third","mode":"exec","command":"/bin/echo","args":["first","second"]}'
expect_status 201
ECHO=$(json_id)
wait_ended "$ECHO"
jcheck 'j["recentOutput"] == "first second third\n"' "command args... task"
req POST /sessions '{"task":"x","type":"exec","preset":"printer"}'
expect_status 400
jcheck 'j["field"] == "/preset"' "exec + preset is a 400"

step "Resize and signal an interactive session"
req POST /sessions '{"task":"stty size; sleep 600","type":"interactive","preset":"shell",
  "pty":{"rows":30,"cols":100},"owner":"pty"}'
expect_status 201
jcheck 'j["type"] == "interactive" and j["pty"] == {"rows": 30, "cols": 100}' "pty in SessionInfo"
PTY=$(json_id)
req POST "/sessions/$PTY/resize" '{"rows":40,"cols":90}'
expect_status 200
jcheck 'j == {"resized": True}' "resize answer"
req GET "/sessions/$PTY"
expect_status 200
jcheck 'j["pty"] == {"rows": 40, "cols": 90}' "the new size is reported"
req POST "/sessions/$PTY/signal" '{"signal":"SIGTERM"}'
expect_status 200
jcheck 'j == {"signaled": True}' "signal answer"
wait_ended "$PTY"
jcheck 'j["signal"] == 15 and j["exitCode"] == 143 and j["status"] == "exited"' \
  "SIGTERM ended the session (exitCode 128 + 15, as the original reported)"
req POST "/sessions/$PTY/resize" '{"rows":40,"cols":90}'
expect_status 409
jcheck 'j["code"] == "wrong_state"' "resize of an ended session"

step "DELETE kills a running session and its tree; also fine for ended ones"
req POST /sessions '{"task":"sleep 600 & sleep 600","owner":"recipes","labels":["victim"]}'
expect_status 201
VICTIM=$(json_id)
req DELETE "/sessions/$VICTIM"
expect_status 200
jcheck 'j == {"killed": True}' "DELETE answer"
# DELETE answers once the session has ended: read at once, it is over, as the original's
# "exited" with 128 + signal; ours says killed_by_request.
req GET "/sessions/$VICTIM"
expect_status 200
jcheck 'j["status"] == "exited" and j["exitCode"] in (143, 137) and j["state"] == "killed" and
        j["endReason"] == "killed_by_request" and j["signal"] in (15, 9)' "a DELETEd session"
req DELETE "/sessions/$VICTIM"
expect_status 200
jcheck 'j == {"killed": True}' "DELETE of an ended session"

step "List and filters, in creation order"
req POST /sessions '{"task":"sleep 600","owner":"recipes","labels":["Alpha"]}'
expect_status 201
RUNNING=$(json_id)
batch "GET /sessions" \
  "GET /sessions?owner=recipes" \
  "GET /sessions?label=alpha" \
  "GET /sessions?label=%20ALPHA%20" \
  "GET /sessions?owner=recipes&status=running" \
  "GET /sessions?owner=recipes&state=killed" \
  "GET /sessions?owner=recipes&status=exited" \
  "GET /sessions?owner=recipes&limit=2" \
  "GET /sessions?status=bogus"
pick 1
expect_status 200
jcheck 'isinstance(j, list) and [s["id"] for s in j if s["id"] in (
          "'"$FIRST"'", "'"$INPUT"'", "'"$TRANSCRIPT"'", "'"$VICTIM"'", "'"$RUNNING"'")] ==
          ["'"$FIRST"'", "'"$INPUT"'", "'"$TRANSCRIPT"'", "'"$VICTIM"'", "'"$RUNNING"'"]' \
  "GET /sessions in creation order"
pick 2
expect_status 200
jcheck 'len(j) >= 5 and all(s["owner"] == "recipes" for s in j) and
        "'"$PRINT"'" not in [s["id"] for s in j]' "?owner="
pick 3
expect_status 200
jcheck '[s["id"] for s in j] == ["'"$FIRST"'", "'"$RUNNING"'"]' "?label="
pick 4
expect_status 200
jcheck '[s["id"] for s in j] == ["'"$FIRST"'", "'"$RUNNING"'"]' "?label= is normalized"
pick 5
expect_status 200
jcheck '[s["id"] for s in j] == ["'"$RUNNING"'"]' "?status=running"
pick 6
expect_status 200
jcheck '[s["id"] for s in j] == ["'"$VICTIM"'"]' "?state=killed"
pick 7
expect_status 200
jcheck '{s["id"] for s in j} == {"'"$FIRST"'", "'"$INPUT"'", "'"$BIG"'", "'"$TRANSCRIPT"'",
        "'"$VICTIM"'"}' "?status=exited (a DELETEd exec session too)"
pick 8
expect_status 200
jcheck '[s["id"] for s in j] == ["'"$FIRST"'", "'"$INPUT"'"]' "?limit=2"
pick 9
expect_status 400
jcheck 'isinstance(j["error"], str) and j["field"] == "?status"' "a bad status is a 400"
req DELETE "/sessions/$RUNNING"
expect_status 200

step "404s, as the original: {\"error\":\"Not found\"}"
NOT_FOUND=("GET /sessions/s-0000000000000000000000doesnotexist"
  "DELETE /sessions/s-0000000000000000000000doesnotexist"
  "GET /sessions/s-0000000000000000000000doesnotexist/transcript"
  "GET /sessions/not-a-session-id" "GET /sessions/../etc/passwd" "GET /nothing-here")
batch "${NOT_FOUND[@]}"
for i in "${!NOT_FOUND[@]}"; do
  pick $((i + 1))
  expect_status 404
  jcheck 'j["error"] == "Not found" or j["code"] == "not_found"' "404 for ${NOT_FOUND[$i]}"
done
req POST /sessions/s-0000000000000000000000doesnotexist/input '{"input":"x"}'
expect_status 400
jcheck 'j["error"] == "Session not found or not running" and j["code"] == "not_found"' \
  "input to an unknown session: the original's 400"

step "401s, from another loopback address so that the failure limiter never touches ours"
# (http_edges.py covers every route; here the original's shapes.)
for case in "|/" "Authorization: Bearer wrong-token-wrong-token-wrong-token|/sessions/$FIRST" \
  "Authorization: Bearer $TOKEN-and-more|/sessions/s-0000000000000000000000doesnotexist" \
  "Authorization: Basic $TOKEN|/health"; do
  auth=${case%|*}
  path=${case##*|}
  next_files
  STATUS=$(curl -sS --max-time 60 --interface 127.0.0.3 ${auth:+-H "$auth"} -D "$HEADERS" \
    -o "$BODY" -w '%{http_code}' "$URL$path") || fail "curl $path"
  [[ $STATUS == 401 ]] || fail "GET $path with '${auth:0:22}...': $STATUS, not 401"
  jcheck 'j == {"error": "Unauthorized", "code": "unauthorized"}' "401 body for $path"
done

flush_checks
echo "curl_recipes: $CHECKS checks passed in $((SECONDS - START)) s"
