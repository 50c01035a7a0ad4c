#!/usr/bin/env bash
# Installs the Debian tools the tests run for real: promtool (Debian's
# `prometheus` package) to check the alert rules, dpkg-deb, fakeroot
# and cargo-deb's needs for the Debian package, and PHP with Symfony Mailer,
# the real client of `mailroom sendmail -bs`. Skips what is there.
set -euo pipefail

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "debian-tools.sh: need root (or sudo) to install $*" >&2; return 1
  fi
}

missing=()
command -v promtool >/dev/null || missing+=(prometheus)
command -v dpkg-deb >/dev/null || missing+=(dpkg)
command -v php >/dev/null || missing+=(php-cli)
[ -f /usr/share/php/Symfony/Component/Mailer/autoload.php ] || missing+=(php-symfony-mailer)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "[setup] installing ${missing[*]} from Debian"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq >/dev/null || true
  # No recommends: only the binaries; the prometheus service is not needed.
  as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
promtool --version 2>&1 | head -1
php --version | head -1
