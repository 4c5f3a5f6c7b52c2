#!/usr/bin/env bash
# Builds monkeyproof_<version>_<arch>.deb from this checkout and checks it with lintian.
#
#   packaging/deb/build-deb.sh [OUTDIR]      (default: build/deb)
#
# Stages the source (the files git tracks or would track, as they are in the working tree; the
# whole tree but build/ outside a git checkout) in OUTDIR/monkeyproof-<version>/ with
# packaging/deb/debian as its debian/, runs `dpkg-buildpackage -us -uc -b` there (the .deb, the
# .buildinfo and the .changes land in OUTDIR), then `lintian` on the .changes, failing on any
# error or warning. Build dependencies: scripts/install-deps.sh installs them.
# MP_DEB_SKIP_LINTIAN=1 skips lintian (it takes about a minute).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=${1:-$repo/build/deb}
mkdir -p "$out"
out=$(cd "$out" && pwd)

version=$(dpkg-parsechangelog -l "$repo/packaging/deb/debian/changelog" -S Version)
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
stage=$out/monkeyproof-$version
rm -rf "$stage" "$out"/monkeyproof_"$version"_*
mkdir -p "$stage"

if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  # Tracked and untracked-but-not-ignored files; a tracked file deleted in the tree is skipped.
  (cd "$repo" && git ls-files -z --cached --others --exclude-standard |
     while IFS= read -r -d '' f; do [[ -e $f ]] && printf '%s\0' "$f"; done |
     tar --null -T - -cf -) | tar -xf - -C "$stage"
else
  (cd "$repo" && tar --exclude=./build -cf - .) | tar -xf - -C "$stage"
fi
rm -rf "$stage/debian"
cp -a "$repo/packaging/deb/debian" "$stage/debian"

echo "build-deb: dpkg-buildpackage in $stage" >&2
(cd "$stage" && dpkg-buildpackage -us -uc -b -j"$(nproc)")

deb=$out/monkeyproof_${version}_${arch}.deb
[[ -f $deb ]] || { echo "build-deb: $deb was not produced" >&2; exit 1; }
if [[ ${MP_DEB_SKIP_LINTIAN:-0} != 1 ]]; then
  # Tags at warning level or above fail; info and pedantic tags are shown, not fatal.
  lintian --fail-on error,warning --display-info "$out/monkeyproof_${version}_${arch}.changes"
fi
echo "build-deb: $deb" >&2
