//! Archive download (`GET /sandboxes/{id}/archive`) and multi-file upload
//! (`POST /sandboxes/{id}/files-upload`) on the real single-node Kubernetes 1.20 (kubelet,
//! containerd, runc; busybox's `tar` in the sandbox image), through the REST API of the real
//! `agenttier serve --runtime kubernetes`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod kube_support;

use std::io::{Read, Write};
use std::time::Duration;

use kube_support::{Cluster, KubeServer, TestNamespace, apply_node_template, client};
use serde_json::{Value, json};

const NODE: Cluster = Cluster::Node;
const START: Duration = Duration::from_secs(90);

async fn get_bytes(server: &KubeServer, path: &str) -> (u16, String, Vec<u8>) {
    let response = server.http.get(server.api(path)).send().await.unwrap();
    let status = response.status().as_u16();
    let kind = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, kind, response.bytes().await.unwrap().to_vec())
}

async fn upload(server: &KubeServer, query: &str, body: Vec<u8>) -> (u16, Value) {
    let response = server
        .http
        .post(server.api(&format!("/sandboxes/files/files-upload?{query}")))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A tar whose names are written raw, so hostile ones get past the builder's own checks.
fn raw_tar(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, kind, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(*kind);
        header.set_mode(0o644);
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        if kind.is_symlink() || kind.is_hard_link() {
            header.set_size(0);
            header.as_old_mut().linkname[..data.len()].copy_from_slice(data);
            header.set_cksum();
            builder.append(&header, std::io::empty()).unwrap();
        } else {
            header.set_size(data.len() as u64);
            header.set_cksum();
            builder.append(&header, *data).unwrap();
        }
    }
    builder.into_inner().unwrap()
}

