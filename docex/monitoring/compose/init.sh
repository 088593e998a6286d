#!/bin/sh
# One-time set-up of the compose stack (the `init` service): hub home with its CA, broker
# topology and PostgreSQL schema, a dashboard login, the units of units.csv with their
# agent homes, the TSA's certificate. Runs as the docex user with the shared /data
# volume; does nothing when it already ran. Keep in step with `docex hub --help`.
set -eu

HUB=/data/hub
if [ -e "$HUB/.compose-initialised" ]; then
  echo "docex init: already initialised, nothing to do"
  exit 0
fi
: "${DOCEX_PASSPHRASE:?set DOCEX_PASSPHRASE: it encrypts every key at rest}"

echo "docex init: hub home, county CA, broker vhost and topology, database"
docex hub init --home "$HUB" --prefix qingyuan.yangshan --name 阳山县公文交换中心 \
  --amqp "$DOCEX_AMQP_URL" --management-url "$DOCEX_MANAGEMENT_URL" --db "$DOCEX_DATABASE_URL"

# Inside the stack other containers reach the hub's API and the broker by service name.
python - <<'PY'
import tomllib, tomli_w
path = "/data/hub/docex.toml"
with open(path, "rb") as fh:
    config = tomllib.load(fh)
config.setdefault("api", {})["host"] = "0.0.0.0"
config["broker"]["agent_host"] = "rabbitmq"
# Units log in over TLS by certificate (the broker-tls service configured the broker; the
# broker-register service adds this hub's CA to its bundle once init is done).
config["broker"]["tls_port"] = 5671
config["broker"]["tls_ca"] = "broker-ca.crt"
with open(path, "wb") as fh:
    tomli_w.dump(config, fh)
PY
cp /data/broker-ca/ca.crt "$HUB/broker-ca.crt"

echo "docex init: dashboard login for the information centre"
umask 077
printf '%s\n' "${DOCEX_DASHBOARD_PASSWORD:?set DOCEX_DASHBOARD_PASSWORD}" > /tmp/dashboard-password
docex hub user add --home "$HUB" --name "${DOCEX_DASHBOARD_USER:-xxzx}" --password-file /tmp/dashboard-password
rm -f /tmp/dashboard-password

echo "docex init: directory of units and their agent homes"
docex unit import --home "$HUB" /opt/docex-units.csv --out /data/agents

echo "docex init: time-stamping authority"
mkdir -p /data/tsa
python - <<'PY'
import os
from docex.pki.ca import CertificateAuthority
passphrase = os.environ["DOCEX_PASSPHRASE"].encode()
ca = CertificateAuthority.open("/data/hub/ca", passphrase)
ca.issue_tsa("阳山县信息中心时间戳服务", "/data/tsa", passphrase)
PY

# The link is made at the parent: `docex link create` on the city's hub home writes the
# bridge's home (/data/bridge); the bridge service then attaches itself to this hub
# (`docex bridge run --hub`). In this stack the city is a second vhost on the same broker.
echo "docex init: the city exchange's hub home (vhost qingyuan) and the link to it"
CITY=/data/city
docex hub init --home "$CITY" --prefix qingyuan --name 清远市公文交换中心 \
  --amqp "$DOCEX_AMQP_URL" --management-url "$DOCEX_MANAGEMENT_URL" --vhost qingyuan
python - <<'PY'
import tomllib, tomli_w
path = "/data/city/docex.toml"
with open(path, "rb") as fh:
    config = tomllib.load(fh)
config["broker"]["agent_host"] = "rabbitmq"  # the bridge reaches the city's broker by service name
with open(path, "wb") as fh:
    tomli_w.dump(config, fh)
PY
docex link create --home "$CITY" --child qingyuan.yangshan --out /data/bridge --child-ca "$HUB/ca/ca.crt"

touch "$HUB/.compose-initialised"
echo "docex init: done"
