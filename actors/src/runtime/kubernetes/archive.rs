//! Folder archives through pods/exec, with the `tar` of the sandbox image (busybox's is enough):
//! a script resolves the folder (symlinks followed; it must still lie under `/workspace`), prints
//! the real path, then runs `tar -cf - .` there. This side turns the tar stream into a zip as it
//! arrives (on a blocking thread, into a bounded channel), so neither side holds the tree.
//! Symlinks are stored as files holding their target, as the local runtime does. A zip has no
//! hard links, so a second name of a file (which tar stores as a link) is read again by name once
//! the tar stream ended. Uploads are [`super::unpack`]'s.

use std::io::{Read, Write};
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use bytes::Bytes;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::AttachParams;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;
use tokio_util::io::{StreamReader, SyncIoBridge};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use super::exec;
use super::files::{file_error, read_file, script_argv};
use crate::runtime::files::zip_util::zip_time;
use crate::runtime::files::{ARCHIVE_ROOT, MAX_ARCHIVE_BYTES};
use crate::runtime::{ByteStream, RuntimeError};

/// Bytes per chunk between the blocking converters and the async side.
pub(super) const CHUNK_BYTES: usize = 64 * 1024;
/// How many chunks may wait in between.
pub(super) const PIPE_CHUNKS: usize = 4;
/// Most stderr kept from a `tar` in the Pod.
pub(super) const STDERR_CAP: usize = 64 * 1024;

