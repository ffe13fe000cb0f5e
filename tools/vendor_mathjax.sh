#!/usr/bin/env bash
# Re-vendor the website's math renderer: MathJax 3 (Apache-2.0) from the npm registry into docs/_static/mathjax/.
# The site (make book) loads it from there, so pages render their mathematics with no network at view time.
# Only what the TeX-to-CommonHTML component needs is kept: the combined component, the TeX extensions it
# autoloads (\boldsymbol, \cancel, mathtools, ...) and the woff-v2 fonts (about 1.8 MB in all).
#   bash tools/vendor_mathjax.sh [VERSION]      # default 3.2.2; needs npm (and the registry) once
set -euo pipefail
VERSION="${1:-3.2.2}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$ROOT/docs/_static/mathjax"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
(cd "$TMP" && npm pack --silent "mathjax@$VERSION" >/dev/null && tar xzf mathjax-*.tgz)
SRC="$TMP/package/es5"
rm -rf "$DEST"
mkdir -p "$DEST/input/tex/extensions" "$DEST/output/chtml/fonts/woff-v2"
cp "$SRC/tex-chtml.js" "$DEST/"
for f in "$SRC"/input/tex/extensions/*.js; do
  [ "$(basename "$f")" = all-packages.js ] || cp "$f" "$DEST/input/tex/extensions/"
done
cp "$SRC"/output/chtml/fonts/woff-v2/*.woff "$DEST/output/chtml/fonts/woff-v2/"
cp "$TMP/package/LICENSE" "$DEST/LICENSE"
cat > "$DEST/VENDOR.txt" <<TXT
MathJax $VERSION (https://www.mathjax.org), Apache License 2.0 (see LICENSE in this folder).
Taken unchanged from the npm package mathjax@$VERSION (es5/): tex-chtml.js, input/tex/extensions/*.js
(without all-packages.js) and output/chtml/fonts/woff-v2/*.woff. Regenerate with tools/vendor_mathjax.sh.
TXT
du -sh "$DEST"
