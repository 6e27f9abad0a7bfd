//! `weft serve` driven in headless Chromium through chromedriver's
//! WebDriver HTTP API (a small client below): the page loads, draws every
//! node and cable, a click on "down" redraws the page at once with the link down,
//! a capture downloads and tshark reads it, a screenshot is saved; and
//! requests without the token are refused.

mod common;
use common::{kept_events, Kill, Lab};

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// One HTTP/1.1 exchange on its own connection: status and body (read by
/// its length, or its chunks: chromedriver keeps the connection open).
fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<u8>) {
    let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    (&s).write_all(req.as_bytes()).unwrap();
    let mut r = BufReader::new(&s);
    let mut status = String::new();
    r.read_line(&mut status)
        .unwrap_or_else(|e| panic!("{method} {addr}{path}: {e}"));
    let code = status
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("{method} {addr}{path}: answered {status:?}"))
        .parse()
        .unwrap();
    let (mut len, mut chunked) = (None, false);
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        let h = h.trim_end().to_ascii_lowercase();
        if h.is_empty() {
            break;
        }
        if let Some(v) = h.strip_prefix("content-length:") {
            len = v.trim().parse::<usize>().ok();
        }
        if h.starts_with("transfer-encoding:") && h.contains("chunked") {
            chunked = true;
        }
    }
    let mut out = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = len {
        out.resize(n, 0);
        r.read_exact(&mut out).unwrap();
    } else {
        r.read_to_end(&mut out).unwrap();
    }
    (code, out)
}

/// A WebDriver session on chromedriver.
struct Driver {
    addr: String,
    session: String,
}

impl Driver {
    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let body = if method == "GET" {
            String::new()
        } else {
            body.to_string()
        };
        let (code, out) = http(&self.addr, method, &path, &[], &body);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert!(code == 200, "{method} {path}: {code} {v}");
        v["value"].clone()
    }

    fn script(&self, js: &str) -> Value {
        self.call("POST", "/execute/sync", json!({ "script": js, "args": [] }))
    }

    fn find(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            "/element",
            json!({ "using": "css selector", "value": css }),
        );
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    }

    fn click(&self, css: &str) {
        let e = self.find(css);
        self.call("POST", &format!("/element/{e}/click"), json!({}));
    }

    /// A real mouse click at the middle of what `css` selects. The drawing
    /// is redrawn every second, so its elements are found and clicked by
    /// position in one go (a horizontal cable has no height, which
    /// WebDriver's element click refuses).
    fn click_at(&self, css: &str) {
        let js = format!(
            "const e = document.querySelector(\"{css}\"); if (!e) return null; e.scrollIntoView({{block: 'center', inline: 'center'}}); if (e.getTotalLength) {{ const p = e.getPointAtLength(e.getTotalLength() / 2).matrixTransform(e.getScreenCTM()); return [Math.round(p.x), Math.round(p.y)]; }} const r = e.getBoundingClientRect(); return [Math.round(r.left + r.width / 2), Math.round(r.top + r.height / 2)];"
        );
        let at = self.script(&js);
        let (x, y) = (
            at[0].as_i64().unwrap_or_else(|| panic!("no {css}")),
            at[1].as_i64().unwrap(),
        );
        self.call(
            "POST",
            "/actions",
            json!({"actions": [{"type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
                "actions": [{"type": "pointerMove", "duration": 0, "x": x, "y": y, "origin": "viewport"},
                            {"type": "pointerDown", "button": 0}, {"type": "pointerUp", "button": 0}]}]}),
        );
    }

    /// Waits until `js` (an expression) is true; returns how long it took.
    fn wait_for(&self, js: &str, limit: Duration) -> Duration {
        let t0 = Instant::now();
        loop {
            if self.script(&format!("return !!({js});")) == json!(true) {
                return t0.elapsed();
            }
            assert!(t0.elapsed() < limit, "not within {limit:?}: {js}");
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn b64decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let b: Vec<u8> = s
        .bytes()
        .filter(|c| *c != b'=' && !c.is_ascii_whitespace())
        .collect();
    let mut out = Vec::new();
    for ch in b.chunks(4) {
        let v: Vec<u32> = ch.iter().map(|c| u32::from(val(*c))).collect();
        let n = v
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, x)| acc | x << (18 - 6 * i));
        out.extend(&n.to_be_bytes()[1..ch.len()]);
    }
    out
}

fn need(path: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is needed for this test (apt-get install chromium chromium-driver, as in the README's test command)"
    );
}

