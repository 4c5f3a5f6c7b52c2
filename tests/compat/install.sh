#!/bin/bash
# Puts the original MonkeyProof server into BUILD_DIR/compat/original for the compatibility test
# (tests/compat/compat.py, run in the test VM by tests/privileged/compat_test.cc): its source at
# the commit pinned in tests/compat/versions.json (each file checked by sha256), and Bun and hono
# at their pinned versions from the npm registry. The guest has no network, so this runs on the
# host before the VM boots. Re-runs download nothing when everything is in place.
#
#   tests/compat/install.sh BUILD_DIR
#
# The source comes from MP_ORIGINAL_SRC (a directory holding the original's files) when set,
# else from ../shared/peers/monkeyproof beside the repository (where CI and the design docs
# keep it) when that exists, else from a shallow git clone of the pinned commit. The original is never run here: it runs
# commands as whoever runs it, so only the VM starts it.
# Prints "bun VERSION PATH" and "original COMMIT DIR". Needs npm, python3, and git without
# MP_ORIGINAL_SRC.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 BUILD_DIR" >&2
  exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
versions=$here/versions.json
dest=$1/compat/original
for tool in npm python3; do
  command -v "$tool" >/dev/null || { echo "install.sh: $tool is not installed" >&2; exit 1; }
done

pin() {
  python3 - "$versions" "$@" <<'PY'
import json, sys
v = json.load(open(sys.argv[1]))
what = sys.argv[2]
if what == "files":
    for path, digest in v["original"]["files"].items():
        print(digest, path)
elif what == "packages":
    for p in v["packages"].values():
        print(p["package"], p["version"])
else:
    node = v
    for key in what.split("."):
        node = node[key]
    print(node)
PY
}

commit=$(pin original.commit)
repository=$(pin original.repository)

# The source: copied from MP_ORIGINAL_SRC or cloned, then checked file by file.
src=${MP_ORIGINAL_SRC:-}
beside=$here/../../../shared/peers/monkeyproof
if [[ -z $src && -f $beside/src/sessions.ts ]]; then
  src=$(cd "$beside" && pwd)
fi
if [[ -z $src ]]; then
  src=$1/compat/original-src
  if [[ ! -d $src/.git ]] || [[ $(git -C "$src" rev-parse HEAD 2>/dev/null) != "$commit" ]]; then
    command -v git >/dev/null || { echo "install.sh: git is not installed (or set MP_ORIGINAL_SRC)" >&2; exit 1; }
    rm -rf "$src"
    git init -q "$src"
    git -C "$src" fetch -q --depth 1 "$repository" "$commit" || {
      echo "install.sh: cannot fetch $repository at $commit; set MP_ORIGINAL_SRC to a copy of it" >&2
      exit 1
    }
    git -C "$src" checkout -q FETCH_HEAD
  fi
fi
mkdir -p "$dest/src"
while read -r digest path; do
  [[ -f $src/$path ]] || { echo "install.sh: $src/$path is missing (the original at $commit?)" >&2; exit 1; }
  got=$(sha256sum "$src/$path" | cut -d' ' -f1)
  [[ $got == "$digest" ]] || {
    echo "install.sh: $src/$path is not the pinned file of $commit (sha256 $got, want $digest)" >&2
    exit 1
  }
  cp "$src/$path" "$dest/$path"
done < <(pin files)

# The runtime, at exact versions, beside the source (hono resolves from dest/node_modules).
while read -r package version; do
  manifest=$dest/node_modules/$package/package.json
  installed=
  [[ -f $manifest ]] && installed=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' "$manifest")
  if [[ $installed != "$version" ]]; then
    echo "install.sh: installing $package@$version into $dest" >&2
    npm install --prefix "$dest" --no-audit --no-fund --save-exact --loglevel=error \
      "$package@$version" >&2
  fi
done < <(pin packages)

bun=$dest/$(pin packages.bun.bin)
bun_version=$(pin packages.bun.version)
[[ -x $bun ]] || { echo "install.sh: $bun is missing after the install" >&2; exit 1; }
# Only the version: the server itself runs in the VM alone.
got=$("$bun" --version) || { echo "install.sh: $bun --version failed" >&2; exit 1; }
[[ $got == "$bun_version" ]] || { echo "install.sh: $bun is version $got, want $bun_version" >&2; exit 1; }
# A fixed path for the test (tests/privileged/compat_test.cc).
mkdir -p "$dest/bin"
ln -sfn "../$(pin packages.bun.bin)" "$dest/bin/bun"
echo "bun $got $dest/bin/bun"
echo "original $commit $dest"
