//! Faults, injected for real: a system call of a running process made to fail or stall
//! (strace's fault injection, optionally limited to the calls that touch one path), and
//! TCP peers that misbehave on cue (accept and never answer, reset, answer garbage,
//! stall mid-body), or pass bytes through to a real server until told otherwise. A new
//! fault goes here, for every suite to use.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A strace attached to a process, injecting a fault; detached (killed) on drop.
pub struct Strace(Child);

impl Strace {
    /// Attaches to `pid`, tracing `syscalls` (strace's `trace=` list) and applying
    /// `inject` (strace's `inject=` expression, e.g. `fsync:error=EIO` or
    /// `fsync:delay_enter=7000000:when=1`); with `path`, only calls that touch it (a
    /// name, or a descriptor open on it) are traced and injected. Returns once attached.
    pub fn attach(pid: u32, syscalls: &str, inject: &str, path: Option<&Path>) -> Strace {
        let mut cmd = Command::new("strace");
        cmd.args(["-qq", "-o", "/dev/null"])
            .arg(format!("--trace={syscalls}"))
            .arg(format!("--inject={inject}"));
        if let Some(p) = path {
            cmd.arg("-P").arg(p);
        }
        let child = cmd
            .args(["-p", &pid.to_string()])
            .spawn()
            .expect("strace (scripts/setup.sh test installs it)");
        let traced = crate::harness::eventually(Duration::from_secs(10), || {
            (tracer_of(pid)? != 0).then_some(())
        });
        assert!(traced.is_some(), "strace did not attach to {pid}");
        Strace(child)
    }

    /// Detaches: the process goes on without the fault.
    pub fn stop(&mut self) {
        let pid = self.0.id();
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = pid;
    }
}

impl Drop for Strace {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The pid tracing `pid` (0: none), from /proc/<pid>/status.
fn tracer_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("TracerPid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Delays `pid`'s next fsync by `secs` seconds, as a slow disk would.
pub fn stall_next_fsync(pid: u32, secs: u32) -> Strace {
    let delay = format!("fsync:delay_enter={}:when=1", secs * 1_000_000);
    Strace::attach(pid, "fsync", &delay, None)
}

/// The syscall `pid` is in, from /proc/<pid>/syscall (its number, or None).
pub fn current_syscall(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/syscall")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

#[cfg(target_arch = "x86_64")]
pub const SYS_FSYNC: u64 = 74;
#[cfg(target_arch = "aarch64")]
pub const SYS_FSYNC: u64 = 82;

/// Waits until `pid` is inside fsync (its event loop stopped there).
pub fn wait_in_fsync(pid: u32) {
    let stalled = crate::harness::eventually(Duration::from_secs(10), || {
        (current_syscall(pid) == Some(SYS_FSYNC)).then_some(())
    });
    assert!(stalled.is_some(), "{pid} never reached its fsync");
}

/// `pid`'s memory from /proc/<pid>/status, in kB: (VmRSS, RssAnon).
pub fn memory_kb(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("RssAnon:"))
}

/// What a [`Peer`] does with each connection it accepts.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// Reads and never answers; holds the connection until the peer is dropped or the
    /// behaviour changes.
    Hang,
    /// Reads the request's head, then resets the connection (RST, no answer).
    ResetAfterRequest,
    /// Reads part of the request's body (this many bytes of it), then resets.
    ResetMidRequest(usize),
    /// Reads the request's head, sends these bytes, then resets.
    SendThenReset(Vec<u8>),
    /// Reads the request's head, sends these bytes, then closes (FIN).
    SendThenClose(Vec<u8>),
    /// Reads the request's head, sends these bytes, then holds the connection.
    SendThenHang(Vec<u8>),
    /// Passes bytes both ways to 127.0.0.1:port.
    Forward(u16),
}

/// A TCP peer on 127.0.0.1 whose behaviour the test sets, and changes, at will.
pub struct Peer {
    pub port: u16,
    behaviour: Arc<Mutex<Behaviour>>,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    held: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Peer {
    pub fn start(behaviour: Behaviour) -> Peer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let behaviour = Arc::new(Mutex::new(behaviour));
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let held = Arc::new(AtomicUsize::new(0));
        let (b, s, a, h) = (
            behaviour.clone(),
            stop.clone(),
            accepted.clone(),
            held.clone(),
        );
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        a.fetch_add(1, Ordering::SeqCst);
                        conn.set_nonblocking(false).unwrap();
                        let how = b.lock().unwrap().clone();
                        let (b, s, h) = (b.clone(), s.clone(), h.clone());
                        std::thread::spawn(move || serve(conn, how, &b, &s, &h));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Peer {
            port,
            behaviour,
            stop,
            accepted,
            held,
            thread: Some(thread),
        }
    }

