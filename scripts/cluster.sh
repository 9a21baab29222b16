#!/usr/bin/env bash
# A local three-broker cluster on 127.0.0.1 sharing one metadata quorum:
#   scripts/cluster.sh start   builds release, starts brokers 1-3 (Kafka 19092-19094,
#                              controllers 19192-19194, metrics 19644-19646)
#   scripts/cluster.sh stop    stops them (SIGTERM: clean shutdown)
#   scripts/cluster.sh status  shows which are running
# Data under cluster/data-N, logs under cluster/logs/broker-N.log (both git-ignored), or
# under $CLUSTER_ROOT. Topics get three replicas by default (default.replication.factor is
# min(3, brokers)); extra broker properties for every node: CLUSTER_SET="k=v k=v".
set -euo pipefail
cd "$(dirname "$0")/.."
root=${CLUSTER_ROOT:-cluster}
sets=()
for kv in ${CLUSTER_SET:-}; do sets+=(--set "$kv"); done
voters="1@127.0.0.1:19192,2@127.0.0.1:19193,3@127.0.0.1:19194"

case "${1:-}" in
start)
    cargo build --release -p cairn
    bin="${CARGO_TARGET_DIR:-target}/release/cairn"
    mkdir -p "$root/logs"
    for n in 1 2 3; do
        pidfile="$root/broker-$n.pid"
        if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
            echo "broker $n already running (pid $(cat "$pidfile"))"
            continue
        fi
        "$bin" serve --node-id "$n" --data-dir "$root/data-$n" \
            --listen "127.0.0.1:$((19091 + n))" \
            --controller-listen "127.0.0.1:$((19191 + n))" --voters "$voters" \
            --metrics-listen "127.0.0.1:$((19643 + n))" "${sets[@]}" \
            >"$root/logs/broker-$n.log" 2>&1 &
        echo $! >"$pidfile"
        echo "broker $n: kafka 127.0.0.1:$((19091 + n)), pid $!, log $root/logs/broker-$n.log"
    done
    echo "bootstrap: 127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094"
    ;;
stop)
    for n in 1 2 3; do
        pidfile="$root/broker-$n.pid"
        [ -f "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        if kill -TERM "$pid" 2>/dev/null; then
            while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
            echo "broker $n stopped"
        fi
        rm -f "$pidfile"
    done
    ;;
status)
    for n in 1 2 3; do
        pidfile="$root/broker-$n.pid"
        if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
            echo "broker $n running (pid $(cat "$pidfile"))"
        else
            echo "broker $n stopped"
        fi
    done
    ;;
*)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
