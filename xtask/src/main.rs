//! # xtask — set-up and everyday tasks
//!
//! `cargo xtask run [ARGS]` installs what building needs when missing, then runs the
//! broker in release mode (`cairn serve ARGS`, data under `./data`, Kafka on
//! 127.0.0.1:9092). `cargo xtask test [ARGS]` installs what the tests need (kcat, the
//! build tools of librdkafka, the Python and JavaScript Kafka clients of
//! `tests/other_clients.rs`) when missing, then runs `cargo test --workspace ARGS`.
//! `cargo xtask setup` only installs what building needs (for scripts that build
//! themselves, like `scripts/bench.sh`).
//!
//! Packages come from Debian's archive through apt-get, and only when a command is
//! missing, so on a machine that has them both tasks go straight to cargo. The Python
//! clients come from PyPI through pip, at the versions in [`PIP_REQUIRED`] and
//! [`PIP_CODECS`], when importing them fails or finds another version; kafkajs comes
//! from npm through `npm ci` in `tests/js` (its package-lock.json) when
//! `tests/js/node_modules` lacks it. Never edits anything but the system's packages, the
//! Python environment's site-packages and `tests/js/node_modules`.

use std::process::{Command, ExitCode};

/// Commands the build needs, with the Debian package that provides each.
/// An entry ending in `.so` names a shared library instead, looked for by file presence
/// (see [`have_library`]): bindgen in librocksdb-sys loads libclang at build time, and
/// RocksDB's C++ needs `c++`.
const BUILD_NEEDS: &[(&str, &str)] = &[
    ("cc", "gcc"),
    ("c++", "g++"),
    ("make", "make"),
    ("perl", "perl"),
    ("libclang.so", "libclang-dev"),
];
/// Commands the tests need on top of the build's.
const TEST_NEEDS: &[(&str, &str)] = &[
    ("kcat", "kcat"),
    ("python3", "python3"),
    ("node", "nodejs"),
    ("npm", "npm"),
];

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let task = args.next().unwrap_or_default();
    // `cargo xtask run -- --listen ...` and `cargo xtask run --listen ...` mean the same.
    let rest: Vec<String> = args.skip_while(|a| a == "--").collect();
    let result = match task.as_str() {
        "run" => ensure(BUILD_NEEDS).and_then(|()| {
            let mut cmd = cargo();
            cmd.args(["run", "--release", "-p", "cairn", "--", "serve"])
                .args(&rest);
            status(cmd)
        }),
        "test" => ensure(BUILD_NEEDS)
            .and_then(|()| ensure(TEST_NEEDS))
            .and_then(|()| ensure_pip())
            .and_then(|()| ensure_npm())
            .and_then(|()| {
                let mut cmd = cargo();
                cmd.args(["test", "--workspace"]).args(&rest);
                status(cmd)
            }),
        // What the build needs and nothing else (scripts/bench.sh runs it before building).
        "setup" => ensure(BUILD_NEEDS),
        _ => {
            eprintln!(
                "usage: cargo xtask run [cairn serve flags] | cargo xtask test [cargo test args] \
                 | cargo xtask setup"
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
    if command.ends_with(".so") {
        return have_library(command);
    }
    Command::new("sh")
        .args(["-c", &format!("command -v {command} >/dev/null 2>&1")])
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether a shared library `name` (e.g. `libclang.so`, also as `libclang-14.so.1`)
/// exists where clang-sys looks: `$LIBCLANG_PATH`, the multiarch lib directories and
/// every `/usr/lib/llvm-*/lib`.
fn have_library(name: &str) -> bool {
    let stem = name.trim_end_matches(".so");
    let mut dirs: Vec<std::path::PathBuf> = ["/usr/lib", "/usr/lib64", "/usr/local/lib"]
        .iter()
        .map(Into::into)
        .collect();
    dirs.extend(std::env::var_os("LIBCLANG_PATH").map(Into::into));
    for parent in ["/usr/lib", "/usr/lib64"] {
        for entry in std::fs::read_dir(parent).into_iter().flatten().flatten() {
            let file_name = entry.file_name();
            let file_name = file_name.to_string_lossy();
            if file_name.contains("-linux-gnu") {
                dirs.push(entry.path());
            } else if file_name.starts_with("llvm-") {
                dirs.push(entry.path().join("lib"));
            }
        }
    }
    dirs.iter().any(|dir| {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .any(|entry| {
                let file_name = entry.file_name();
                let file_name = file_name.to_string_lossy();
                // `libclang.so`, `libclang.so.1`, `libclang-14.so.1`, but not `libclang-cpp.so`.
                file_name.strip_prefix(stem).is_some_and(|rest| {
                    rest.starts_with(".so")
                        || rest
                            .strip_prefix('-')
                            .is_some_and(|v| v.starts_with(|c: char| c.is_ascii_digit()))
                })
            })
    })
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

/// Python packages the client tests need: (pip requirement, module to import). Pinned to
/// the versions the tests were written against; each installs from a wheel, so no C
/// build is needed (confluent-kafka's wheel bundles librdkafka).
const PIP_REQUIRED: &[(&str, &str)] = &[
    ("kafka-python==3.0.12", "kafka"),
    ("confluent-kafka==2.16.1", "confluent_kafka"),
];
/// kafka-python's compression codecs (gzip is built in). Wheels only: where one has no
/// wheel for this machine it is left out and the test skips that codec, saying so.
const PIP_CODECS: &[(&str, &str)] = &[
    ("python-snappy==0.7.3", "snappy"),
    ("lz4==4.4.5", "lz4"),
    ("zstandard==0.25.0", "zstandard"),
];

/// The requirements of `packages` that `python3` cannot import at exactly their pinned
/// version, found with one interpreter start (which costs more than the probes).
fn missing_python_packages<'a>(packages: &[(&'a str, &str)]) -> Vec<&'a str> {
    let mut probe = String::from("import importlib, importlib.metadata as m\n");
    for (requirement, module) in packages {
        let (name, version) = requirement.split_once("==").unwrap_or((requirement, ""));
        probe.push_str(&format!(
            "try:\n    importlib.import_module({module:?})\n    \
             assert not {version:?} or m.version({name:?}) == {version:?}\n\
             except Exception:\n    print({requirement:?})\n"
        ));
    }
    match Command::new("python3")
        .args(["-c", &probe])
        .stderr(std::process::Stdio::null())
        .output()
    {
        Ok(o) if o.status.success() => {
            let out = String::from_utf8_lossy(&o.stdout);
            packages
                .iter()
                .map(|(requirement, _)| *requirement)
                .filter(|r| out.lines().any(|l| l == *r))
                .collect()
        }
        _ => packages
            .iter()
            .map(|(requirement, _)| *requirement)
            .collect(),
    }
}

