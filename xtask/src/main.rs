//! # xtask — set-up and everyday tasks
//!
//! `cargo xtask run [ARGS]` installs what building needs when missing, then runs the
//! broker in release mode (`cairn serve ARGS`, data under `./data`, Kafka on
//! 127.0.0.1:9092). `cargo xtask test [ARGS]` installs what the tests need (kcat, the
//! build tools of librdkafka) when missing, then runs `cargo test --workspace ARGS`.
//!
//! Packages come from Debian's archive through apt-get, and only when a command is
//! missing, so on a machine that has them both tasks go straight to cargo. Never edits
//! anything but the system's packages.

use std::process::{Command, ExitCode};

/// Commands the build needs, with the Debian package that provides each.
const BUILD_NEEDS: &[(&str, &str)] = &[("cc", "gcc"), ("make", "make"), ("perl", "perl")];
/// Commands the tests need on top of the build's.
const TEST_NEEDS: &[(&str, &str)] = &[("kcat", "kcat"), ("python3", "python3")];

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let task = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    let result = match task.as_str() {
        "run" => ensure(BUILD_NEEDS).and_then(|()| {
            let mut cmd = cargo();
            cmd.args(["run", "--release", "-p", "cairn", "--", "serve"])
                .args(&rest);
            status(cmd)
        }),
        "test" => ensure(BUILD_NEEDS)
            .and_then(|()| ensure(TEST_NEEDS))
            .and_then(|()| {
                let mut cmd = cargo();
                cmd.args(["test", "--workspace"]).args(&rest);
                status(cmd)
            }),
        _ => {
            eprintln!(
                "usage: cargo xtask run [cairn serve flags] | cargo xtask test [cargo test args]"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn status(mut cmd: Command) -> Result<(), String> {
    let s = cmd
        .status()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if s.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed ({s})"))
    }
}

fn have(command: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {command} >/dev/null 2>&1")])
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs the Debian packages of any missing command, with one apt-get update first.
fn ensure(needs: &[(&str, &str)]) -> Result<(), String> {
    let missing: Vec<&str> = needs
        .iter()
        .filter(|(c, _)| !have(c))
        .map(|(_, p)| *p)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing missing packages: {}", missing.join(" "));
    let sudo = if is_root() { None } else { Some("sudo") };
    let apt = |args: &[&str]| {
        let mut cmd = match sudo {
            Some(s) => {
                let mut c = Command::new(s);
                c.arg("apt-get");
                c
            }
            None => Command::new("apt-get"),
        };
        cmd.env("DEBIAN_FRONTEND", "noninteractive").args(args);
        status(cmd)
    };
    apt(&["update", "-q"])?;
    let mut install = vec!["install", "-y", "-q", "--no-install-recommends"];
    install.extend(&missing);
    apt(&install).map_err(|e| format!("{e}; install these packages by hand: {}", missing.join(" ")))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
