#!/usr/bin/env bash
# Starts the whole product from a build tree (`monkeyproofd --dev`, which starts monkeyproof-api
# with a fresh token), runs the curl example against it, prints what it answers, and stops.
# Needs root and cgroup v2 with the memory, pids and cpu controllers: scripts/run.sh runs it
# directly on such a host, or inside the test VM. Usage: dev-demo.sh BUILD_DIR
set -euo pipefail
build=${1:?usage: dev-demo.sh BUILD_DIR}
daemon="$build/src/supervisor/monkeyproofd"
cli="$build/src/cli/monkeyproof"
url=http://127.0.0.1:3200
log=$(mktemp /tmp/monkeyproof-demo.XXXXXX)

mkdir -p /srv/monkeyproof/workspaces/demo
chmod 0777 /srv/monkeyproof/workspaces/demo
"$daemon" --dev --api-listen 127.0.0.1:3200 2>"$log" &
daemon_pid=$!
trap 'kill "$daemon_pid" 2>/dev/null || true; wait "$daemon_pid" 2>/dev/null || true' EXIT

token=
for _ in $(seq 1 300); do
  token=$(sed -n 's/.*MONKEYPROOF_TOKEN=\([0-9a-f]*\).*/\1/p' "$log" | head -n1)
  if [[ -n $token ]] && curl -sf -o /dev/null -H "Authorization: Bearer $token" "$url/readyz"; then
    break
  fi
  if ! kill -0 "$daemon_pid" 2>/dev/null; then
    cat "$log" >&2
    echo "dev-demo: monkeyproofd --dev exited" >&2
    exit 1
  fi
  sleep 0.2
done
cat "$log"
auth=(-H "Authorization: Bearer $token")

step() { printf '\n$ %s\n' "$*"; }
step "curl -s -H 'Authorization: Bearer \$TOKEN' -d '{\"task\":\"id; hostname; echo hello from the sandbox\",\"cwd\":\"/srv/monkeyproof/workspaces/demo\"}' $url/sessions"
created=$(curl -sS "${auth[@]}" -H 'Content-Type: application/json' \
  -d '{"task":"id; hostname; echo hello from the sandbox","cwd":"/srv/monkeyproof/workspaces/demo"}' \
  "$url/sessions")
echo "$created"
id=$(printf '%s' "$created" | sed -n 's/^{"id":"\([^"]*\)".*/\1/p')
[[ -n $id ]] || { echo "dev-demo: no session id in the answer" >&2; exit 1; }

for _ in $(seq 1 100); do
  status=$(curl -sS "${auth[@]}" "$url/sessions/$id" | sed -n 's/.*"status":"\([a-z]*\)".*/\1/p')
  [[ $status == running ]] || break
  sleep 0.2
done
step "curl -s -H 'Authorization: Bearer \$TOKEN' $url/sessions/$id/transcript"
curl -sS "${auth[@]}" "$url/sessions/$id/transcript"
step "curl -s -H 'Authorization: Bearer \$TOKEN' $url/sessions/$id"
curl -sS "${auth[@]}" "$url/sessions/$id"
echo
if [[ -x $cli ]]; then
  step "monkeyproof run -- 'echo streamed over WebSocket; exit 3'"
  rc=0
  MONKEYPROOF_URL=$url MONKEYPROOF_TOKEN=$token "$cli" run --cwd /srv/monkeyproof/workspaces/demo \
    -- 'echo streamed over WebSocket; exit 3' || rc=$?
  echo "(exit status $rc)"
fi
echo
echo "dev-demo: the product answered; stopping it."
