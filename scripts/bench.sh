#!/usr/bin/env bash
# `just bench` (or `bash scripts/bench.sh`): the standard end-to-end load figures of a
# fresh single Cairn broker, next to this machine's raw disk and loopback limits measured
# by the same script in the same run, so every figure is also a ratio to those limits.
#
# It builds release binaries, starts `cairn serve` on a temporary data directory and a
# free port, runs `cairn-bench` (benches/load) once per configuration, writes one JSON
# file per run to bench-results/ (git-ignored; earlier *.json there are removed first),
# stops the broker, deletes the data directory and prints `cairn-bench report`.
#
# Bounded in time: each run stops after BENCH_SECONDS (default 10) or a modest byte
# count; the whole set takes about four minutes after the build. The raw-disk scratch
# files go next to the broker's data directory (under TMPDIR), i.e. on the same disk.
#
# Environment: CARGO_TARGET_DIR (where cargo puts binaries), BENCH_RESULTS (output
# directory, default bench-results), BENCH_SECONDS (seconds per broker run), TMPDIR.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
out=${BENCH_RESULTS:-$root/bench-results}
secs=${BENCH_SECONDS:-10}
# A failed run prints its error, not a page of backtrace.
export RUST_BACKTRACE=0

echo "== building release binaries"
# Installs what the build needs when missing (libclang for RocksDB's bindings, g++ ...).
cargo xtask setup
cargo build --release -p cairn -p cairn-bench
cairn=$target/release/cairn
bench=$target/release/cairn-bench