    /// From the next connection on (and for connections held now: they are let go).
    pub fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Connections held right now (hanging, or stalled mid-answer).
    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn reset(conn: TcpStream) {
    let _ = socket2::SockRef::from(&conn).set_linger(Some(Duration::ZERO));
    drop(conn);
}

/// Holds `conn` (reading whatever comes) while the behaviour stays what it was and the
/// peer runs.
fn hold(
    mut conn: TcpStream,
    was: &Behaviour,
    now: &Mutex<Behaviour>,
    stop: &AtomicBool,
    held: &AtomicUsize,
) {
    held.fetch_add(1, Ordering::SeqCst);
    conn.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let same = |b: &Behaviour| format!("{b:?}") == format!("{was:?}");
    while !stop.load(Ordering::Relaxed) && same(&now.lock().unwrap()) {
        match conn.read(&mut buf) {
            Ok(0) => break,
            _ => continue,
        }
    }
    held.fetch_sub(1, Ordering::SeqCst);
}

fn serve(
    mut conn: TcpStream,
    how: Behaviour,
    now: &Mutex<Behaviour>,
    stop: &AtomicBool,
    held: &AtomicUsize,
) {
    match &how {
        Behaviour::Hang => hold(conn, &how, now, stop, held),
        Behaviour::ResetAfterRequest => {
            crate::harness::read_request_head(&mut conn);
            reset(conn);
        }
        Behaviour::ResetMidRequest(n) => {
            let head = crate::harness::read_request_head(&mut conn);
            let at = head.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0) + 4;
            let mut body = head.len().saturating_sub(at);
            let mut buf = [0u8; 4096];
            while body < *n {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => body += k,
                }
            }
            reset(conn);
        }
        Behaviour::SendThenReset(bytes) => {
            crate::harness::read_request_head(&mut conn);
            let _ = conn.write_all(bytes);
            let _ = conn.flush();
            // Let the bytes leave before the RST, so the answer is cut, not lost.
            std::thread::sleep(Duration::from_millis(50));
            reset(conn);
        }
        Behaviour::SendThenClose(bytes) => {
            crate::harness::read_request_head(&mut conn);
            let _ = conn.write_all(bytes);
            let _ = conn.shutdown(Shutdown::Write);
            std::thread::sleep(Duration::from_millis(50));
        }
        Behaviour::SendThenHang(bytes) => {
            crate::harness::read_request_head(&mut conn);
            let _ = conn.write_all(bytes);
            hold(conn, &how, now, stop, held);
        }
        Behaviour::Forward(port) => {
            let Ok(upstream) = TcpStream::connect(("127.0.0.1", *port)) else {
                return;
            };
            let (mut a_in, mut b_out) = (conn.try_clone().unwrap(), upstream.try_clone().unwrap());
            let there = std::thread::spawn(move || {
                let _ = std::io::copy(&mut a_in, &mut b_out);
                let _ = b_out.shutdown(Shutdown::Write);
            });
            let (mut b_in, mut a_out) = (upstream, conn);
            let _ = std::io::copy(&mut b_in, &mut a_out);
            let _ = a_out.shutdown(Shutdown::Write);
            let _ = there.join();
        }
    }
}

/// A keep-alive connection that worker `pid` of the gateway accepted (found by asking
/// `HEAD /`, whose answer has no body, until that worker answers): a request sent on it
/// reaches that worker, whatever the others do. None after 200 tries.
pub fn connection_to_worker(port: u16, pid: u32) -> Option<TcpStream> {
    for _ in 0..200 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(b"HEAD / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if s.read(&mut byte).unwrap() == 0 {
                break;
            }
            head.push(byte[0]);
        }
        let r = crate::harness::parse_response(&head);
        if r.header("x-gateway-worker") == Some(pid.to_string().as_str()) {
            return Some(s);
        }
    }
    None
}

/// Sends a JSON PATCH (HTTP/1.0: the answer is not chunked, the server closes) on `conn` and returns a thread that reads
/// the answer.
pub fn patch_on(mut conn: TcpStream, path: &str, body: &[u8]) -> std::thread::JoinHandle<Vec<u8>> {
    let mut raw = format!(
        "PATCH {path} HTTP/1.0\r\nHost: localhost\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    conn.write_all(&raw).unwrap();
    std::thread::spawn(move || {
        let mut raw = Vec::new();
        let _ = conn.read_to_end(&mut raw);
        raw
    })
}
