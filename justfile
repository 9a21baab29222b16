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

# Everything CI does.
ci:
    bash .ci/run

# Micro-benchmarks of the log engine (append, read, open), next to raw disk figures.
bench-log:
    cargo bench -p cairn-log
