# Everyday recipes. `just --list` shows them.

# Build and run a single broker (Kafka on 127.0.0.1:9092, data under ./data).
run *ARGS:
    cargo xtask run {{ARGS}}

# The whole test suite, as CI runs it.
test *ARGS:
    cargo xtask test {{ARGS}}

# Formatting and lints, as CI checks them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Three local brokers on 127.0.0.1 sharing one metadata quorum (logs in cluster/logs).
cluster:
    bash scripts/cluster.sh start

# Stop the local cluster cleanly.
cluster-stop:
    bash scripts/cluster.sh stop

# Everything CI does.
ci:
    bash .ci/run

# Micro-benchmarks of the log engine (append, read, open), next to raw disk figures.
bench-log:
    cargo bench -p cairn-log

# End-to-end load figures of a fresh single broker (produce, consume, end-to-end latency)
# next to this machine's raw disk and loopback limits; JSON in bench-results/.
bench:
    bash scripts/bench.sh

# Two broker binaries in one run, alternating, as a ratio (e.g. before and after a change):
# `just compare /tmp/cairn-before target/release/cairn --partitions 1 --acks all`.
compare OLD NEW *FLAGS:
    bash scripts/compare.sh {{OLD}} {{NEW}} {{FLAGS}}

# Fuzz request decoding and record-batch validation (TARGET: request_decode,
# batch_validate or all; SECONDS each). cargo-fuzz needs nightly flags: RUSTC_BOOTSTRAP=1
# allows them on stable. Builds in fuzz/target, starts from fuzz/seeds, keeps new inputs
# in fuzz/corpus and crashes in fuzz/artifacts. No sanitizer (-s none): the code under
# test is safe Rust decoding (the C zstd is not instrumented anyway), so ASan would only slow
# the build and the runs; panics, overflows and aborts are what the targets catch.
fuzz TARGET="all" SECONDS="120":
    #!/usr/bin/env bash
    set -euo pipefail
    command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
    targets="{{TARGET}}"
    if [ "$targets" = all ]; then targets="request_decode batch_validate"; fi
    for t in $targets; do
        mkdir -p "fuzz/corpus/$t"
        CARGO_TARGET_DIR=fuzz/target RUSTC_BOOTSTRAP=1 cargo fuzz run -s none "$t" \
            "fuzz/corpus/$t" "fuzz/seeds/$t" -- -max_total_time={{SECONDS}}
    done