work=$(mktemp -d "${TMPDIR:-/tmp}/cairn-bench.XXXXXX")
broker=
cluster_started=
cleanup() {
    if [[ -n $cluster_started ]]; then
        scripts/cluster.sh stop >/dev/null 2>&1 || true
    fi
    if [[ -n $broker ]] && kill -0 "$broker" 2>/dev/null; then
        kill -TERM "$broker" 2>/dev/null || true
        wait "$broker" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$out"
rm -f "$out"/*.json

echo "== machine: $(nproc) CPUs, $(uname -sr); $(uptime)"
df -h "$work" | tail -1 | awk '{print "== scratch disk: " $1 " (" $4 " free) for " $6}'

# run FILE-PREFIX NAME SUBCOMMAND ARGS...: one cairn-bench run, its JSON in $out.
run() {
    local prefix=$1 name=$2
    shift 2
    echo
    echo ">> cairn-bench $*"
    "$bench" "$@" --name "$name" --json "$out/$prefix-$name.json"
}

# drop BOOTSTRAP TOPIC: deletes a topic no later run reads, so that the disk holds one
# run's data at a time (a 10 s run at 1 KiB writes several GB on a fast machine).
drop() {
    "$cairn" topic delete --bootstrap "$1" "$2" >/dev/null ||
        echo "(could not delete $2; its data stays until the end)" >&2
}

broker_rss() {
    awk '/^VmRSS|^VmHWM/ {printf "%s %s %s  ", $1, $2, $3} END {print ""}' "/proc/$broker/status"
}

# The machine's limits first, while nothing else of ours is running.
run 01 raw-loopback raw-loopback --total-bytes 4GiB
run 02 raw-disk-1m raw-disk --dir "$work" --block-bytes 1MiB --total-bytes 2GiB --duration-s "$secs"
run 03 raw-disk-1m-sync raw-disk --dir "$work" --block-bytes 1MiB --total-bytes 2GiB --fdatasync --duration-s "$secs"
run 04 raw-disk-16k raw-disk --dir "$work" --block-bytes 16KiB --total-bytes 1GiB --duration-s "$secs"
run 05 raw-disk-16k-sync raw-disk --dir "$work" --block-bytes 16KiB --total-bytes 1GiB --fdatasync --duration-s "$secs"

port=$("$bench" free-port)
bootstrap=127.0.0.1:$port
echo
echo "== starting cairn serve on $bootstrap, data in $work/data (log: $work/broker.log)"
mkdir -p "$work/data"
"$cairn" serve --data-dir "$work/data" --listen "$bootstrap" >"$work/broker.log" 2>&1 &
broker=$!
for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
    if ! kill -0 "$broker" 2>/dev/null; then
        cat "$work/broker.log"
        echo "cairn serve exited" >&2
        exit 1
    fi
    sleep 0.1
done
echo "== broker pid $broker: $(broker_rss)"

k=(--bootstrap "$bootstrap")
# Throughput: 1 KiB records, as fast as librdkafka goes (linger 5 ms, its default batch).
# These runs are closed loop, so their ack latency is mostly the time a record waits in
# librdkafka's own queue (queue.buffering.max.messages, 100,000 by default) — about that
# depth divided by the throughput; the end-to-end runs below are the latency figures.
run 10 produce-1k-acks1-p1 produce "${k[@]}" --topic p1-acks1 --partitions 1 --acks 1 --duration-s "$secs"
drop "$bootstrap" p1-acks1
run 11 produce-1k-acksall-p1 produce "${k[@]}" --topic p1-acksall --partitions 1 --acks all --duration-s "$secs"
drop "$bootstrap" p1-acksall
run 12 produce-1k-acks1-p6 produce "${k[@]}" --topic p6-acks1 --partitions 6 --acks 1 --duration-s "$secs"
drop "$bootstrap" p6-acks1
run 13 produce-1k-acksall-p6 produce "${k[@]}" --topic p6-acksall --partitions 6 --acks all --duration-s "$secs"
# Per-record overhead: 100-byte records.
run 14 produce-100b-acks1-p1 produce "${k[@]}" --topic small-acks1 --partitions 1 --acks 1 --record-bytes 100 --duration-s "$secs"
drop "$bootstrap" small-acks1
run 15 produce-100b-acksall-p6 produce "${k[@]}" --topic small-acksall --partitions 6 --acks all --record-bytes 100 --duration-s "$secs"
drop "$bootstrap" small-acksall
# Exactly-once: one idempotent producer vs one transactional producer committing every
# 100 records (the ratio of the two is the cost of transactions).
run 16 produce-1k-idempotent-p6 produce "${k[@]}" --topic p6-idem --partitions 6 --set enable.idempotence=true --duration-s "$secs"
drop "$bootstrap" p6-idem
run 17 produce-1k-txn100-p6 produce "${k[@]}" --topic p6-txn --partitions 6 --transaction-records 100 --duration-s "$secs"
drop "$bootstrap" p6-txn
echo "== broker after produce runs: $(broker_rss); data $(du -sh "$work/data" | cut -f1)"
# Reads from the page cache: the topic just written.
run 20 consume-1k-p6 consume "${k[@]}" --topic p6-acksall --records 5000000 --timeout-s 20
# Latency at a fixed rate, durable: linger 0, acks=all. The runs above left gigabytes of
# dirty pages that the kernel writes back for many seconds; each latency run starts on a
# drained disk (`sync`), or it would measure that backlog's fdatasyncs, not the broker's.
sync
run 30 e2e-10k-acksall-p1 end-to-end "${k[@]}" --topic e2e-10k --partitions 1 --acks all --linger-ms 0 --rate 10000 --duration-s "$secs"
drop "$bootstrap" e2e-10k
# At a low rate every record lands on a parked Fetch: the long-poll wake-up latency,
# with and without the fdatasync that acks=all waits for.
sync
run 31 e2e-100-acksall-p1 end-to-end "${k[@]}" --topic e2e-100 --partitions 1 --acks all --linger-ms 0 --rate 100 --duration-s 5
drop "$bootstrap" e2e-100
run 32 e2e-100-acks1-p1 end-to-end "${k[@]}" --topic e2e-100-acks1 --partitions 1 --acks 1 --linger-ms 0 --rate 100 --duration-s 5
drop "$bootstrap" e2e-100-acks1
echo "== broker at the end: $(broker_rss); data $(du -sh "$work/data" | cut -f1)"

kill -TERM "$broker"
wait "$broker" || true
broker=

# Three brokers on this one machine (they share its 2 cores and one disk, so these are
# the cost of replication, not a cluster's capacity): replication factor 3,
# min.insync.replicas 2; acks=all waits for all three replicas to fsync.
echo
echo "== starting a 3-broker cluster (scripts/cluster.sh, data in $work/cluster)"
export CLUSTER_ROOT=$work/cluster
scripts/cluster.sh start >/dev/null
cluster_started=1
c=(--bootstrap 127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094 --replication-factor 3)
for _ in $(seq 1 100); do
    if "$cairn" topic list --bootstrap 127.0.0.1:19092 >/dev/null 2>&1; then break; fi
    sleep 0.2
done
run 40 rf3-produce-1k-acks1-p6 produce "${c[@]}" --topic rf3-acks1 --partitions 6 --acks 1 --duration-s "$secs"
drop 127.0.0.1:19092 rf3-acks1
run 41 rf3-produce-1k-acksall-p6 produce "${c[@]}" --topic rf3-acksall --partitions 6 --acks all --duration-s "$secs"
run 42 rf3-consume-1k-p6 consume "${c[@]}" --topic rf3-acksall --records 5000000 --timeout-s 20
sync
run 43 rf3-e2e-1k-acksall-p1 end-to-end "${c[@]}" --topic rf3-e2e --partitions 1 --acks all --linger-ms 0 --rate 1000 --duration-s "$secs"
scripts/cluster.sh stop >/dev/null
cluster_started=

echo
echo "== $(uptime)"
echo "== results in $out"
"$bench" report "$out"