#[test]
fn page_draws_the_lab_takes_a_link_down_downloads_a_capture_and_refuses_without_token() {
    need("/usr/bin/chromium");
    need("/usr/bin/chromedriver");
    let lab = Lab::example("serve", "switch-triangle.toml");
    lab.up();
    let (_serve, first) = common::serve(&lab, Stdio::inherit());
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no URL in {first:?}"))
        .to_string();
    let addr = url["http://".len()..]
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let token = url.split("token=").nth(1).unwrap().to_string();

    // Without the token (or with a wrong one) nothing is read or changed.
    let (code, _) = http(&addr, "GET", "/api/graph.svg", &[], "");
    assert_eq!(code, 403);
    let (code, body) = http(&addr, "POST", "/api/link?a=h2&b=s2&state=down", &[], "");
    assert_eq!(code, 403, "{}", String::from_utf8_lossy(&body));
    let (code, _) = http(
        &addr,
        "POST",
        "/api/link?a=h2&b=s2&state=down",
        &[("X-Weft-Token", "0123456789abcdef0123456789abcdef")],
        "",
    );
    assert_eq!(code, 403);
    let (code, _) = http(
        &addr,
        "GET",
        "/api/exec?node=h1&cmd=reboot",
        &[("X-Weft-Token", &token)],
        "",
    );
    assert_eq!(code, 403, "only ip addr and ip route run");
    let t = lab.ok(&["graph", &lab.name]);
    assert!(
        t.contains("h2:eth0  <=========> s2:h2"),
        "the refused change happened: {t}"
    );
    let (kept, _) = kept_events(&lab);
    assert!(kept.matches("\"serve.refused\"").count() >= 3, "{kept}");
    // No CORS: nothing tells a browser another origin may read answers.
    let mut s = TcpStream::connect(&addr).unwrap();
    write!(
        s,
        "GET / HTTP/1.0\r\nHost: {addr}\r\nOrigin: http://evil.example\r\n\r\n"
    )
    .unwrap();
    let mut head = String::new();
    s.read_to_string(&mut head).unwrap();
    assert!(
        !head.to_ascii_lowercase().contains("access-control-allow"),
        "{head}"
    );

    // The browser.
    let port = free_port();
    let _driver = Kill(
        Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let daddr = format!("127.0.0.1:{port}");
    let t0 = Instant::now();
    while TcpStream::connect(&daddr).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "chromedriver did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let dir = lab.file.parent().unwrap().to_path_buf();
    let profile = dir.join("chromium-profile");
    let downloads = dir.join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let caps = json!({"capabilities": {"alwaysMatch": {
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                     "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync",
                     format!("--user-data-dir={}", profile.display()),
                     "--window-size=1500,950"],
            "prefs": {"download.default_directory": downloads.to_str().unwrap(),
                      "download.prompt_for_download": false}
        }
    }}});
    let (code, out) = http(&daddr, "POST", "/session", &[], &caps.to_string());
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(code, 200, "{v}");
    let d = Driver {
        addr: daddr.clone(),
        session: v["value"]["sessionId"].as_str().unwrap().to_string(),
    };
    struct End<'a>(&'a Driver);
    impl Drop for End<'_> {
        fn drop(&mut self) {
            let _ = http(
                &self.0.addr,
                "DELETE",
                &format!("/session/{}", self.0.session),
                &[],
                "",
            );
        }
    }
    let _end = End(&d);
    d.call(
        "POST",
        "/goog/cdp/execute",
        json!({"cmd": "Browser.setDownloadBehavior",
               "params": {"behavior": "allow", "downloadPath": downloads.to_str().unwrap()}}),
    );

    d.call("POST", "/url", json!({ "url": url }));
    // Every node and every cable of the lab is drawn.
    d.wait_for(
        "document.querySelectorAll('#graph g.node').length == 6 && document.querySelectorAll('#graph .cable').length == 6",
        Duration::from_secs(30),
    );
    let names = d.script(
        "return [...document.querySelectorAll('#graph g.node')].map(n => n.dataset.node).sort();",
    );
    assert_eq!(names, json!(["h1", "h2", "h3", "s1", "s2", "s3"]));
    let cables = d.script(
        "return [...document.querySelectorAll('#graph .cable')].map(l => l.dataset.a + ' ' + l.dataset.b + ' ' + l.dataset.state).sort();",
    );
    let cables: Vec<String> = serde_json::from_value(cables).unwrap();
    assert_eq!(cables.len(), 6, "{cables:?}");
    assert!(
        cables.contains(&"h1:eth0 s1:h1 up".to_string()),
        "{cables:?}"
    );
    assert_eq!(
        cables.iter().filter(|c| c.ends_with(" blocked")).count(),
        1,
        "{cables:?}"
    );
    d.wait_for(
        "document.querySelectorAll('#events li').length > 0",
        Duration::from_secs(30),
    );

    // Traffic (h2 pings h3 five times a second): its rate shows on the
    // cables it crosses, and in a clicked cable's panel both ways,
    // worked out between two redraws from the counters in the drawing.
    let _ping = Kill(
        lab.weft()
            .args([
                "exec", &lab.name, "h2", "--", "ping", "-q", "-i", "0.2", "-c", "150",
            ])
            .arg("10.80.0.3")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    d.wait_for(
        "[...document.querySelectorAll('#graph text.rate')].some(t => t.dataset.cable == 'h2:eth0|s2:h2' && /[1-9][0-9.]* (B|kB)\\/s/.test(t.textContent))",
        Duration::from_secs(30),
    );
    d.click_at("#graph .hit[data-a='h2:eth0']");
    d.wait_for(
        "/[1-9][0-9]* frames\\/s/.test((document.querySelector('#cable-traffic .rate-ab') || {}).textContent)",
        Duration::from_secs(30),
    );
    let shown = d.script("return document.getElementById('cable-traffic').textContent;");
    let shown = shown.as_str().unwrap();
    assert!(shown.contains("h2:eth0 → s2:h2"), "{shown}");
    assert!(shown.contains("s2:h2 → h2:eth0"), "{shown}");

    // Click the cable, then "down": the page redraws as soon as the
    // change is made, not at its next periodic redraw, and that redraw
    // shows the cable down. (Not a time bound: on a loaded machine taking
    // a switch port down and drawing the lab may take more than a second.)
    d.click_at("#graph .hit[data-a='h1:eth0']");
    d.wait_for(
        "document.getElementById('link-down')",
        Duration::from_secs(30),
    );
    let changes = "window.weftRedraws.filter(r => r.why == 'change').length";
    let before = d.script(&format!("return {changes};"));
    d.click("#link-down");
    d.wait_for(&format!("{changes} > {before}"), Duration::from_secs(30));
    let state =
        d.script("const c = document.querySelector(\"#graph .cable[data-a='h1:eth0']\"); return c ? c.dataset.state : null;");
    assert_eq!(state, json!("down"), "the redraw after the change");
    let t = lab.ok(&["graph", &lab.name]);
    assert!(t.contains("h1:eth0  <-- up / down --> s1:h1"), "{t}");

    // A node: its interfaces, and `ip addr` run in it.
    d.click_at("#graph g.node[data-node='h2'] > text");
    d.wait_for(
        "document.getElementById('node-interfaces')",
        Duration::from_secs(30),
    );
    d.click("#exec-ip-addr");
    d.wait_for(
        "document.getElementById('exec-out').textContent.includes('10.80.0.2/24')",
        Duration::from_secs(30),
    );

    // A capture of the s1-s2 cable downloads as pcapng; tshark reads it
    // (RSTP's hellos are on it every 2 s).
    d.click_at("#graph .hit[data-a='s1:to-s2']");
    d.wait_for(
        "document.getElementById('capture')",
        Duration::from_secs(30),
    );
    d.script("document.getElementById('capture-seconds').value = '2.5'; return 0;");
    d.click("#capture");
    let t0 = Instant::now();
    let file: PathBuf = loop {
        let done: Vec<PathBuf> = std::fs::read_dir(&downloads)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "pcapng"))
            .collect();
        if let Some(f) = done.into_iter().next() {
            break f;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no capture downloaded"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = Command::new("tshark")
        .arg("-r")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("STP"), "{text}");

    // A screenshot for people (docs/serve.png is one), the link still down.
    let png = b64decode(d.call("GET", "/screenshot", json!({})).as_str().unwrap());
    assert!(png.starts_with(b"\x89PNG"));
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-screenshot.png");
    std::fs::write(&shot, &png).unwrap();
    eprintln!("screenshot: {}", shot.display());

    // Back up from the page.
    d.click_at("#graph .hit[data-a='h1:eth0']");
    d.wait_for(
        "document.getElementById('link-up')",
        Duration::from_secs(30),
    );
    d.click("#link-up");
    d.wait_for(
        "document.querySelector(\"#graph .cable[data-a='h1:eth0'][data-state='up']\")",
        Duration::from_secs(30),
    );
    d.wait_for(
        "[...document.querySelectorAll('#events li')].some(l => l.textContent.includes('serve.action link'))",
        Duration::from_secs(30),
    );
    let (kept, _) = kept_events(&lab);
    assert!(kept.contains("\"serve.action\""), "{kept}");
    lab.ok(&["down", &lab.name]);
}