/// Installs the missing or mismatched packages of [`PIP_REQUIRED`] and [`PIP_CODECS`]
/// with pip, from wheels only. A Python that refuses pip installs as externally managed
/// (PEP 668) gets them with `--break-system-packages`. Failing to install a required
/// package is an error; a codec, a warning.
fn ensure_pip() -> Result<(), String> {
    let all: Vec<(&str, &str)> = PIP_REQUIRED.iter().chain(PIP_CODECS).copied().collect();
    let missing = missing_python_packages(&all);
    if missing.is_empty() {
        return Ok(());
    }
    if !missing_python_packages(&[("pip", "pip")]).is_empty() {
        ensure(&[("pip3", "python3-pip")])?;
    }
    let pip = |packages: &[&str], extra: &[&str]| {
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "pip", "install", "--quiet", "--only-binary", ":all:"])
            .args(extra)
            .args(packages);
        cmd.output()
            .map_err(|e| format!("cannot run {cmd:?}: {e}"))
            .map(|o| {
                (
                    o.status.success(),
                    String::from_utf8_lossy(&o.stderr).into_owned(),
                )
            })
    };
    let mut extra: &[&str] = &[];
    for required in [true, false] {
        let packages: Vec<&str> = missing
            .iter()
            .copied()
            .filter(|m| PIP_REQUIRED.iter().any(|(r, _)| r == m) == required)
            .collect();
        if packages.is_empty() {
            continue;
        }
        eprintln!("xtask: pip installing {}", packages.join(" "));
        let (mut ok, mut stderr) = pip(&packages, extra)?;
        if !ok && stderr.contains("externally-managed-environment") {
            eprintln!(
                "xtask: this Python is externally managed; retrying with --break-system-packages"
            );
            extra = &["--break-system-packages"];
            (ok, stderr) = pip(&packages, extra)?;
        }
        if !ok {
            eprint!("{stderr}");
            let message = format!("pip could not install {}", packages.join(" "));
            if required {
                return Err(message);
            }
            eprintln!("xtask: {message}; the tests skip what needs them");
        }
    }
    Ok(())
}

/// `npm ci` in tests/js when its node_modules lacks a package of package.json.
fn ensure_npm() -> Result<(), String> {
    // The runtime value cargo sets for `cargo run`, not the compiled-in one: an xtask
    // binary built from another clone sharing the target directory is reused by cargo.
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    let js = manifest_dir.join("../tests/js");
    let present = ["kafkajs", "kafkajs-snappy"].iter().all(|p| {
        js.join("node_modules")
            .join(p)
            .join("package.json")
            .is_file()
    });
    if present {
        return Ok(());
    }
    eprintln!("xtask: npm ci in {}", js.display());
    let mut cmd = Command::new("npm");
    cmd.args(["ci", "--no-audit", "--no-fund"]).current_dir(&js);
    status(cmd)
}
