#!/usr/bin/env bash
# Installs every tool Mailroom needs to build (and, with --with-browser, to
# test), skipping what is already there at the right version. Safe to run
# again; a second run takes seconds.
#
# Tools land outside the repository (~/.cargo/bin and $MAILROOM_TOOLS), so later
# runs on the same machine reuse them.
set -euo pipefail

cd "$(dirname "$0")/.."
TOOLS="${MAILROOM_TOOLS:-$HOME/.cache/mailroom-tools}"
TRUNK_VERSION="0.21.14"
mkdir -p "$TOOLS"

log() { printf '[setup] %s\n' "$*"; }

# The wasm-bindgen CLI must match the library version exactly, so read it from
# Cargo.lock (generating the lock file first on a fresh clone).
wasm_bindgen_version() {
    [ -f Cargo.lock ] || cargo generate-lockfile >/dev/null
    awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock
}

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    log "adding the wasm32-unknown-unknown target"
    # The pinned toolchain may be a link to the machine's stable one, which
    # rustup cannot add targets to by that name.
    rustup target add wasm32-unknown-unknown || rustup +stable target add wasm32-unknown-unknown
fi

WITH_BROWSER=0
[ "${1:-}" = "--with-browser" ] && WITH_BROWSER=1

if [ "$WITH_BROWSER" = 1 ] && { ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; }; then
    log "installing Chromium and ChromeDriver from Debian"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium chromium-driver >/dev/null
fi

if [ "$(trunk --version 2>/dev/null || true)" != "trunk $TRUNK_VERSION" ]; then
    log "installing trunk $TRUNK_VERSION (about 10 minutes on 2 cores)"
    cargo install trunk --version "$TRUNK_VERSION" --locked --no-default-features --features rustls
fi

WB_VERSION="$(wasm_bindgen_version)"
if [ "$(wasm-bindgen --version 2>/dev/null || true)" != "wasm-bindgen $WB_VERSION" ] \
    || ! command -v wasm-bindgen-test-runner >/dev/null; then
    log "installing wasm-bindgen-cli $WB_VERSION (about 4 minutes)"
    # Not --locked: one locked dependency of the CLI is missing from the registry.
    cargo install wasm-bindgen-cli --version "$WB_VERSION" --force
fi

# Debian's binaryen is too old for current Rust output; the npm build works.
if [ ! -x "$TOOLS/node_modules/.bin/wasm-opt" ]; then
    log "installing wasm-opt (npm binaryen) into $TOOLS"
    (cd "$TOOLS" && npm install --silent --no-audit --no-fund binaryen@132 >/dev/null)
fi

# The JS and CSS minifiers of release builds (scripts/minify.sh, a Trunk hook).
if [ ! -x "$TOOLS/node_modules/.bin/terser" ]; then
    log "installing terser (npm) into $TOOLS"
    (cd "$TOOLS" && npm install --silent --no-audit --no-fund terser@5 >/dev/null)
fi
if [ ! -x "$TOOLS/node_modules/.bin/lightningcss" ]; then
    log "installing lightningcss (npm) into $TOOLS"
    (cd "$TOOLS" && npm install --silent --no-audit --no-fund lightningcss-cli@1 >/dev/null)
fi

# The accessibility engine the browser tests audit each view with.
if [ "$WITH_BROWSER" = 1 ] && [ ! -f "$TOOLS/node_modules/axe-core/axe.min.js" ]; then
    log "installing axe-core (npm) into $TOOLS"
    (cd "$TOOLS" && npm install --silent --no-audit --no-fund axe-core@4 >/dev/null)
fi

log "all tools present"