#[tokio::test]
async fn archives_and_uploads_run_through_pods_exec() {
    let client = client(NODE).await;
    kube_support::ensure_crds(&client).await;
    let ns = TestNamespace::create(&client, NODE, "e2e-archive").await;
    let template = format!("{}-shell", ns.name);
    apply_node_template(NODE, &template, "");
    let server = KubeServer::start(NODE, &ns.name, "e2e-archive", &["--dev-auth"]);
    let (status, body) = server
        .post(
            "/sandboxes",
            json!({"name": "files", "templateRef": {"name": template, "kind": "ClusterSandboxTemplate"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}\n{}", server.log());
    server.wait_phase("files", "Running", START).await;

    // A tree with a nested folder, a hidden one, 300 kB of random bytes, a symlink to outside,
    // a second name of a file (a hard link), and a link to a folder outside the workspace.
    let (out, err, code) = server
        .exec(
            "files",
            "set -e; mkdir -p proj/src/deep proj/.hidden; printf alpha > proj/src/deep/a.txt; \
             echo h > proj/.hidden/x; head -c 300000 /dev/urandom > proj/big.bin; \
             ln -s /etc/passwd proj/link; ln proj/src/deep/a.txt proj/second; \
             chmod 750 proj/src; ln -s /etc etc-link; md5sum proj/big.bin | cut -d' ' -f1",
        )
        .await;
    assert_eq!(code, 0, "{err}");
    let big_md5 = out.trim().to_string();

    let (status, kind, bytes) =
        get_bytes(&server, "/sandboxes/files/archive?path=/workspace/proj").await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    assert_eq!(kind, "application/zip");
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut names: Vec<String> = zip.file_names().map(|n| n.unwrap().into_owned()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            ".hidden/",
            ".hidden/x",
            "big.bin",
            "link",
            "second",
            "src/",
            "src/deep/",
            "src/deep/a.txt"
        ]
    );
    let mut read = |name: &str| {
        let mut data = Vec::new();
        zip.by_name(name).unwrap().read_to_end(&mut data).unwrap();
        data
    };
    assert_eq!(read("src/deep/a.txt"), b"alpha");
    assert_eq!(read("second"), b"alpha", "a hard link is stored as a copy");
    assert_eq!(
        read("link"),
        b"/etc/passwd",
        "a symlink is stored as its target"
    );
    assert_eq!(read(".hidden/x"), b"h\n");
    // The random bytes arrive whole: they are uploaded again below and their md5 in the Pod
    // compared with the original's.
    let big = read("big.bin");
    assert_eq!(big.len(), 300_000);
    assert_eq!(
        zip.by_name("src/").unwrap().unix_mode().map(|m| m & 0o777),
        Some(0o750)
    );

    // The whole workspace by default; a link out of it, a missing folder and a path outside are
    // refused.
    let (status, _, bytes) = get_bytes(&server, "/sandboxes/files/archive").await;
    assert_eq!(status, 200);
    let whole = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    assert!(
        whole
            .file_names()
            .any(|n| n.unwrap() == "proj/src/deep/a.txt")
    );
    let (status, _, body) =
        get_bytes(&server, "/sandboxes/files/archive?path=/workspace/etc-link").await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    let (status, _, _) = get_bytes(&server, "/sandboxes/files/archive?path=/workspace/none").await;
    assert_eq!(status, 404);
    let (status, _, _) = get_bytes(&server, "/sandboxes/files/archive?path=/etc").await;
    assert_eq!(status, 400);

    // Upload a tar.gz: folders, files (one with a 150-byte name), a symlink inside, the
    // downloaded random bytes; then check it in the Pod.
    let long = format!("deep/{}", "n".repeat(150));
    let mut builder = tar::Builder::new(Vec::new());
    let mut add = |name: &str, kind: tar::EntryType, data: &[u8], mode: u32| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(if kind.is_symlink() {
            0
        } else {
            data.len() as u64
        });
        if kind.is_symlink() {
            builder
                .append_link(&mut header, name, std::str::from_utf8(data).unwrap())
                .unwrap();
        } else {
            builder.append_data(&mut header, name, data).unwrap();
        }
    };
    add("./deep/", tar::EntryType::Directory, b"", 0o755);
    add("deep/a.txt", tar::EntryType::Regular, b"uploaded", 0o640);
    add(&long, tar::EntryType::Regular, b"long name", 0o644);
    add(
        "run.sh",
        tar::EntryType::Regular,
        b"#!/bin/sh\necho ran\n",
        0o755,
    );
    add("deep/ln", tar::EntryType::Symlink, b"a.txt", 0o777);
    add("big.bin", tar::EntryType::Regular, &big, 0o600);
    let tar = builder.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let (status, body) = upload(&server, "path=/workspace/up", gz.finish().unwrap()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["path"], "/workspace/up");
    assert_eq!(
        (
            &body["files"],
            &body["dirs"],
            &body["symlinks"],
            &body["bytes"]
        ),
        (
            &json!(4),
            &json!(1),
            &json!(1),
            &json!(8 + 9 + 19 + 300_000)
        )
    );
    let (out, err, code) = server
        .exec(
            "files",
            &format!(
                "cd up && cat deep/a.txt; echo; cat deep/ln; echo; cat {long}; echo; ./run.sh; \
                 stat -c %a deep/a.txt; md5sum big.bin | cut -d' ' -f1; ls -A"
            ),
        )
        .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        format!("uploaded\nuploaded\nlong name\nran\n640\n{big_md5}\nbig.bin\ndeep\nrun.sh\n"),
        "no spool file is left behind either"
    );

    // A zip, its format sniffed.
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.add_directory("z/", zip::write::SimpleFileOptions::default())
        .unwrap();
    zip.start_file("z/b.txt", zip::write::SimpleFileOptions::default())
        .unwrap();
    zip.write_all(b"zipped").unwrap();
    let (status, body) = upload(
        &server,
        "path=/workspace/up",
        zip.finish().unwrap().into_inner(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (out, _, _) = server.exec("files", "cat up/z/b.txt").await;
    assert_eq!(out, "zipped");

    // Escapes are refused whole: nothing of the upload is written.
    server
        .exec(
            "files",
            "mkdir -p /tmp/outside && ln -s /tmp/outside up/out",
        )
        .await;
    let refused = [
        raw_tar(&[
            ("fine.txt", tar::EntryType::Regular, b"x"),
            ("../evil", tar::EntryType::Regular, b"x"),
        ]),
        raw_tar(&[
            ("fine.txt", tar::EntryType::Regular, b"x"),
            ("ln", tar::EntryType::Symlink, b"/etc"),
        ]),
        raw_tar(&[
            ("fine.txt", tar::EntryType::Regular, b"x"),
            ("h", tar::EntryType::Link, b"../../etc/passwd"),
        ]),
        // Through a symlink that is already in the destination.
        raw_tar(&[
            ("fine.txt", tar::EntryType::Regular, b"x"),
            ("out/x", tar::EntryType::Regular, b"x"),
        ]),
        // A file where a folder is.
        raw_tar(&[
            ("fine.txt", tar::EntryType::Regular, b"x"),
            ("deep", tar::EntryType::Regular, b"x"),
        ]),
    ];
    for (i, tar) in refused.into_iter().enumerate() {
        let (status, body) = upload(&server, "path=/workspace/up&format=tar", tar).await;
        assert_eq!(status, 400, "case {i}: {body}");
    }
    let (out, _, _) = server
        .exec(
            "files",
            "ls up/fine.txt /tmp/outside/x /workspace/evil 2>&1 | grep -c 'No such file'; \
             ls -A /tmp/outside | wc -l",
        )
        .await;
    assert_eq!(out, "3\n0\n", "a refused upload wrote nothing");

    // Not an archive; a place the sandbox user cannot write.
    let (status, body) = upload(&server, "path=/workspace/up", b"hello".to_vec()).await;
    assert_eq!(status, 400, "{body}");
    let tar = raw_tar(&[("a.txt", tar::EntryType::Regular, b"x")]);
    let (status, body) = upload(&server, "path=/etc/nope", tar).await;
    assert_eq!(status, 403, "{body}");

    let status = server.delete("/sandboxes/files").await;
    assert_eq!(status, 204);
}
