#!/usr/bin/env bash
# `bash scripts/compare.sh OLD_CAIRN NEW_CAIRN [cairn-bench produce flags...]`: compares two
# broker binaries in one run, as a ratio. Each round starts a fresh single broker of each
# binary in turn (temporary data directory, free port), runs the same `cairn-bench produce`
# (or consume, MODE below) against it, and stops it; rounds alternate the order so that a machine getting busier
# or quieter during the run does not favour one side. Prints each run's records/s and the
# NEW/OLD ratio of the medians.
#
# Environment: ROUNDS (default 3), BENCH (the cairn-bench binary, default
# $CARGO_TARGET_DIR/release/cairn-bench or target/release/cairn-bench), TMPDIR,
# MODE (`produce`, the default, or `consume`: each broker is first filled with FILL
# records (default 2,000,000 of 1 KiB, 6 partitions, acks=1), then read back from the
# page cache by `cairn-bench consume`, whose records/s are compared).
# Default flags: produce 1 KiB records, 6 partitions, acks=all, 8 s per run; consume
# every record filled, 30 s at most.
set -euo pipefail

if [[ $# -lt 2 ]]; then
    echo "usage: $0 OLD_CAIRN NEW_CAIRN [cairn-bench produce flags...]" >&2
    exit 2
fi
old=$1
new=$2
shift 2
flags=("$@")
mode=${MODE:-produce}
fill=${FILL:-2000000}
if [[ ${#flags[@]} -eq 0 ]]; then
    case $mode in
    produce) flags=(--partitions 6 --acks all --duration-s 8) ;;
    consume) flags=(--records "$fill" --timeout-s 30) ;;
    *)
        echo "MODE must be produce or consume" >&2
        exit 2
        ;;
    esac
fi
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bench=${BENCH:-${CARGO_TARGET_DIR:-$root/target}/release/cairn-bench}
rounds=${ROUNDS:-3}
work=$(mktemp -d "${TMPDIR:-/tmp}/cairn-compare.XXXXXX")
broker=
cleanup() {
    if [[ -n $broker ]] && kill -0 "$broker" 2>/dev/null; then
        kill -TERM "$broker" 2>/dev/null || true
        wait "$broker" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# one BINARY LABEL: one fresh broker, one produce run; prints records/s.
one() {
    local binary=$1 label=$2 port
    port=$("$bench" free-port)
    rm -rf "$work/data"
    mkdir -p "$work/data"
    "$binary" serve --data-dir "$work/data" --listen "127.0.0.1:$port" >"$work/$label.log" 2>&1 &
    broker=$!
    for _ in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
        sleep 0.1
    done
    if [[ $mode == consume ]]; then
        "$bench" produce --bootstrap "127.0.0.1:$port" --topic compare --partitions 6 \
            --acks 1 --records "$fill" >/dev/null
        "$bench" consume --bootstrap "127.0.0.1:$port" --topic compare "${flags[@]}" \
            --json "$work/$label.json" >/dev/null
    else
        "$bench" produce --bootstrap "127.0.0.1:$port" --topic compare "${flags[@]}" \
            --json "$work/$label.json" >/dev/null
    fi
    kill -TERM "$broker"
    wait "$broker" || true
    broker=
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["figures"]["records_per_s"])' \
        "$work/$label.json"
}

olds=()
news=()
for r in $(seq 1 "$rounds"); do
    if ((r % 2)); then
        o=$(one "$old" "old-$r")
        n=$(one "$new" "new-$r")
    else
        n=$(one "$new" "new-$r")
        o=$(one "$old" "old-$r")
    fi
    olds+=("$o")
    news+=("$n")
    printf 'round %d: old %.0f records/s, new %.0f records/s (load %s)\n' "$r" "$o" "$n" \
        "$(cut -d' ' -f1-3 /proc/loadavg)"
done
python3 - "${olds[*]}" "${news[*]}" <<'EOF'
import statistics, sys
old = [float(x) for x in sys.argv[1].split()]
new = [float(x) for x in sys.argv[2].split()]
mo, mn = statistics.median(old), statistics.median(new)
print(f"median old {mo:,.0f} records/s, new {mn:,.0f} records/s: new/old = {mn / mo:.2f}")
EOF
