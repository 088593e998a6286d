#!/usr/bin/env bash
# The operations guide, followed on a clean machine state: install docex from a wheelhouse
# into a fresh virtualenv with NO package index, then bring up a hub with two agents on the
# local RabbitMQ and deliver one document. Used by tests/test_offline_install.py (slow).
#   WHEELHOUSE=dir (default: build one with `pip wheel` first, as `make wheelhouse` does)
#   KEEP=1 keeps the work folder. Cleans up its own vhost, broker users and processes.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/docex-offline.XXXXXX)
tag="off$(date +%s)$$"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  curl -s -u guest:guest -X DELETE "http://127.0.0.1:15672/api/vhosts/docex-$tag" >/dev/null || true
  # every broker login this run made (hub init makes the hub's and an admin's, import one per unit)
  curl -s -u guest:guest "http://127.0.0.1:15672/api/users" \
    | python3 -c 'import json, sys; [print(u["name"]) for u in json.load(sys.stdin) if u["name"].startswith(sys.argv[1])]' "$tag." \
    | while read -r user; do curl -s -u guest:guest -X DELETE "http://127.0.0.1:15672/api/users/$user" >/dev/null || true; done
  [ "${KEEP:-0}" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 143' TERM INT  # a stopped test still cleans up (the EXIT trap runs)

wheels=${WHEELHOUSE:-}
if [ -z "$wheels" ]; then
  wheels="$work/wheelhouse"
  echo "== building the wheelhouse (needs the package index once, like make wheelhouse)"
  "${PYTHON:-python3}" -m pip wheel -q --wheel-dir "$wheels" "$here"
fi

echo "== installing with no package index into a fresh venv"
python3 -m venv "$work/venv"
PIP_CONFIG_FILE=/dev/null "$work/venv/bin/pip" install -q --no-index --find-links "$wheels" docex
docex="$work/venv/bin/docex"
cd "$work"  # nothing from the source tree on the path

echo "== hub init, two units"
"$docex" hub init --home hub --prefix qingyuan.offline --name 离线安装测试中心 --vhost "docex-$tag" \
  --user-prefix "$tag." --insecure-no-passphrase
# the unit list as WPS saves it (GBK, comma): every home written knows both units
printf '地址,名称\r\nqingyuan.offline.xxzx,信息中心\r\nqingyuan.offline.zfb,政府办\r\n' | iconv -f utf-8 -t gbk > units.csv
"$docex" unit import --home hub units.csv --out agents --insecure-no-passphrase
mv agents/qingyuan.offline.xxzx agents/xxzx && mv agents/qingyuan.offline.zfb agents/zfb
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

echo "== running hub and agents"
"$docex" hub run --home hub --api-port "$port" --metrics-port 0 >hub.log 2>&1 & pids+=($!)
"$docex" agent run --home agents/xxzx >xxzx.log 2>&1 & pids+=($!)
"$docex" agent run --home agents/zfb >zfb.log 2>&1 & pids+=($!)

echo "会议通知" > 通知.txt
mid=$("$docex" send --home agents/xxzx --to qingyuan.offline.zfb --title 离线安装测试 --doc-number 测〔2026〕1号 通知.txt)
echo "== sent $mid; waiting for delivery"
for _ in $(seq 1 300); do
  if "$docex" inbox --home agents/zfb --json | grep -q "$mid"; then
    "$docex" sign-for --home agents/zfb "${mid:0:8}" --json
    for _ in $(seq 1 300); do
      if "$docex" track --home hub "$mid" --json | grep -q '"state": "signed_for"'; then
        "$docex" audit verify --home hub
        echo "OK: installed offline, delivered and signed for"
        exit 0
      fi
      sleep 1
    done
    break
  fi
  sleep 1
done
echo "FAILED: not delivered; logs:" >&2
tail -n 30 hub.log xxzx.log zfb.log >&2
exit 1