const ARCHIVE_SCRIPT: &str = r#"p=$1; root=$2
[ -e "$p" ] || { echo "directory not found: $p" >&2; exit 3; }
r=$(readlink -f -- "$p") && w=$(readlink -f -- "$root") || { echo "directory not found: $p" >&2; exit 3; }
case "$r" in "$w"|"$w"/*) ;; *) echo "path must live under $root" >&2; exit 4;; esac
[ -d "$r" ] || { echo "directory not found: $p" >&2; exit 3; }
cd -- "$r" 2>/dev/null || { echo "permission denied: $p" >&2; exit 6; }
command -v tar >/dev/null 2>&1 || { echo "the sandbox image has no tar" >&2; exit 8; }
printf '%s\n' "$r"
exec tar -cf - ."#;

pub(super) fn no_stream(pod: &str, which: &str) -> RuntimeError {
    RuntimeError::Agent {
        id: pod.to_string(),
        detail: format!("the exec has no {which}"),
    }
}

/// A `Write` that hands chunks to the async side through a bounded channel (blocking while it
/// is full) and refuses to go past `cap` bytes.
pub(super) struct ChannelWriter {
    tx: mpsc::Sender<std::io::Result<Bytes>>,
    buf: Vec<u8>,
    total: u64,
    cap: u64,
}

impl ChannelWriter {
    pub(super) fn new(tx: mpsc::Sender<std::io::Result<Bytes>>, cap: u64) -> Self {
        Self {
            tx,
            buf: Vec::with_capacity(CHUNK_BYTES),
            total: 0,
            cap,
        }
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.total + data.len() as u64 > self.cap {
            return Err(std::io::Error::other(format!(
                "the archive exceeds {} bytes and was cut off",
                self.cap
            )));
        }
        let n = data.len().min(CHUNK_BYTES - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        self.total += n as u64;
        if self.buf.len() == CHUNK_BYTES {
            self.flush()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_BYTES));
        self.tx
            .blocking_send(Ok(Bytes::from(chunk)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "receiver gone"))
    }
}

/// Reads the script's first line (before any payload); on a failed script, its file error.
async fn first_line(
    stdout: &mut (impl AsyncRead + Unpin),
    stderr: &mut (impl AsyncRead + Unpin),
    process: &mut kube::api::AttachedProcess,
) -> Result<Vec<u8>, RuntimeError> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match stdout.read(&mut byte).await {
            Ok(1) if byte[0] == b'\n' => return Ok(line),
            Ok(1) if line.len() < crate::runtime::files::MAX_PATH_LEN + 1 => line.push(byte[0]),
            _ => {
                let mut message = Vec::new();
                let _ = stderr
                    .take(STDERR_CAP as u64)
                    .read_to_end(&mut message)
                    .await;
                let code = match process.take_status() {
                    Some(status) => status.await.as_ref().and_then(exec::exit_code),
                    None => None,
                };
                return Err(file_error(code, &message));
            }
        }
    }
}

/// Streams a zip of the folder `path` (under `/workspace`, symlinks resolved).
pub async fn archive(pods: &Api<Pod>, pod: &str, path: &str) -> Result<ByteStream, RuntimeError> {
    let argv = script_argv(ARCHIVE_SCRIPT, &[path, ARCHIVE_ROOT]);
    let params = AttachParams::default().stdout(true).stderr(true);
    let mut process = exec::attach(pods, pod, argv, params).await?;
    let mut stdout = process.stdout().ok_or_else(|| no_stream(pod, "stdout"))?;
    let mut stderr = process.stderr().ok_or_else(|| no_stream(pod, "stderr"))?;
    let root = first_line(&mut stdout, &mut stderr, &mut process).await?;
    let root = PathBuf::from(std::ffi::OsString::from_vec(root));
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(PIPE_CHUNKS);
    let handle = tokio::runtime::Handle::current();
    let (pods, pod) = (pods.clone(), pod.to_string());
    tokio::spawn(async move {
        // Drained, so tar's complaints about unreadable files never stall its stdout (a
        // dropped reader would end the whole exec).
        let stderr_drain = tokio::spawn(async move {
            let _ = tokio::io::copy(&mut stderr, &mut tokio::io::sink()).await;
        });
        let reader = SyncIoBridge::new_with_handle(stdout, handle.clone());
        let writer = ChannelWriter::new(tx.clone(), MAX_ARCHIVE_BYTES);
        let built = tokio::task::spawn_blocking(move || {
            tar_to_zip(reader, writer, |name| {
                let file = root.join(name);
                let download = handle.block_on(read_file(
                    &pods,
                    &pod,
                    &file.to_string_lossy(),
                    MAX_ARCHIVE_BYTES,
                ))?;
                Ok(SyncIoBridge::new_with_handle(
                    StreamReader::new(download.body),
                    handle.clone(),
                ))
            })
        })
        .await;
        let failure = match built {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(std::io::Error::other(format!("archive failed: {e}"))),
            Err(e) => Some(std::io::Error::other(format!("archive failed: {e}"))),
        };
        if let Some(error) = failure {
            let _ = tx.send(Err(error)).await;
        }
        stderr_drain.abort();
        drop(process);
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Ok(Box::pin(stream))
}

/// An entry name of `tar -cf - .` relative to the folder: `./a/b/` → `a/b`; `None` for `.`.
fn relative_name(raw: &[u8]) -> Option<String> {
    let name = String::from_utf8_lossy(raw);
    let trimmed = name.trim_start_matches("./").trim_matches('/');
    (!trimmed.is_empty() && trimmed != ".").then(|| trimmed.to_string())
}

/// Writes a zip of a tar stream: directories stored, regular files deflated (level 1, as the
/// local runtime), symlinks stored as files holding their target, hard links as copies read
/// through `fetch` after the stream, other types skipped.
fn tar_to_zip<F, R>(tar: impl Read, out: impl Write, mut fetch: F) -> zip::result::ZipResult<()>
where
    F: FnMut(&str) -> Result<R, RuntimeError>,
    R: Read,
{
    let mut zip = ZipWriter::new_stream(out);
    let mut archive = tar::Archive::new(tar);
    let mut links = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let Some(name) = relative_name(&entry.path_bytes()) else {
            continue;
        };
        let header = entry.header();
        let kind = header.entry_type();
        let mtime = header.mtime().ok().and_then(|t| i64::try_from(t).ok());
        let options = SimpleFileOptions::default()
            .unix_permissions(header.mode().unwrap_or(0o644) & 0o7777)
            .last_modified_time(zip_time(mtime.unwrap_or(0)));
        let size = entry.size();
        if kind.is_dir() {
            zip.add_directory(format!("{name}/"), options)?;
        } else if kind.is_symlink() {
            let target = entry.link_name_bytes().unwrap_or_default().into_owned();
            zip.start_file(name, options.compression_method(CompressionMethod::Stored))?;
            zip.write_all(&target)?;
        } else if kind.is_hard_link() {
            links.push((name, options));
        } else if kind.is_file() || kind == tar::EntryType::Continuous {
            zip.start_file(name, deflated(options, size))?;
            std::io::copy(&mut entry, &mut zip)?;
        }
    }
    for (name, options) in links {
        // A second name of a file that vanished since is left out, like an unreadable file.
        let Ok(mut reader) = fetch(&name) else {
            continue;
        };
        zip.start_file(name, deflated(options, u64::MAX))?;
        std::io::copy(&mut reader, &mut zip)?;
    }
    let mut out = zip.finish()?.into_inner();
    out.flush()?;
    Ok(())
}

fn deflated(options: SimpleFileOptions, size: u64) -> SimpleFileOptions {
    options
        .compression_method(CompressionMethod::Deflated)
        .compression_level(Some(1))
        .large_file(size >= u64::from(u32::MAX))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, kind, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_mode(0o640);
            header.set_mtime(1_700_000_000);
            if kind.is_symlink() || kind.is_hard_link() {
                header.set_size(0);
                builder
                    .append_link(&mut header, name, std::str::from_utf8(data).unwrap())
                    .unwrap();
            } else {
                header.set_size(data.len() as u64);
                builder.append_data(&mut header, name, *data).unwrap();
            }
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn a_tar_stream_becomes_a_zip_with_links_as_files_and_copies() {
        let tar = tar_of(&[
            ("./", tar::EntryType::Directory, b""),
            ("./src/", tar::EntryType::Directory, b""),
            ("./src/a.txt", tar::EntryType::Regular, b"alpha"),
            ("./link", tar::EntryType::Symlink, b"/etc/passwd"),
            ("./second", tar::EntryType::Link, b"./src/a.txt"),
            ("./fifo", tar::EntryType::Fifo, b""),
        ]);
        let mut out = Vec::new();
        let mut fetched = Vec::new();
        tar_to_zip(&tar[..], &mut out, |name| {
            fetched.push(name.to_string());
            Ok(std::io::Cursor::new(b"alpha".to_vec()))
        })
        .unwrap();
        assert_eq!(fetched, ["second"]);
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(out)).unwrap();
        let mut names: Vec<String> = zip.file_names().map(|n| n.unwrap().into_owned()).collect();
        names.sort();
        assert_eq!(names, ["link", "second", "src/", "src/a.txt"]);
        let read = |zip: &mut zip::ZipArchive<_>, name: &str| {
            let mut text = String::new();
            zip.by_name(name)
                .unwrap()
                .read_to_string(&mut text)
                .unwrap();
            text
        };
        assert_eq!(read(&mut zip, "src/a.txt"), "alpha");
        assert_eq!(read(&mut zip, "link"), "/etc/passwd");
        assert_eq!(read(&mut zip, "second"), "alpha");
        let a = zip.by_name("src/a.txt").unwrap();
        assert_eq!(a.unix_mode().map(|m| m & 0o777), Some(0o640));
        assert_eq!(a.last_modified().map(|t| t.year()), Some(2023));
    }

    #[test]
    fn names_are_made_relative() {
        assert_eq!(relative_name(b"./"), None);
        assert_eq!(relative_name(b"."), None);
        assert_eq!(relative_name(b"./a/b/"), Some("a/b".into()));
        assert_eq!(relative_name(b"./.hidden"), Some(".hidden".into()));
        assert_eq!(relative_name(b"plain"), Some("plain".into()));
    }
}
