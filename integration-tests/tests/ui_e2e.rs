//! The web UI in a real browser against the real server. `ui/e2e/run.mjs` drives Debian's
//! chromium with playwright-core through every flow the server supports: sign in, create, the
//! terminal, files, ports, stop/resume, clone, templates, governance, activity, metrics, costs,
//! settings and delete. It saves a screenshot of every page to `target/ui-screenshots/`. The
//! flows of the endpoints in [`REQUIRED`] must run: if one is missing, the test fails.
//! `ui/e2e/oidc.mjs` signs in through an OIDC provider (authorization code with PKCE) and uses
//! the ID token for the API and the terminal.
//!
//! Missing chromium, Node.js, `ui/node_modules` or a binary built without the UI fail the test,
//! and the message names the script that provides them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agenttier_integration_tests::{Server, agenttier_bin, stop_all_sandboxes};

const CHROMIUM: &str = "/usr/bin/chromium";
/// Endpoints the server has, so their flows run rather than show "not available on this server".
const REQUIRED: &str = "terminal,files,ports,governance,audit,warmpool,apiKeys";
/// A screenshot of each of these pages, with data, must come out of the main run.
const PAGES: [&str; 11] = [
    "login",
    "dashboard",
    "terminal",
    "files",
    "preview",
    "templates",
    "create-rejected-by-policy",
    "activity",
    "metrics",
    "costs",
    "settings",
];
const DEADLINE: Duration = Duration::from_secs(300);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Fails (never skips) when something the browser test needs is missing.
fn require_tools(ui: &Path) {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: run `scripts/install-deps.sh test` (installs Debian's chromium)"
    );
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "Node.js is missing: run `scripts/install-deps.sh test`"
    );
    assert!(
        ui.join("node_modules/playwright-core").is_dir(),
        "{}/node_modules is missing: run `scripts/install-deps.sh test` (or `scripts/build-ui.sh`)",
        ui.display()
    );
}

/// Asserts that the binary has the UI built in (scripts/test.sh builds it before cargo).
async fn require_embedded_ui(url: &str) {
    let index = reqwest::get(format!("{url}/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        index.contains("<div id=\"root\">"),
        "the agenttier binary was built without the web UI: run `scripts/build-ui.sh`, then \
         `cargo build -p agenttier` (scripts/test.sh does both); / answered:\n{index}"
    );
}

/// Runs `node <script>` in `ui/`, echoing its output; returns whether it succeeded and its
/// lines.
async fn run_node(script: &str, env: &[(&str, &str)]) -> (bool, Vec<String>) {
    let mut command = Command::new("node");
    command
        .arg(script)
        .current_dir(repo().join("ui"))
        .env("CHROMIUM", CHROMIUM)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("start node");
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("{line}");
            lines.push(line);
        }
        lines
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{script} did not finish in {DEADLINE:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let lines = reader.join().unwrap();
    let summary = lines.iter().rev().find(|l| l.starts_with("ui e2e:"));
    let clean = summary.is_some_and(|s| s.ends_with(" 0 failed"));
    (status.success() && clean, lines)
}

/// A directory of screenshots, emptied of the last run's pictures.
fn screenshot_dir(sub: &str) -> PathBuf {
    let dir = repo().join("target/ui-screenshots").join(sub);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "png") {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }
    dir
}

fn pngs(dir: &Path) -> Vec<String> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".png"))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn web_ui_end_to_end_in_chromium() {
    require_tools(&repo().join("ui"));
    let server = Server::start();
    require_embedded_ui(&server.url).await;
    let shots = screenshot_dir("");

    let (ok, _) = run_node(
        "e2e/run.mjs",
        &[
            ("AGENTTIER_URL", &server.url),
            ("AGENTTIER_ADMIN_KEY", &server.admin_key),
            ("SCREENSHOT_DIR", shots.to_str().unwrap()),
            ("E2E_REQUIRE", REQUIRED),
        ],
    )
    .await;
    assert!(
        ok,
        "the browser test failed; screenshots in {}; server log:\n{}",
        shots.display(),
        server.log()
    );

    // A screenshot of every page, each showing data (not a blank page).
    let names = pngs(&shots);
    for page in PAGES {
        let name = names
            .iter()
            .find(|n| n.trim_end_matches(".png").split_once('-').map(|x| x.1) == Some(page))
            .unwrap_or_else(|| panic!("no screenshot of the {page} page: {names:?}"));
        let size = std::fs::metadata(shots.join(name)).unwrap().len();
        assert!(size > 10_000, "{name} is suspiciously small ({size} bytes)");
    }
    assert!(
        !names.iter().any(|n| n.starts_with("FAILED")),
        "failure screenshots: {names:?}"
    );
}

/// A child process killed (and reaped) when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `child`'s stdout lines up to the first that contains `stop` (30 s at most); the rest of its
/// output is drained in the background.
fn lines_until(child: &mut Child, stop: &str) -> Vec<String> {
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        let done = line.contains(stop);
        seen.push(line);
        if done {
            std::thread::spawn(move || for _ in lines {});
            return seen;
        }
    }
    panic!("no line with {stop:?} in: {seen:?}");
}

/// The rest of the first line that starts with `prefix` (after trimming).
fn field(lines: &[String], prefix: &str) -> String {
    lines
        .iter()
        .find_map(|l| l.trim().strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in {lines:?}"))
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn web_ui_single_sign_on_with_oidc_pkce() {
    let ui = repo().join("ui");
    require_tools(&ui);
    let mut provider = Command::new("node")
        .args(["e2e/oidc-provider.mjs", "agenttier-ui"])
        .current_dir(&ui)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the OIDC provider");
    let issuer = field(&lines_until(&mut provider, "issuer "), "issuer ");
    let _provider = Killed(provider);

    let tmp = tempfile::Builder::new()
        .prefix("agenttier-ui-sso-")
        .tempdir()
        .unwrap();
    let data = tmp.path().join("data");
    let log = std::fs::File::create(tmp.path().join("server.log")).unwrap();
    let mut server = Command::new(agenttier_bin())
        .args(["serve", "--listen-addr", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .args(["--oidc-issuer", &issuer, "--oidc-client-id", "agenttier-ui"])
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start agenttier serve");
    let banner = lines_until(&mut server, "Log in");
    let server = Killed(server);
    let url = field(&banner, "API:")
        .trim_end_matches("/api/v1")
        .to_string();
    let admin_key = banner
        .iter()
        .find_map(|l| l.split_whitespace().find(|w| w.starts_with("atk_")))
        .expect("the admin key in the banner")
        .to_string();
    require_embedded_ui(&url).await;
    let shots = screenshot_dir("sso");

    let (ok, _) = run_node(
        "e2e/oidc.mjs",
        &[
            ("AGENTTIER_URL", &url),
            ("AGENTTIER_ADMIN_KEY", &admin_key),
            ("OIDC_ISSUER", &issuer),
            ("SCREENSHOT_DIR", shots.to_str().unwrap()),
        ],
    )
    .await;
    drop(server);
    stop_all_sandboxes(&data);
    assert!(
        ok,
        "the single sign-on browser test failed; screenshots in {}; server log:\n{}",
        shots.display(),
        std::fs::read_to_string(tmp.path().join("server.log")).unwrap_or_default()
    );
    let names = pngs(&shots);
    for page in ["sso-login", "sso-provider", "sso-dashboard", "sso-terminal"] {
        assert!(
            names.iter().any(|n| n.ends_with(&format!("-{page}.png"))),
            "no screenshot of {page}: {names:?}"
        );
    }
}
