//! Headless Chromium driven over the DevTools protocol, through `--remote-debugging-pipe`
//! (the browser reads NUL-terminated JSON commands on fd 3 and writes answers and
//! events on fd 4): no WebSocket, no crate beyond serde_json.
//!
//! A [`Browser`] opens one page; `call` sends a command to it and waits for its answer,
//! keeping every event that arrives meanwhile. What a test asks about the page over
//! time (console messages, exceptions, CSP violations) is read from those events.

#![allow(dead_code)]

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

/// How long one command may take before the test fails (a loaded 2-core machine).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Browser {
    child: Child,
    to_browser: std::fs::File,
    from_browser: Receiver<Value>,
    next_id: u64,
    session: String,
    /// Every event of the page so far, in order.
    pub events: Vec<Value>,
    _profile: TempDir,
}

/// A directory removed on drop (the browser's profile).
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A pipe whose both ends are closed on exec.
fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened and are owned by nothing else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// The browser (Debian's `chromium`, one of scripts/setup.sh's test packages).
pub fn chromium() -> &'static str {
    "chromium"
}

impl Browser {
    /// Starts headless Chromium with a fresh profile and opens a blank page, with the
    /// console, log and page domains enabled and a recorder of CSP violations that
    /// runs before any script of every document.
    pub fn start(width: u32, height: u32) -> Browser {
        let profile = std::env::temp_dir().join(format!(
            "ngxprom-chromium-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&profile).unwrap();
        let (cmd_read, cmd_write) = pipe();
        let (event_read, event_write) = pipe();
        let (child_in, child_out) = (cmd_read.as_raw_fd(), event_write.as_raw_fd());
        let mut command = Command::new(chromium());
        command
            .args([
                "--headless=new",
                "--remote-debugging-pipe",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-default-apps",
                "--mute-audio",
                "--hide-scrollbars",
                "--font-render-hinting=none",
                &format!("--window-size={width},{height}"),
                &format!("--user-data-dir={}", profile.display()),
                "about:blank",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: between fork and exec the closure only calls fcntl and dup2, which
        // are async-signal-safe, on descriptors that are open in the child. The copies
        // above 10 keep dup2 from overwriting one end with the other when a pipe end
        // already is fd 3 or 4; dup2 clears close-on-exec on 3 and 4 only.
        unsafe {
            command.pre_exec(move || {
                let a = libc::fcntl(child_in, libc::F_DUPFD_CLOEXEC, 10);
                let b = libc::fcntl(child_out, libc::F_DUPFD_CLOEXEC, 10);
                if a < 0 || b < 0 || libc::dup2(a, 3) < 0 || libc::dup2(b, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromium()));
        drop((cmd_read, event_write));
        let (tx, rx) = channel();
        let mut reader = std::fs::File::from(event_read);
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 65536];
            loop {
                match reader.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                while let Some(end) = buf.iter().position(|b| *b == 0) {
                    let msg: Vec<u8> = buf.drain(..=end).collect();
                    if let Ok(v) = serde_json::from_slice::<Value>(&msg[..end]) {
                        if tx.send(v).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let mut b = Browser {
            child,
            to_browser: std::fs::File::from(cmd_write),
            from_browser: rx,
            next_id: 0,
            session: String::new(),
            events: Vec::new(),
            _profile: TempDir(profile),
        };
        let target = b.call("Target.createTarget", json!({ "url": "about:blank" }));
        let target_id = target["targetId"].as_str().unwrap().to_string();
        let attached = b.call(
            "Target.attachToTarget",
            json!({ "targetId": target_id, "flatten": true }),
        );
        b.session = attached["sessionId"].as_str().unwrap().to_string();
        for domain in ["Runtime.enable", "Log.enable", "Page.enable"] {
            b.call(domain, json!({}));
        }
        b.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }),
        );
        b.call(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({ "source": "window.__csp = []; document.addEventListener('securitypolicyviolation', \
                 function (e) { window.__csp.push(e.violatedDirective + ' ' + e.blockedURI); });" }),
        );
        b
    }

    /// Sends `method` to the page (or to the browser before a page is attached) and
    /// returns its result; an error answer fails the test.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            msg["sessionId"] = json!(self.session);
        }
        let mut bytes = msg.to_string().into_bytes();
        bytes.push(0);
        self.to_browser
            .write_all(&bytes)
            .unwrap_or_else(|e| panic!("{method}: the browser is gone: {e}"));
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .from_browser
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("{method}: no answer from the browser: {e}"));
            if v["id"].as_u64() == Some(id) {
                if let Some(err) = v.get("error") {
                    panic!("{method}: {err}");
                }
                return v["result"].clone();
            }
            if v.get("method").is_some() {
                self.events.push(v);
            }
        }
    }

    /// Evaluates `expression` in the page (promises awaited) and returns its value.
    pub fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{expression}: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Loads `url` and waits for its `load` event.
    pub fn navigate(&mut self, url: &str) {
        let r = self.call("Page.navigate", json!({ "url": url }));
        assert!(r.get("errorText").is_none(), "{url}: {r}");
        let deadline = Instant::now() + CALL_TIMEOUT;
        while !self
            .eval("document.readyState === 'complete'")
            .as_bool()
            .unwrap()
        {
            assert!(Instant::now() < deadline, "{url} does not finish loading");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Evaluates `expression` until it is truthy (`timeout` at most); its last value.
    pub fn wait_for(&mut self, expression: &str, timeout: Duration) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.eval(expression);
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return Some(v);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Console messages of level error or warning, uncaught exceptions, log entries of
    /// level error (failed loads, CSP refusals) and the CSP violations the page saw.
    pub fn problems(&mut self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        // Events that arrived since the last command.
        while let Ok(v) = self.from_browser.try_recv() {
            if v.get("method").is_some() {
                self.events.push(v);
            }
        }
        for e in &self.events {
            let p = &e["params"];
            match e["method"].as_str().unwrap_or("") {
                "Runtime.consoleAPICalled"
                    if matches!(p["type"].as_str(), Some("error" | "warning" | "assert")) =>
                {
                    out.push(format!("console.{}: {}", p["type"], p["args"]))
                }
                "Runtime.exceptionThrown" => {
                    out.push(format!("exception: {}", p["exceptionDetails"]))
                }
                "Log.entryAdded"
                    if matches!(p["entry"]["level"].as_str(), Some("error" | "warning")) =>
                {
                    out.push(format!("log: {}", p["entry"]))
                }
                _ => {}
            }
        }
        if let Some(list) = self.eval("window.__csp || []").as_array() {
            out.extend(list.iter().map(|v| format!("CSP violation: {v}")));
        }
        out
    }

    /// Every `[data-k]` element's key and value (`data-v`), as the page shows them now.
    pub fn values(&mut self) -> std::collections::BTreeMap<String, String> {
        let v = self.eval(
            "Array.from(document.querySelectorAll('[data-k]'))\
             .map(function (e) { return [e.getAttribute('data-k'), e.getAttribute('data-v')]; })",
        );
        v.as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p[0].as_str().unwrap().to_string(),
                    p[1].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    /// A PNG of the whole page.
    pub fn screenshot(&mut self) -> Vec<u8> {
        use base64::Engine;
        let r = self.call(
            "Page.captureScreenshot",
            json!({ "format": "png", "captureBeyondViewport": true }),
        );
        base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap()
    }
}

impl Drop for Browser {
    /// Asks the browser to close (its helper processes go with it), then kills it if
    /// it has not within 5 s.
    fn drop(&mut self) {
        let msg = json!({ "id": 1_000_000_000u64, "method": "Browser.close" }).to_string();
        let _ = self.to_browser.write_all(format!("{msg}\0").as_bytes());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
