#!/usr/bin/env bash
# Trunk post-build hook: minifies the wasm-bindgen JS glue of release builds.
#
# Trunk's own minifier cannot parse that glue (`export { ... as default }`) and
# ships it as written: 43 KB, 7.7 KB gzipped. terser (installed by
# scripts/setup.sh) brings it to 5.8 KB gzipped. The file's name keeps its hash;
# the subresource-integrity hash in index.html is rewritten to match the new
# content, so the browser still checks what it loads.
set -euo pipefail

[ "${TRUNK_PROFILE:-}" = "release" ] || exit 0
: "${TRUNK_STAGING_DIR:?run by trunk as a post_build hook}"
TOOLS="${MAILROOM_TOOLS:-$HOME/.cache/mailroom-tools}"
TERSER="$TOOLS/node_modules/.bin/terser"
if [ ! -x "$TERSER" ]; then
    echo "minify-js: terser is missing from $TOOLS; run: bash scripts/setup.sh" >&2
    exit 1
fi

sri() { printf 'sha384-%s' "$(openssl dgst -sha384 -binary "$1" | base64 -w0)"; }

html="$TRUNK_STAGING_DIR/index.html"
for js in "$TRUNK_STAGING_DIR"/*.js; do
    before="$(sri "$js")"
    "$TERSER" "$js" --module --compress --mangle --output "$js.min"
    mv "$js.min" "$js"
    after="$(sri "$js")"
    if ! grep -qF "$before" "$html"; then
        echo "minify-js: $html has no integrity $before for $(basename "$js")" >&2
        exit 1
    fi
    sed -i "s|$before|$after|g" "$html"
done
