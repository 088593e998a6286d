#!/usr/bin/env bash
# Used by `make demo`: start the local broker if this machine has one, and otherwise a
# clear word on how to get one instead of a stack trace.
if [ "$(id -u)" = 0 ] && command -v rabbitmq-server >/dev/null; then
  bash "$(dirname "$0")/setup-machine.sh" --broker-only >/dev/null 2>&1 || true
fi
if ! (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; then
  cat >&2 <<'MSG'
docex demo: no RabbitMQ is listening on 127.0.0.1:5672.
Get one in either of these ways, then run `make demo` again:
  - with Docker:  docker compose up -d rabbitmq
  - on Debian:    sudo apt-get install rabbitmq-server && sudo rabbitmq-server -detached
                  sudo rabbitmq-plugins enable rabbitmq_management rabbitmq_prometheus rabbitmq_shovel
MSG
  exit 1
fi
if ! curl -fsS -u guest:guest http://127.0.0.1:15672/api/overview >/dev/null 2>&1; then
  cat >&2 <<'MSG'
docex demo: RabbitMQ runs, but its management API (port 15672) does not answer.
Enable it, then run `make demo` again:
  sudo rabbitmq-plugins enable rabbitmq_management rabbitmq_prometheus rabbitmq_shovel
MSG
  exit 1
fi
