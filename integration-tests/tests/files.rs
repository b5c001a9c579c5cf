//! End-to-end tests of files and archives (contract §4.10 and the multi-file upload) against the
//! real binary and real bubblewrap sandboxes: upload, list, download, zip archives checked
//! against the tree, a large archive streamed in bounded server memory, tar and zip uploads, and
//! every escape attempt refused. Needs root, bubblewrap and `cargo build -p agenttier`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};

use agenttier_integration_tests::{Server, status_json};
use serde_json::{Value, json};

async fn put(
    server: &Server,
    sandbox: &str,
    path: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, Value) {
    let url = server.api(&format!("/sandboxes/{sandbox}/files/{path}"));
    status_json(server.http.put(url).body(body).send().await.unwrap()).await
}

async fn get_bytes(server: &Server, path: &str) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let response = server.http.get(server.api(path)).send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn upload_list_and_download_round_trip() {
    let server = Server::start();
    server.create_running("files-rt", "minimal-shell").await;
    let payload: Vec<u8> = (0..5_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let (status, body) = put(
        &server,
        "files-rt",
        "workspace/deep/er/blob.bin",
        payload.clone(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body,
        json!({"path": "/workspace/deep/er/blob.bin", "bytes": 5_000_000})
    );
    let (out, _, code) = server
        .exec("files-rt", "stat -c '%s %u' /workspace/deep/er/blob.bin")
        .await;
    assert_eq!(
        (out.trim(), code),
        ("5000000 1000", 0),
        "written in place, as the sandbox user"
    );

    let (status, listing) = server
        .get("/sandboxes/files-rt/files/?path=/workspace/deep/er")
        .await;
    assert_eq!(status, 200, "{listing}");
    assert_eq!(listing["path"], "/workspace/deep/er");
    let entry = &listing["entries"][0];
    assert_eq!(entry["name"], "blob.bin");
    assert_eq!(entry["size"], 5_000_000);
    assert_eq!(entry["isDir"], false);
    assert_eq!(entry["mode"], "-rw-r--r--");
    assert!(entry["modifiedAt"].as_i64().unwrap() > 1_600_000_000);
    let (_, listing) = server.get("/sandboxes/files-rt/files/").await;
    let names: Vec<&str> = listing["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"deep"),
        "the default is /workspace: {names:?}"
    );
    server.exec("files-rt", "ln -s deep /workspace/link").await;
    let (_, listing) = server.get("/sandboxes/files-rt/files/").await;
    assert!(
        listing["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "link -> deep")
    );

    let (status, headers, bytes) = get_bytes(
        &server,
        "/sandboxes/files-rt/files/workspace/deep/er/blob.bin",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/octet-stream");
    assert_eq!(headers["content-length"], "5000000");
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=\"blob.bin\""
    );
    assert!(bytes == payload, "downloaded bytes differ");

    // Overwriting keeps the file's mode.
    server
        .exec("files-rt", "chmod 750 /workspace/deep/er/blob.bin")
        .await;
    put(&server, "files-rt", "workspace/deep/er/blob.bin", "short").await;
    let (out, _, _) = server
        .exec("files-rt", "stat -c '%a %s' /workspace/deep/er/blob.bin")
        .await;
    assert_eq!(out.trim(), "750 5");

    let (status, body) = server
        .get("/sandboxes/files-rt/files/workspace/missing.txt")
        .await;
    assert_eq!(
        (status, body),
        (
            404,
            json!({"error": "file not found: /workspace/missing.txt"})
        )
    );
    let (status, body) = server
        .get("/sandboxes/files-rt/files/?path=/workspace/nope")
        .await;
    assert_eq!(
        (status, body),
        (404, json!({"error": "path not found: /workspace/nope"}))
    );
}

#[tokio::test]
async fn the_32_mib_limit_holds_both_ways() {
    let server = Server::start();
    server.create_running("files-limit", "minimal-shell").await;
    let (status, body) = put(
        &server,
        "files-limit",
        "workspace/big",
        vec![0u8; (32 << 20) + 1],
    )
    .await;
    assert_eq!(
        (status, body),
        (413, json!({"error": "payload exceeds 33554432 bytes"}))
    );
    let (out, _, _) = server.exec("files-limit", "ls -A /workspace").await;
    assert_eq!(out.trim(), "", "a refused upload leaves nothing behind");
    let (status, _) = put(
        &server,
        "files-limit",
        "workspace/exact",
        vec![1u8; 32 << 20],
    )
    .await;
    assert_eq!(status, 201);
    server
        .exec(
            "files-limit",
            "head -c 33554433 /dev/zero > /workspace/over",
        )
        .await;
    let (status, body) = server
        .get("/sandboxes/files-limit/files/workspace/over")
        .await;
    assert_eq!(status, 413, "{body}");
}

#[tokio::test]
async fn escape_attempts_are_refused_or_stay_inside_the_sandbox() {
    let server = Server::start();
    server.create_running("files-esc", "minimal-shell").await;
    let id = "files-esc";
    for path in [
        "/sandboxes/files-esc/files/workspace/a%27b",
        "/sandboxes/files-esc/files/workspace/a%60b",
        "/sandboxes/files-esc/files/workspace/a%5Cb",
        "/sandboxes/files-esc/files/workspace/a%0Ab",
        "/sandboxes/files-esc/files/workspace/a%0Db",
        "/sandboxes/files-esc/files/workspace/a%00b",
        "/sandboxes/files-esc/files/..%2F..%2F..%2F..%2Fetc%2Fshadow",
        "/sandboxes/files-esc/files/?path=/../../etc",
        "/sandboxes/files-esc/archive?path=/etc",
        "/sandboxes/files-esc/archive?path=/workspace/../etc",
        "/sandboxes/files-esc/archive?path=/workspace2",
    ] {
        let (status, body) = server.get(path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    let long_name = format!("workspace/{}", "n".repeat(256));
    let (status, _) = put(&server, id, &long_name, "x").await;
    assert_eq!(status, 400);
    let long_path = format!("workspace/{}", "d/".repeat(2100));
    let (status, _) = put(&server, id, &long_path, "x").await;
    assert_eq!(status, 400);

    // Host paths do not exist in the sandbox's view: the data directory, root's home.
    let state_db = server.data_dir().join("state.db");
    let (status, _) = server
        .get(&format!("/sandboxes/{id}/files{}", state_db.display()))
        .await;
    assert_eq!(status, 404, "the host's state database is not visible");
    let (status, _) = server
        .get(&format!("/sandboxes/{id}/files/?path=/root"))
        .await;
    assert_eq!(status, 404);
    // Writes outside the workspace land in the sandbox's own /tmp or fail on its read-only /etc.
    let marker = format!("agenttier-escape-{}", std::process::id());
    let (status, _) = put(&server, id, &format!("tmp/{marker}"), "x").await;
    assert_eq!(status, 201);
    assert!(
        !std::path::Path::new("/tmp").join(&marker).exists(),
        "wrote the host's /tmp"
    );
    let (status, body) = put(&server, id, &format!("etc/{marker}"), "x").await;
    assert!(status == 403 || status == 500, "{status} {body}");
    assert!(
        !std::path::Path::new("/etc").join(&marker).exists(),
        "wrote the host's /etc"
    );

    // The archive does not follow a symlink out of the workspace.
    server
        .exec(
            id,
            "ln -s /etc /workspace/etc-link && ln -s /etc/passwd /workspace/pw",
        )
        .await;
    let (status, body) = server
        .get(&format!("/sandboxes/{id}/archive?path=/workspace/etc-link"))
        .await;
    assert_eq!(
        (status, body),
        (400, json!({"error": "path must live under /workspace"}))
    );
    let (status, _, bytes) = get_bytes(&server, &format!("/sandboxes/{id}/archive")).await;
    assert_eq!(status, 200);
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut target = String::new();
    zip.by_name("pw")
        .unwrap()
        .read_to_string(&mut target)
        .unwrap();
    assert_eq!(
        target, "/etc/passwd",
        "symlinks are stored as their target, not followed"
    );
    assert!(zip.by_name("etc-link/passwd").is_err());
}

/// The expected tree: relative path → content (`None` for directories).
fn tree() -> Vec<(&'static str, Option<Vec<u8>>)> {
    vec![
        ("src/", None),
        ("src/main.rs", Some(b"fn main() {}\n".to_vec())),
        ("src/nested/", None),
        (
            "src/nested/data.bin",
            Some((0..70_000u32).map(|i| (i % 251) as u8).collect()),
        ),
        ("README.md", Some(b"# hello\n".to_vec())),
        ("empty/", None),
    ]
}

#[tokio::test]
async fn archives_match_the_tree_and_uploads_unpack_safely() {
    let server = Server::start();
    server.create_running("files-zip", "minimal-shell").await;
    let id = "files-zip";
    for (path, content) in tree() {
        match content {
            Some(bytes) => assert_eq!(
                put(&server, id, &format!("workspace/{path}"), bytes)
                    .await
                    .0,
                201
            ),
            None => assert_eq!(
                server
                    .exec(id, &format!("mkdir -p /workspace/{path}"))
                    .await
                    .2,
                0
            ),
        }
    }
    server
        .exec(id, "ln -s src/main.rs /workspace/main-link")
        .await;
    let (status, headers, bytes) = get_bytes(&server, &format!("/sandboxes/{id}/archive")).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/zip");
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=\"files-zip-workspace.zip\""
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["cache-control"], "no-store");
    assert!(
        headers.get("content-length").is_none(),
        "streamed, not buffered"
    );
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut names: Vec<String> = zip.file_names().map(|n| n.unwrap().into_owned()).collect();
    names.sort();
    let mut expected: Vec<String> = tree().iter().map(|(p, _)| (*p).to_owned()).collect();
    expected.push("main-link".into());
    expected.sort();
    assert_eq!(names, expected);
    for (path, content) in tree() {
        if let Some(content) = content {
            let mut got = Vec::new();
            zip.by_name(path).unwrap().read_to_end(&mut got).unwrap();
            assert_eq!(got, content, "{path}");
        }
    }
    // A subfolder's archive is relative to it.
    let (_, headers, bytes) = get_bytes(
        &server,
        &format!("/sandboxes/{id}/archive?path=/workspace/src"),
    )
    .await;
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=\"files-zip-src.zip\""
    );
    let zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    assert!(zip.index_for_name("main.rs").is_some());
    let (status, body) = server
        .get(&format!("/sandboxes/{id}/archive?path=/workspace/none"))
        .await;
    assert_eq!(
        (status, body),
        (
            404,
            json!({"error": "directory not found: /workspace/none"})
        )
    );

    // A tar upload unpacks into a folder, with a symlink that stays inside.
    let mut tar = tar::Builder::new(Vec::new());
    for (path, content) in tree() {
        let mut header = tar::Header::new_gnu();
        match content {
            Some(bytes) => {
                header.set_size(bytes.len() as u64);
                header.set_mode(0o644);
                tar.append_data(&mut header, path, bytes.as_slice())
                    .unwrap();
            }
            None => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                tar.append_data(&mut header, path, std::io::empty())
                    .unwrap();
            }
        }
    }
    let mut link = tar::Header::new_gnu();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_size(0);
    tar.append_link(&mut link, "src/link", "main.rs").unwrap();
    let tar_bytes = tar.into_inner().unwrap();
    let url = server.api(&format!("/sandboxes/{id}/files-upload?path=/workspace/up"));
    let (status, body) =
        status_json(server.http.post(&url).body(tar_bytes).send().await.unwrap()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["path"], "/workspace/up");
    assert_eq!(
        (body["files"].as_u64(), body["symlinks"].as_u64()),
        (Some(3), Some(1))
    );
    let (out, _, _) = server.exec(id, "cat /workspace/up/src/link && cmp /workspace/up/src/nested/data.bin /workspace/src/nested/data.bin && echo same").await;
    assert_eq!(out, "fn main() {}\nsame\n");

    // A zip upload too.
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file("z/one.txt", zip::write::SimpleFileOptions::default())
        .unwrap();
    zip.write_all(b"one").unwrap();
    let zip_bytes = zip.finish().unwrap().into_inner();
    let url = server.api(&format!(
        "/sandboxes/{id}/files-upload?path=/workspace/zz&format=zip"
    ));
    let (status, body) =
        status_json(server.http.post(&url).body(zip_bytes).send().await.unwrap()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        server.exec(id, "cat /workspace/zz/z/one.txt").await.0,
        "one"
    );

    // Hostile archives are refused whole.
    for (name, bytes) in hostile_tars() {
        let url = server.api(&format!(
            "/sandboxes/{id}/files-upload?path=/workspace/evil"
        ));
        let (status, body) =
            status_json(server.http.post(&url).body(bytes).send().await.unwrap()).await;
        assert_eq!(status, 400, "{name}: {body}");
        let (out, _, _) = server
            .exec(id, "ls -A /workspace/evil 2>/dev/null; ls /tmp")
            .await;
        assert!(
            !out.contains("fine.txt") && !out.contains("pwned"),
            "{name} wrote {out:?}"
        );
    }
    let url = server.api(&format!("/sandboxes/{id}/files-upload?path=/workspace/x"));
    let (status, _) = status_json(
        server
            .http
            .post(&url)
            .body("not an archive")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
}

/// Tar archives that try to write outside their folder; each starts with a harmless file that
/// must not be written either.
fn hostile_tars() -> Vec<(&'static str, Vec<u8>)> {
    let raw = |entries: &[(&str, tar::EntryType, &str)]| {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, kind, link) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_mode(0o644);
            header.set_size(if link.is_empty() { 1 } else { 0 });
            header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
            header.set_cksum();
            let data: &[u8] = if link.is_empty() { b"x" } else { b"" };
            builder.append(&header, data).unwrap();
        }
        builder.into_inner().unwrap()
    };
    let fine = ("fine.txt", tar::EntryType::Regular, "");
    vec![
        (
            "dot-dot",
            raw(&[fine, ("../../../tmp/pwned", tar::EntryType::Regular, "")]),
        ),
        (
            "absolute",
            raw(&[fine, ("/tmp/pwned", tar::EntryType::Regular, "")]),
        ),
        (
            "symlink-out",
            raw(&[fine, ("l", tar::EntryType::Symlink, "/tmp")]),
        ),
        (
            "symlink-up",
            raw(&[fine, ("l", tar::EntryType::Symlink, "../../..")]),
        ),
        (
            "through-symlink",
            raw(&[
                fine,
                ("l", tar::EntryType::Symlink, "d"),
                ("l/pwned", tar::EntryType::Regular, ""),
            ]),
        ),
        (
            "hardlink-out",
            raw(&[fine, ("h", tar::EntryType::Link, "../../etc/passwd")]),
        ),
    ]
}

/// Resident memory of a process, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[tokio::test]
async fn a_large_workspace_streams_in_bounded_server_memory() {
    let server = Server::start();
    server.create_running("files-large", "minimal-shell").await;
    let id = "files-large";
    // 200 MB in 4 files of incompressible bytes, so the zip is as large as the tree.
    let (_, err, code) = server
        .exec(id, "mkdir -p /workspace/big && for i in 1 2 3 4; do head -c 50000000 /dev/urandom > /workspace/big/f$i; done")
        .await;
    assert_eq!(code, 0, "{err}");
    let pid = server.pid().unwrap();
    let before = rss(pid);
    let response = server
        .http
        .get(server.api(&format!("/sandboxes/{id}/archive")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let spool = tempfile::tempfile().unwrap();
    let mut writer = std::io::BufWriter::new(spool.try_clone().unwrap());
    let mut response = response;
    let (mut total, mut peak, mut next_sample) = (0u64, before, 0u64);
    while let Some(chunk) = response.chunk().await.unwrap() {
        total += chunk.len() as u64;
        writer.write_all(&chunk).unwrap();
        if total >= next_sample {
            peak = peak.max(rss(pid));
            next_sample += 10 << 20;
        }
    }
    writer.flush().unwrap();
    drop(writer);
    assert!(
        total > 200_000_000,
        "the archive holds the data: {total} bytes"
    );
    let growth = peak.saturating_sub(before);
    assert!(
        growth < 64 << 20,
        "server RSS grew by {} MiB while streaming {} MiB",
        growth >> 20,
        total >> 20
    );
    // The zip is whole: every entry reads back with its checksum and size.
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(spool)).unwrap();
    for i in 1..=4 {
        let mut entry = zip.by_name(&format!("big/f{i}")).unwrap();
        let n = std::io::copy(&mut entry, &mut std::io::sink()).unwrap();
        assert_eq!(n, 50_000_000);
    }
}
