#!/bin/bash
# Installs every agent CLI pinned in tests/agents/versions.json into BUILD_DIR/agents/NAME
# (npm install --prefix), so that BUILD_DIR/agents/NAME/node_modules/.bin/BIN runs it.
# A CLI already installed at its pinned version is left alone: re-runs download nothing.
#
#   tests/agents/install.sh BUILD_DIR [NAME...]    # default: every CLI in versions.json
#
# Also installs the Node.js pinned in tests/agents/node-version into BUILD_DIR/agents/node.
# Prints one line per CLI: NAME VERSION PATH-OF-ITS-EXECUTABLE. Needs node, npm and python3.
set -euo pipefail

if [[ $# -lt 1 ]]; then
  echo "usage: $0 BUILD_DIR [NAME...]" >&2
  exit 2
fi
build_dir=$1
shift
here=$(cd "$(dirname "$0")" && pwd)
versions=$here/versions.json

for tool in node npm python3; do
  command -v "$tool" >/dev/null || { echo "install.sh: $tool is not installed" >&2; exit 1; }
done

# NAME PACKAGE VERSION BIN, one line per CLI (all of them, or the NAMEs given).
entries=$(python3 - "$versions" "$@" <<'PY'
import json, sys
pins = json.load(open(sys.argv[1]))
names = sys.argv[2:] or sorted(pins)
for name in names:
    if name not in pins:
        sys.exit(f"install.sh: {name!r} is not in {sys.argv[1]} (known: {', '.join(sorted(pins))})")
    p = pins[name]
    print(name, p["package"], p["version"], p["bin"])
PY
)

mkdir -p "$build_dir/agents"

# The Node.js the flag check runs the Node-based CLIs on, pinned too (tests/agents/node-version):
# Debian 12's nodejs is 18, older than @google/gemini-cli (20) and @anthropic-ai/claude-code
# (22) declare. The npm registry's `node` package carries the official Linux build.
node_version=$(tr -d ' \n' <"$here/node-version")
node_prefix=$build_dir/agents/node
if [[ $("$node_prefix/node_modules/.bin/node" --version 2>/dev/null) != "v$node_version" ]]; then
  echo "install.sh: installing node@$node_version into $node_prefix" >&2
  mkdir -p "$node_prefix"
  npm install --prefix "$node_prefix" --no-audit --no-fund --save-exact --loglevel=error \
    "node@$node_version" >&2
fi
[[ $("$node_prefix/node_modules/.bin/node" --version 2>/dev/null) == "v$node_version" ]] || {
  echo "install.sh: node@$node_version did not install a working node" >&2
  exit 1
}

while read -r name package version bin; do
  prefix=$build_dir/agents/$name
  manifest=$prefix/node_modules/$package/package.json
  installed=
  if [[ -f $manifest ]]; then
    installed=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' "$manifest")
  fi
  if [[ $installed != "$version" || ! -x $prefix/node_modules/.bin/$bin ]]; then
    echo "install.sh: installing $package@$version into $prefix" >&2
    mkdir -p "$prefix"
    npm install --prefix "$prefix" --no-audit --no-fund --save-exact --loglevel=error \
      "$package@$version" >&2
  fi
  [[ -x $prefix/node_modules/.bin/$bin ]] || {
    echo "install.sh: $package@$version installed no executable $bin" >&2
    exit 1
  }
  echo "$name $version $(cd "$prefix/node_modules/.bin" && pwd)/$bin"
done <<<"$entries"
