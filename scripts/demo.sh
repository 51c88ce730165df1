#!/usr/bin/env bash
# `make demo`: the app against the built-in fake exchange, in its own data directory.
# Usage: scripts/demo.sh PYTHON DATA_DIR EXCHANGE_PORT RATE HOST PORT
set -euo pipefail
python=$1 data_dir=$2 exchange_port=$3 rate=$4 host=$5 port=$6
export ORDERFOX_DATA_DIR=$data_dir
mkdir -p "$data_dir"

"$python" manage.py migrate --no-input -v0
if DJANGO_SUPERUSER_PASSWORD=demo "$python" manage.py createsuperuser --no-input \
    --username demo --email demo@example.invalid >/dev/null 2>&1; then
  echo "Demo admin user created: demo / demo (only in $data_dir)"
fi

"$python" manage.py fake_exchange --host 127.0.0.1 --port "$exchange_port" --rate "$rate" \
  --venues binance,bybit,okx &
exchange=$!
# Stop the exchange however we leave (Ctrl-C reaches serve; the trap ends the exchange).
trap 'kill "$exchange" 2>/dev/null || true; wait "$exchange" 2>/dev/null || true' EXIT

for _ in $(seq 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$exchange_port") 2>/dev/null; then break; fi
  if ! kill -0 "$exchange" 2>/dev/null; then
    echo "The fake exchange did not start (port $exchange_port busy? set DEMO_EXCHANGE_PORT)" >&2
    exit 1
  fi
  sleep 0.1
done

echo "Dashboard: http://$host:$port/   admin: http://$host:$port/admin/   (Ctrl-C stops both)"
# Binance, Bybit and OKX, all three from the fake exchange: nothing leaves the machine.
LIQUIDATION_VENUES=binance,bybit,okx \
BINANCE_WS_BASE_URL="ws://127.0.0.1:$exchange_port/market" \
BINANCE_WS_PUBLIC_URL="ws://127.0.0.1:$exchange_port/public" \
BINANCE_REST_BASE_URL="http://127.0.0.1:$exchange_port" \
BYBIT_WS_URL="ws://127.0.0.1:$exchange_port/v5/public/linear" \
BYBIT_REST_BASE_URL="http://127.0.0.1:$exchange_port" \
OKX_WS_URL="ws://127.0.0.1:$exchange_port/ws/v5/public" \
OKX_REST_BASE_URL="http://127.0.0.1:$exchange_port" \
HOST=$host PORT=$port "$python" manage.py serve
