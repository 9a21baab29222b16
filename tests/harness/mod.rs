//! Test harness: runs the real `cairn` binary as a child process on a free loopback port,
//! with its data in a temporary directory, and stops it with SIGTERM (clean) or SIGKILL
//! (crash). The broker's log goes to `broker.log` beside the data, printed when a test
//! fails to start it.

#![allow(dead_code)]

pub mod delivery;
pub mod proxy;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a broker may take to start listening before the test gives up.
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct BrokerProcess {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    log_path: PathBuf,
    extra_args: Vec<String>,
    _tmp: tempfile::TempDir,
}

impl BrokerProcess {
    /// Starts a broker with an empty data directory.
    pub fn start() -> BrokerProcess {
        BrokerProcess::start_with(&[])
    }

    /// Starts a broker with extra `cairn serve` flags.
    pub fn start_with(extra_args: &[&str]) -> BrokerProcess {
        let tmp = tempfile::tempdir().expect("temp dir");
        let data_dir = tmp.path().join("data");
        let log_path = tmp.path().join("broker.log");
        let mut broker = BrokerProcess {
            child: None,
            addr: free_port(),
            data_dir,
            log_path,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            _tmp: tmp,
        };
        broker.spawn();
        broker
    }

    /// Starts `n` brokers (node ids 1..=n) as the voters of one metadata quorum, each
    /// with its own Kafka and controller port. They are spawned together and then waited
    /// for, since none listens for Kafka clients before a quorum has registered it.
    pub fn start_quorum(n: usize) -> Vec<BrokerProcess> {
        BrokerProcess::start_quorum_with(n, &[])
    }

    /// Like [`BrokerProcess::start_quorum`], with `extra_args` (e.g. `--set k=v`) given
    /// to every node.
    pub fn start_quorum_with(n: usize, extra_args: &[&str]) -> Vec<BrokerProcess> {
        BrokerProcess::start_nodes(voter_specs(n, extra_args).0)
    }

    /// Starts one broker per spec, each listening for Kafka clients on `spec.addr` with
    /// exactly `spec.args` besides `--data-dir` and `--listen` (so node id, controller
    /// listener, voters, advertised address are the caller's). Spawned together, then
    /// waited for, like [`BrokerProcess::start_quorum`].
    pub fn start_nodes(specs: Vec<NodeSpec>) -> Vec<BrokerProcess> {
        let mut brokers: Vec<BrokerProcess> = specs
            .into_iter()
            .map(|spec| {
                let tmp = tempfile::tempdir().expect("temp dir");
                let mut broker = BrokerProcess {
                    child: None,
                    addr: spec.addr,
                    data_dir: tmp.path().join("data"),
                    log_path: tmp.path().join("broker.log"),
                    extra_args: spec.args,
                    _tmp: tmp,
                };
                broker.spawn_unwaited();
                broker
            })
            .collect();
        for broker in &mut brokers {
            broker.wait_listening();
        }
        brokers
    }

    /// The node id given with `--node-id`, if any.
    pub fn node_id(&self) -> Option<i32> {
        let i = self.extra_args.iter().position(|a| a == "--node-id")?;
        self.extra_args.get(i + 1)?.parse().ok()
    }

    /// Whether the process is running (started and not killed or stopped by the test).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The controller listener given with `--controller-listen`, if any.
    pub fn controller_addr(&self) -> Option<SocketAddr> {
        let i = self
            .extra_args
            .iter()
            .position(|a| a == "--controller-listen")?;
        self.extra_args.get(i + 1)?.parse().ok()
    }

    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    fn spawn(&mut self) {
        self.spawn_unwaited();
        self.wait_listening();
    }

    fn spawn_unwaited(&mut self) {
        assert!(self.child.is_none(), "broker already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("broker log file");
        let child = Command::new(env!("CARGO_BIN_EXE_cairn"))
            .arg("serve")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(self.addr.to_string())
            .args(&self.extra_args)
            .env(
                "RUST_LOG",
                std::env::var("CAIRN_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn the cairn binary");
        self.child = Some(child);
    }

    fn wait_listening(&mut self) {
        let started = Instant::now();
        while !answers_api_versions(self.addr) {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().expect("try_wait") {
                panic!(
                    "broker exited with {status} during start; its log:\n{}",
                    self.log()
                );
            }
            if started.elapsed() > START_TIMEOUT {
                panic!(
                    "broker did not answer ApiVersions on {} within {START_TIMEOUT:?}; its log:\n{}",
                    self.addr,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// SIGKILL: the process dies at once, with no flush and no clean-shutdown marker.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL the broker");
            child.wait().expect("reap the broker");
        }
    }

    /// SIGTERM and wait: a clean shutdown.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let status = child.wait().expect("wait for the broker");
            assert!(
                status.success(),
                "broker exited with {status} on SIGTERM; its log:\n{}",
                self.log()
            );
        }
    }

    /// Starts the broker again on the same port and data directory.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Starts a stopped or killed broker again.
    pub fn start_again(&mut self) {
        self.spawn();
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- broker log ({}) ----\n{}",
                self.log_path.display(),
                self.log()
            );
        }
    }
}

