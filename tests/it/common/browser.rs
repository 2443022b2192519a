//! A real browser for the tests: Debian's Chromium, headless, driven over the DevTools
//! protocol through `--remote-debugging-pipe` (JSON messages ending in NUL on file
//! descriptors 3 and 4), which needs no WebSocket client. Missing Chromium skips a test
//! loudly, and fails it when `INKFLOW_REQUIRE_REAL_TOOLS` is set (as CI sets it).

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Where Chromium is: `/usr/bin/chromium`, else `chromium` on the PATH. `None` (after a loud
/// SKIPPED line) when it is missing and not required; a panic when it is required.
pub fn chromium(test: &str) -> Option<PathBuf> {
    let found = std::iter::once(PathBuf::from("/usr/bin/chromium"))
        .chain(
            std::env::var_os("PATH").iter().flat_map(std::env::split_paths).map(|dir| dir.join("chromium")),
        )
        .find(|path| path.is_file());
    if found.is_none() {
        if std::env::var_os("INKFLOW_REQUIRE_REAL_TOOLS").is_some() {
            panic!("{test}: Chromium is required (INKFLOW_REQUIRE_REAL_TOOLS) but not installed");
        }
        eprintln!("SKIPPED {test}: no Chromium (install Debian's chromium to run it)");
    }
    found
}

/// The DevTools event of a page opening `alert`, `confirm` or `prompt`.
const DIALOG_OPENED: &str = "Page.javascriptDialogOpening";

/// A headless Chromium with one page attached.
pub struct Browser {
    child: Child,
    to_browser: std::fs::File,
    from_browser: mpsc::Receiver<Value>,
    next_id: u64,
    session: String,
    /// Dialogs the page opened while a command waited for its answer, for [`Browser::answer_dialog`].
    dialogs: Vec<Value>,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium with a fresh profile and opens `url` in a page of `width` x `height`.
    pub fn open(chromium: &PathBuf, url: &str, width: u32, height: u32) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let (commands_read, commands_write) = std::io::pipe().unwrap();
        let (events_read, events_write) = std::io::pipe().unwrap();
        let (commands_read, events_write): (OwnedFd, OwnedFd) = (commands_read.into(), events_write.into());
        let (read_fd, write_fd) = (commands_read.as_raw_fd(), events_write.as_raw_fd());
        let mut command = Command::new(chromium);
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-pipe",
                "about:blank",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("--window-size={width},{height}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only async-signal-safe calls (fcntl, dup2) between fork and exec. The pipe
        // ends first move above 10, so placing them on 3 and 4 never closes one of them.
        unsafe {
            command.pre_exec(move || {
                let high_read = libc::fcntl(read_fd, libc::F_DUPFD, 10);
                let high_write = libc::fcntl(write_fd, libc::F_DUPFD, 10);
                if high_read < 0
                    || high_write < 0
                    || libc::dup2(high_read, 3) < 0
                    || libc::dup2(high_write, 4) < 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("Chromium starts");
        drop((commands_read, events_write));
        let (sender, from_browser) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(events_read);
            let mut message = Vec::new();
            while reader.read_until(0, &mut message).is_ok_and(|n| n > 0) {
                message.pop_if(|b| *b == 0);
                if let Ok(value) = serde_json::from_slice::<Value>(&message)
                    && sender.send(value).is_err()
                {
                    return;
                }
                message.clear();
            }
        });
        let mut browser = Browser {
            child,
            to_browser: std::fs::File::from(OwnedFd::from(commands_write)),
            from_browser,
            next_id: 0,
            session: String::new(),
            dialogs: Vec::new(),
            _profile: profile,
        };
        let target = browser.call("Target.createTarget", json!({"url": "about:blank"}));
        let target = target["targetId"].as_str().unwrap().to_owned();
        let attached = browser.call("Target.attachToTarget", json!({"targetId": target, "flatten": true}));
        browser.session = attached["sessionId"].as_str().unwrap().to_owned();
        browser.call("Page.enable", json!({}));
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        );
        browser.call("Page.navigate", json!({"url": url}));
        browser
    }

    /// Sends one DevTools command (to the page once attached) and waits for its answer.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            message["sessionId"] = self.session.clone().into();
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.to_browser.write_all(&bytes).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let answer =
                self.from_browser.recv_timeout(left).unwrap_or_else(|_| panic!("no answer to {method}"));
            if answer["id"] == id {
                assert!(answer.get("error").is_none(), "{method}: {answer}");
                return answer["result"].clone();
            }
            if answer["method"] == DIALOG_OPENED {
                self.dialogs.push(answer);
            }
        }
    }

    /// The value of a JavaScript expression in the page (awaited when it is a promise).
    pub fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "awaitPromise": true, "returnByValue": true, "userGesture": true}),
        );
        assert!(result.get("exceptionDetails").is_none(), "{expression}: {result}");
        result["result"]["value"].clone()
    }

    /// Waits until `expression` is true in the page, as the page's own events make it so.
    pub fn wait_for(&mut self, expression: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.eval(&format!("!!({expression})")) != Value::Bool(true) {
            assert!(Instant::now() < deadline, "the page never reached: {expression}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Presses a key as the keyboard does (`key` as KeyboardEvent.key names it).
    pub fn press(&mut self, key: &str) {
        let (code, text) = match key {
            "Escape" => (27, ""),
            "Enter" => (13, "\r"),
            other => (i64::from(other.to_ascii_uppercase().as_bytes()[0]), other),
        };
        for (kind, text) in [("keyDown", text), ("keyUp", "")] {
            self.call(
                "Input.dispatchKeyEvent",
                json!({"type": kind, "key": key, "text": text, "windowsVirtualKeyCode": code}),
            );
        }
    }

    /// Clicks the middle of the element `selector` names, with the mouse.
    pub fn click(&mut self, selector: &str) {
        let rect = self.eval(&format!(
            "(() => {{ const e = document.querySelector({selector:?}); e.scrollIntoView({{block: 'center'}}); \
             const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()"
        ));
        let (x, y) = (rect[0].as_f64().unwrap(), rect[1].as_f64().unwrap());
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}),
            );
        }
    }

    /// Waits for the page's next JavaScript dialog (a `confirm`), accepts or dismisses it as a
    /// person would, and returns what it asked.
    pub fn answer_dialog(&mut self, accept: bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.dialogs.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            let event =
                self.from_browser.recv_timeout(left).unwrap_or_else(|_| panic!("the page opened no dialog"));
            if event["method"] == DIALOG_OPENED {
                self.dialogs.push(event);
            }
        }
        let opened = self.dialogs.remove(0);
        self.call("Page.handleJavaScriptDialog", json!({"accept": accept}));
        opened["params"]["message"].as_str().unwrap_or_default().to_owned()
    }

    /// A PNG of the page as shown.
    pub fn screenshot(&mut self) -> Vec<u8> {
        use base64::Engine as _;
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}));
        base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().unwrap()).unwrap()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
