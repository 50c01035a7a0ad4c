#!/bin/sh
# Installs Debian's Postfix for `cargo xtask bench`'s comparison with the
# relay, and sets it up to queue and keep mail: loopback only, everything
# relayed from 127.0.0.0/8, and `defer_transports = smtp`, so nothing leaves
# the machine and every message stays in Postfix's queue (as Mailroom's relay
# keeps them with delivery paused). Skips what is already done.
set -eu
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v smtp-source >/dev/null 2>&1 || ! command -v postconf >/dev/null 2>&1; then
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postfix >/dev/null
fi
as_root postconf -e \
  'inet_interfaces = loopback-only' \
  'inet_protocols = ipv4' \
  'mydestination =' \
  'mynetworks = 127.0.0.0/8' \
  'defer_transports = smtp' \
  'smtpd_tls_security_level = none' \
  'smtpd_client_connection_rate_limit = 0' \
  'smtpd_client_connection_count_limit = 0' \
  'smtpd_client_message_rate_limit = 0' \
  'default_process_limit = 100'
if as_root postfix status >/dev/null 2>&1; then
  as_root postfix reload >/dev/null 2>&1
else
  as_root postfix start >/dev/null 2>&1
fi
as_root postsuper -d ALL >/dev/null 2>&1 || true
echo "postfix.sh: Postfix queueing on 127.0.0.1:25 (defer_transports = smtp)"