/// One node for [`BrokerProcess::start_nodes`]: its Kafka listener and its other flags.
pub struct NodeSpec {
    pub addr: SocketAddr,
    pub args: Vec<String>,
}

/// The specs of `n` voters (node ids 1..=n, each with its own Kafka and controller port,
/// `extra_args` appended) and their `--voters` value, for other nodes to join them.
pub fn voter_specs(n: usize, extra_args: &[&str]) -> (Vec<NodeSpec>, String) {
    let controllers: Vec<SocketAddr> = (0..n).map(|_| free_port()).collect();
    let voters = controllers
        .iter()
        .enumerate()
        .map(|(i, addr)| format!("{}@{addr}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let specs = controllers
        .iter()
        .enumerate()
        .map(|(i, controller)| {
            let mut args: Vec<String> = vec![
                "--node-id".into(),
                (i + 1).to_string(),
                "--controller-listen".into(),
                controller.to_string(),
                "--voters".into(),
                voters.clone(),
            ];
            args.extend(extra_args.iter().map(|s| s.to_string()));
            NodeSpec {
                addr: free_port(),
                args,
            }
        })
        .collect();
    (specs, voters)
}

/// A loopback port nobody listens on right now, for a broker to listen on.
///
/// Taken *below* the kernel's ephemeral range (`ip_local_port_range`, 32768–60999 by
/// default): a port from that range (what binding port 0 gives) can be taken between this
/// call and the broker's own bind by any outgoing connection's local end — a client
/// connecting somewhere — and the broker then fails with "Address already in use". Ports
/// below the range are only ever taken by explicit binds; each test process walks its own
/// sequence of them (starting at a pid-dependent place, so that a run's leftover brokers do
/// not collide with the next binary's) and skips any that is in use.
/// Whether a broker at `addr` answers an ApiVersions v0 request. A bound port alone is
/// not enough: the broker binds before it opens its metadata and registers, and only
/// accepts once it has — a cluster test that creates a topic as soon as the ports
/// connect may place replicas before every broker is registered.
fn answers_api_versions(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    // size, api_key 18, api_version 0, correlation_id 1, client_id null.
    let mut request = 10i32.to_be_bytes().to_vec();
    request.extend_from_slice(&18i16.to_be_bytes());
    request.extend_from_slice(&0i16.to_be_bytes());
    request.extend_from_slice(&1i32.to_be_bytes());
    request.extend_from_slice(&(-1i16).to_be_bytes());
    let mut header = [0u8; 8];
    if stream.write_all(&request).is_err()
        || stream.read_exact(&mut header).is_err()
        || header[4..8] != 1i32.to_be_bytes()
    {
        return false;
    }
    // Read the rest, so that closing does not reset a connection with unread data.
    let rest = u32::from_be_bytes([header[0], header[1], header[2], header[3]]).saturating_sub(4);
    std::io::copy(
        &mut (&mut stream).take(u64::from(rest)),
        &mut std::io::sink(),
    )
    .is_ok()
}

pub fn free_port() -> SocketAddr {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOWEST: u32 = 10_000;
    let ephemeral_low: u32 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(32_768);
    let span = ephemeral_low.saturating_sub(LOWEST).max(1_000);
    let start = std::process::id().wrapping_mul(7_919) % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = LOWEST + (start + n) % span;
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port as u16)) {
            return l.local_addr().expect("local addr");
        }
    }
    panic!("no free loopback port between {LOWEST} and {ephemeral_low}");
}

/// Runs `f` to completion on a fresh current-thread tokio runtime (for rdkafka's async
/// admin calls from synchronous tests).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

/// Polls `f` every 200 ms until it returns `Some`, panicking with `what` after `guard` (a
/// failure guard for something the cluster should do soon, never a performance check).
pub fn wait_for<T>(what: &str, guard: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            started.elapsed() < guard,
            "gave up after {guard:?} waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The bootstrap list of the brokers that are running.
pub fn bootstrap_of(brokers: &[BrokerProcess]) -> String {
    brokers
        .iter()
        .filter(|b| b.is_running())
        .map(|b| b.bootstrap())
        .collect::<Vec<_>>()
        .join(",")
}

/// The repository root of the tree under test. Cargo sets `CARGO_MANIFEST_DIR` when it runs
/// a test, and that is preferred to the value compiled in: a test binary built from
/// another clone sharing the target directory (cargo reuses it when the sources are
/// older) would otherwise look at that clone.
pub fn repo_root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .join("../..")
        .canonicalize()
        .expect("the repository root")
}
