#!/bin/bash
# A/B of two fastws trees on one wsload scenario, in alternating pairs: each run starts a
# fresh server from one tree (pinned to CPU 0, PYTHONPATH=TREE, an app of bench/apps: APP,
# default echo:app) and drives it with wsload on CPU 1; one line per run (rate, latency,
# server CPU ticks over the whole run). Build both trees first (make build, or
# setup.py build_ext --inplace in a worktree).
#
#   bench/ab.sh PAIRS "WSLOAD MODE AND ARGS" TREE_A TREE_B
#   bench/ab.sh 3 "echo -c 4 -s 16384 -b" /tmp/base "$PWD"
#   APP=fanout_asgi:app bench/ab.sh 2 "fanout -c 5000 -s 64 -w 1 --src-addrs 127.0.0.1-127.0.0.4" /tmp/base .
set -euo pipefail
PAIRS=$1; ARGS=$2; A=$(realpath "$3"); B=$(realpath "$4")
HERE=$(dirname "$(realpath "$0")")
PY=${PY:-$HERE/../.venv/bin/python}
APP=${APP:-echo:app}
WSLOAD=$HERE/load/wsload
port=${PORT:-9400}
for _ in $(seq 1 "$PAIRS"); do
  for tree in "$A" "$B"; do
    port=$((port + 1))
    cd "$tree/bench/apps"
    PYTHONPATH=$tree taskset -c 0 "$PY" -m fastws "$APP" --host 127.0.0.1 --port $port \
      --http httptools --loop uvloop --no-access-log --log-level warning >/dev/null 2>&1 &
    server=$!
    for _ in $(seq 1 100); do
      "$PY" -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2).close()" \
        2>/dev/null && break
      sleep 0.1
    done
    before=$(awk '{print $14 + $15}' /proc/$server/stat)
    # shellcheck disable=SC2086  # ARGS is a list of wsload options
    out=$(taskset -c 1 "$WSLOAD" $ARGS -p $port -W 0.5 -d 2 2>/dev/null | tail -1)
    after=$(awk '{print $14 + $15}' /proc/$server/stat)
    kill $server; wait $server 2>/dev/null || true
    figures=$(echo "$out" | "$PY" -c "import json, sys; d = json.loads(sys.stdin.read()); print(' '.join(f'{k}={d[k]}' for k in ('msgs_per_s', 'mb_per_s', 'deliveries_per_s', 'lat_p50_us', 'lat_p99_us') if k in d))")
    echo "$tree $figures server_cpu_ticks=$((after - before))"
  done
done
