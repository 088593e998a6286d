#!/usr/bin/env bash
# Brings this machine to what docex's tests need: Debian tools, running services,
# RabbitMQ plugins. Idempotent; safe to run on every `make test`.
set -uo pipefail
# --broker-only: just RabbitMQ and its plugins (what `make demo` needs).
broker_only=0
[ "${1:-}" = "--broker-only" ] && broker_only=1
need_apt=()
command -v openssl >/dev/null || need_apt+=(openssl)
# OpenSSL before 3.0.22 (3.5.x before its 2026-08 release) cannot parse the authAttrs of an
# AuthEnvelopedData (openssl#26101, fixed by #31695): docex's envelopes carry them (RFC 5083).
openssl_ok=$(openssl version 2>/dev/null | awk '{split($2,v,"."); split(v[3],p,/[^0-9]/); print (v[1]>3 || (v[1]==3 && v[2]>0) || p[1]>=22) ? 1 : 0}')
[ "${openssl_ok:-0}" = 1 ] || need_apt+=(openssl libssl3)
command -v pdfsig >/dev/null || need_apt+=(poppler-utils)
command -v pdftoppm >/dev/null || need_apt+=(poppler-utils)
command -v chromium >/dev/null || need_apt+=(chromium)
command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
command -v promtool >/dev/null || need_apt+=(prometheus)
[ -d /usr/share/fonts/opentype/noto ] || need_apt+=(fonts-noto-cjk)
[ -f /usr/share/fonts/truetype/arphic/ukai.ttc ] || need_apt+=(fonts-arphic-ukai)  # 楷体 stand-in (GB/T 9704 compose)
command -v certutil >/dev/null || need_apt+=(libnss3-tools)  # NSS db for pdfsig seal tests
command -v systemd-analyze >/dev/null || need_apt+=(systemd)  # verifies deploy/systemd/*.service
if [ $broker_only = 0 ] && [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# Services that this kind of machine normally starts; restart any that stopped.
if ! (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; then
  echo "setup: starting RabbitMQ"
  rabbitmq-server -detached
  for _ in $(seq 1 60); do (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null && break; sleep 1; done
fi
if [ $broker_only = 0 ] && ! (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
  echo "setup: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
fi

# Broker plugins the project relies on: management (per-unit users through the HTTP
# API), prometheus (broker metrics), shovel (link backlog moves), ssl auth (production).
plugins=(rabbitmq_management rabbitmq_prometheus rabbitmq_shovel rabbitmq_shovel_management rabbitmq_auth_mechanism_ssl)
enabled=$(cat /etc/rabbitmq/enabled_plugins 2>/dev/null || true)
missing=()
for p in "${plugins[@]}"; do [[ "$enabled" == *"$p"* ]] || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: enabling RabbitMQ plugins: ${missing[*]}"
  rabbitmq-plugins enable --quiet "${missing[@]}" >/dev/null
fi
for _ in $(seq 1 60); do
  curl -fsS -u guest:guest http://127.0.0.1:15672/api/overview >/dev/null 2>&1 && break
  sleep 1
done

# TLS with certificate logins (`docex broker tls`): units and bridges log in on 127.0.0.1:5671
# with their client certificates; plain 5672 stays for the hubs' own localhost logins and
# guest. The broker's server certificate comes from this machine's own broker CA; the tests'
# hubs register their fresh CAs later without a restart. Restarts RabbitMQ only the first time.
# RabbitMQ is started through `su rabbitmq`, whose login resets the soft limit of open files to
# 1024 (832 sockets): too few for 125 agents beside a test suite. Its env file raises it to the
# hard limit at the node's next start.
envconf=/etc/rabbitmq/rabbitmq-env.conf
if [ "$(id -u)" = 0 ] && [ -d /etc/rabbitmq ] && ! grep -q "docex: open files" "$envconf" 2>/dev/null; then
  echo 'ulimit -S -n "$(ulimit -H -n)" 2>/dev/null || true  # docex: open files' >> "$envconf"
fi
repo="$(cd "$(dirname "$0")/.." && pwd)"
py="${DOCEX_PYTHON:-$repo/.venv/bin/python}"
if [ -x "$py" ] && [ "$(id -u)" = 0 ]; then
  ca=/var/lib/docex/broker-ca
  if [ ! -f "$ca/ca.crt" ]; then
    mkdir -p /var/lib/docex && chmod 700 /var/lib/docex
    # This machine's test broker only: its CA key is unencrypted, root-only.
    "$py" -m docex.cli.main pki init --dir "$ca" --name "docex 本机消息服务器 broker" --insecure-no-passphrase >/dev/null
  fi
  flock /tmp/docex-broker.lock "$py" -m docex.cli.main broker tls --server-ca "$ca" --insecure-no-passphrase \
    --listen 127.0.0.1:5671 | sed 's/^/setup: broker tls: /'
else
  echo "setup: broker TLS not configured (needs root and $py; run \`docex broker tls\` by hand)"
fi
exit 0
