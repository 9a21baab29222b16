//! A fault-injecting TCP proxy for tests: listens on a free 127.0.0.1 port and forwards
//! every connection, both directions, to one target address.
//!
//! - [`Proxy::cut`] simulates a network partition: every connection through the proxy is
//!   shut down at once (both sides see EOF/reset), and new connections are accepted but
//!   black-holed: nothing is forwarded and nothing is answered, so the peer sees a
//!   connection that hangs until its own timeouts fire (what a partition looks like).
//! - [`Proxy::heal`] closes the black-holed connections (so their owners notice and
//!   reconnect) and forwards new connections again.
//!
//! Plain std threads: two copy threads per forwarded connection, one accept thread.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// How long the proxy waits to connect to its target before dropping the client.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Default)]
struct State {
    cut: bool,
    /// Both ends of each forwarded connection, by id, to shut down on `cut`.
    forwarded: Vec<(u64, TcpStream, TcpStream)>,
    /// Connections accepted while cut, held open and never answered.
    black_holed: Vec<TcpStream>,
    next_id: u64,
}

struct Shared {
    target: SocketAddr,
    state: Mutex<State>,
    stopping: AtomicBool,
}

pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_thread: Option<thread::JoinHandle<()>>,
}

impl Proxy {
    /// Starts forwarding a free 127.0.0.1 port to `target`.
    pub fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy port");
        let addr = listener.local_addr().expect("proxy local addr");
        let shared = Arc::new(Shared {
            target,
            state: Mutex::new(State::default()),
            stopping: AtomicBool::new(false),
        });
        let accept_shared = shared.clone();
        let accept_thread = thread::Builder::new()
            .name(format!("proxy-{}", addr.port()))
            .spawn(move || accept_loop(listener, accept_shared))
            .expect("spawn the proxy accept thread");
        Proxy {
            addr,
            shared,
            accept_thread: Some(accept_thread),
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where connections are forwarded.
    pub fn target(&self) -> SocketAddr {
        self.shared.target
    }

    /// Drops every current connection and black-holes new ones until [`Proxy::heal`].
    pub fn cut(&self) {
        let mut state = self.shared.state.lock().unwrap();
        state.cut = true;
        for (_, client, upstream) in state.forwarded.drain(..) {
            let _ = client.shutdown(Shutdown::Both);
            let _ = upstream.shutdown(Shutdown::Both);
        }
    }

    /// Forwards new connections again; connections black-holed meanwhile are closed.
    pub fn heal(&self) {
        let mut state = self.shared.state.lock().unwrap();
        state.cut = false;
        for held in state.black_holed.drain(..) {
            let _ = held.shutdown(Shutdown::Both);
        }
    }

    pub fn is_cut(&self) -> bool {
        self.shared.state.lock().unwrap().cut
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.accept_thread.take() {
            let _ = t.join();
        }
        let mut state = self.shared.state.lock().unwrap();
        for (_, client, upstream) in state.forwarded.drain(..) {
            let _ = client.shutdown(Shutdown::Both);
            let _ = upstream.shutdown(Shutdown::Both);
        }
        for held in state.black_holed.drain(..) {
            let _ = held.shutdown(Shutdown::Both);
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        let _ = client.set_nodelay(true);
        {
            let mut state = shared.state.lock().unwrap();
            if state.cut {
                state.black_holed.push(client);
                continue;
            }
        }
        let shared = shared.clone();
        // Connecting may take a while; do it off the accept thread.
        thread::spawn(move || forward(client, shared));
    }
}

fn forward(client: TcpStream, shared: Arc<Shared>) {
    let Ok(upstream) = TcpStream::connect_timeout(&shared.target, CONNECT_TIMEOUT) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let _ = upstream.set_nodelay(true);
    let id = {
        let mut state = shared.state.lock().unwrap();
        if state.cut {
            // Cut while we were connecting: this connection is part of the partition.
            let _ = upstream.shutdown(Shutdown::Both);
            state.black_holed.push(client);
            return;
        }
        let id = state.next_id;
        state.next_id += 1;
        let (Ok(c), Ok(u)) = (client.try_clone(), upstream.try_clone()) else {
            return;
        };
        state.forwarded.push((id, c, u));
        id
    };
    let (Ok(client_read), Ok(upstream_write)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let up = thread::spawn(move || pump(client_read, upstream_write));
    pump(upstream, client);
    let _ = up.join();
    let mut state = shared.state.lock().unwrap();
    state.forwarded.retain(|(i, _, _)| *i != id);
}

/// Copies `from` into `to` until EOF or an error, then half-closes `to` (EOF forwarded)
/// or, after an error, shuts both down.
fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
