//! End-to-end tests with clients that implement the Kafka protocol independently of
//! librdkafka's Rust binding: kafka-python (pure Python), confluent-kafka (Python, with
//! the librdkafka its wheel bundles, a newer one than the `rdkafka` crate's) and kafkajs
//! (pure JavaScript). Each test starts a broker and runs one script from `tests/python`
//! or `tests/js` against it; the script checks every answer itself and exits non-zero
//! on the first mismatch, whose output the failure shows.
//!
//! `cargo xtask test` installs the pip packages and runs `npm ci` in `tests/js` when they
//! are missing; after that plain `cargo test` runs these too.

mod harness;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::{BrokerProcess, repo_root};

/// Longest a script may run: each waits at most 30 s for any one answer.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);

/// Fails with the command that installs what is missing unless `probe` succeeds.
fn require(what: &str, probe: &mut Command) {
    let ok = probe
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{what} is not installed; `cargo xtask test` installs it (see xtask/src/main.rs)"
    );
}

fn require_python_module(module: &str) {
    require(
        &format!("the Python module `{module}`"),
        Command::new("python3").args(["-c", &format!("import {module}")]),
    );
}

fn require_node_modules() {
    let dir = repo_root().join("tests/js/node_modules/kafkajs");
    assert!(
        dir.is_dir(),
        "{} is missing; `cargo xtask test` runs `npm ci` in tests/js",
        dir.display()
    );
}

/// Runs `program args... BOOTSTRAP extra...` against a fresh broker and asserts that it
/// exits 0, showing everything it printed either way.
fn run_script(program: &str, script: &str, extra: &[&str]) {
    let broker = BrokerProcess::start();
    let root = repo_root();
    let out_dir = tempfile::tempdir().expect("temp dir");
    let out_path = out_dir.path().join("output");
    let out = std::fs::File::create(&out_path).expect("output file");
    let mut child = Command::new(program)
        .arg(root.join(script))
        .arg(broker.bootstrap())
        .args(extra)
        .current_dir(&root)
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("KAFKAJS_NO_PARTITIONER_WARNING", "1")
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("clone output handle"))
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program} {script}: {e}"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if started.elapsed() > SCRIPT_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = std::fs::read_to_string(&out_path).unwrap_or_default();
    println!("---- {script} ({:?}) ----\n{output}", started.elapsed());
    match status {
        Some(s) if s.success() => {}
        Some(s) => panic!("{script} failed ({s}); its output:\n{output}"),
        None => panic!("{script} did not finish within {SCRIPT_TIMEOUT:?}; its output:\n{output}"),
    }
}

#[test]
fn kafka_python() {
    require_python_module("kafka");
    run_script("python3", "tests/python/kafka_python_client.py", &[]);
}

#[test]
fn confluent_kafka() {
    require_python_module("confluent_kafka");
    run_script("python3", "tests/python/confluent_kafka_client.py", &[]);
}

#[test]
fn kafkajs() {
    require_node_modules();
    run_script("node", "tests/js/kafkajs_client.js", &[]);
}
