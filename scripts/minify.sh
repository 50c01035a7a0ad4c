#!/usr/bin/env bash
# Trunk post-build hook: minifies the JS glue and the stylesheet of release builds.
#
# Trunk's own minifier cannot parse the wasm-bindgen glue (`export { ... as
# default }`): it warns on every release build and ships the glue as written,
# 43 KB, 7.7 KB gzipped. terser brings it to 5.8 KB gzipped. Trunk.toml keeps
# Trunk's minifier off, so the stylesheet is minified here too, by
# lightningcss (the minifier Trunk itself uses for CSS): its comments and
# spaces go, about 0.7 KB gzipped. Both are installed by scripts/setup.sh.
# Each file keeps its name and hash; its subresource-integrity hash in
# index.html is rewritten to match the new content, so the browser still
# checks what it loads.
set -euo pipefail

[ "${TRUNK_PROFILE:-}" = "release" ] || exit 0
: "${TRUNK_STAGING_DIR:?run by trunk as a post_build hook}"
TOOLS="${MAILROOM_TOOLS:-$HOME/.cache/mailroom-tools}"
TERSER="$TOOLS/node_modules/.bin/terser"
LIGHTNINGCSS="$TOOLS/node_modules/.bin/lightningcss"
for tool in "$TERSER" "$LIGHTNINGCSS"; do
    if [ ! -x "$tool" ]; then
        echo "minify: $(basename "$tool") is missing from $TOOLS; run: bash scripts/setup.sh" >&2
        exit 1
    fi
done

sri() { printf 'sha384-%s' "$(openssl dgst -sha384 -binary "$1" | base64 -w0)"; }

html="$TRUNK_STAGING_DIR/index.html"
# The minifiers, each from the file $1 to the file $2.
terser() { "$TERSER" "$1" --module --compress --mangle --output "$2"; }
lightningcss() { "$LIGHTNINGCSS" --minify "$1" --output-file "$2"; }

# Minifies the file $2 in place with the function $1, and rewrites its
# integrity hash in index.html.
minify() {
    local with="$1" file="$2" before after
    before="$(sri "$file")"
    "$with" "$file" "$file.min"
    mv "$file.min" "$file"
    after="$(sri "$file")"
    if ! grep -qF "$before" "$html"; then
        echo "minify: $html has no integrity $before for $(basename "$file")" >&2
        exit 1
    fi
    sed -i "s|$before|$after|g" "$html"
}

for js in "$TRUNK_STAGING_DIR"/*.js; do
    minify terser "$js"
done
for css in "$TRUNK_STAGING_DIR"/*.css; do
    minify lightningcss "$css"
done
