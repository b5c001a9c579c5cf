//! The web UI in a real browser against the real server: `ui/e2e/run.mjs` drives Debian's
//! chromium with playwright-core through every flow the server supports (sign in, create, the
//! terminal, files, ports, stop/resume, clone, templates, governance, activity, metrics, costs,
//! settings, delete) and saves a screenshot of every page to `target/ui-screenshots/`. The flows of
//! the endpoints in [`REQUIRED`] must run: their absence fails the test.
//! Missing chromium, Node.js, `ui/node_modules` or a binary built without the UI fail the test,
//! naming the script that provides them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agenttier_integration_tests::Server;

const CHROMIUM: &str = "/usr/bin/chromium";
/// Endpoints the server has, so their flows run rather than show "not available on this server".
const REQUIRED: &str = "terminal,files,ports,governance,audit,warmpool,apiKeys";
/// A screenshot of each of these pages, with data, must come out of the run.
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

#[tokio::test(flavor = "multi_thread")]
async fn web_ui_end_to_end_in_chromium() {
    let repo = repo();
    let ui = repo.join("ui");
    require_tools(&ui);
    let server = Server::start();

    // The binary must have the UI built in (scripts/test.sh builds it before cargo).
    let index = reqwest::get(format!("{}/", server.url))
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

    let shots = repo.join("target/ui-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();

    let mut child = Command::new("node")
        .arg("e2e/run.mjs")
        .current_dir(&ui)
        .env("AGENTTIER_URL", &server.url)
        .env("AGENTTIER_ADMIN_KEY", &server.admin_key)
        .env("SCREENSHOT_DIR", &shots)
        .env("CHROMIUM", CHROMIUM)
        .env("E2E_REQUIRE", REQUIRED)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start node");
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
            panic!("the browser test did not finish in {DEADLINE:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let lines = reader.join().unwrap();
    assert!(
        status.success(),
        "the browser test failed ({status}); screenshots in {}; server log:\n{}",
        shots.display(),
        server.log()
    );
    let summary = lines
        .iter()
        .rev()
        .find(|l| l.starts_with("ui e2e:"))
        .expect("the browser test printed its summary");
    assert!(summary.ends_with(" 0 failed"), "{summary}");

    // A screenshot of every page, each showing data (not a blank page).
    let mut pngs: Vec<_> = std::fs::read_dir(&shots)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".png"))
        .collect();
    pngs.sort();
    for page in PAGES {
        let name = pngs
            .iter()
            .find(|n| n.trim_end_matches(".png").split_once('-').map(|x| x.1) == Some(page))
            .unwrap_or_else(|| panic!("no screenshot of the {page} page: {pngs:?}"));
        let size = std::fs::metadata(shots.join(name)).unwrap().len();
        assert!(size > 10_000, "{name} is suspiciously small ({size} bytes)");
    }
    assert!(
        !pngs.iter().any(|n| n.starts_with("FAILED")),
        "failure screenshots: {pngs:?}"
    );
}
