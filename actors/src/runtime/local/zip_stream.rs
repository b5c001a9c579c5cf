//! The agent's folder archives (contract §4.10): a zip of a workspace folder, built while it is
//! sent. The `zip` crate writes in streaming mode (sizes and checksums in data descriptors after
//! each entry) on a blocking thread into a bounded channel, so memory stays at a few chunks
//! whatever the tree's size. Symlinks are never followed; they are stored as files holding their
//! target, as the contract says. It runs inside the sandbox as its user.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use tokio::net::UnixStream;
use tokio::sync::mpsc;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use crate::runtime::FileErrorKind;
use crate::runtime::files::zip_util::zip_time;
use crate::runtime::files::{MAX_ARCHIVE_BYTES, is_within};

use super::protocol::{CHUNK_BYTES, Chunk, Response, write_chunk, write_data, write_frame};
use super::serve_files::{checked, file_error};

/// How many chunks of the zip may wait between the builder thread and the socket.
const PIPE_CHUNKS: usize = 4;

/// Sends a zip of `path`: `ArchiveStart`, chunks, `End` (or `Failed` once streaming started).
pub async fn send_archive(mut stream: UnixStream, path: String, root: String) {
    let dir = match resolve_archive_root(&path, &root).await {
        Ok(dir) => dir,
        Err(response) => {
            let _ = write_frame(&mut stream, &response).await;
            return;
        }
    };
    if write_frame(&mut stream, &Response::ArchiveStart)
        .await
        .is_err()
    {
        return;
    }
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(PIPE_CHUNKS);
    let builder = tokio::task::spawn_blocking(move || build_zip(&dir, ChannelWriter::new(tx)));
    while let Some(data) = rx.recv().await {
        if write_data(&mut stream, &data).await.is_err() {
            // The host went away: dropping the receiver stops the builder at its next write.
            return;
        }
    }
    let last = match builder.await {
        Ok(Ok(())) => Chunk::End,
        Ok(Err(e)) => Chunk::Failed {
            kind: FileErrorKind::Failed,
            message: format!("archive failed: {e}"),
        },
        Err(e) => Chunk::Failed {
            kind: FileErrorKind::Failed,
            message: format!("archive failed: {e}"),
        },
    };
    let _ = write_chunk(&mut stream, &last).await;
}

/// The real directory to archive: `path` with symlinks resolved, which must still lie within
/// `root` (also resolved), so `?path=/workspace/link-to-etc` is refused rather than followed.
async fn resolve_archive_root(path: &str, root: &str) -> Result<PathBuf, Response> {
    let path = checked(path)?;
    let not_found = || {
        file_error(
            FileErrorKind::NotFound,
            format!("directory not found: {path}"),
        )
    };
    let real = tokio::fs::canonicalize(&path)
        .await
        .map_err(|_| not_found())?;
    let real_root = tokio::fs::canonicalize(root)
        .await
        .map_err(|_| not_found())?;
    let (real_str, root_str) = (real.to_string_lossy(), real_root.to_string_lossy());
    if !is_within(&real_str, &root_str) {
        return Err(file_error(
            FileErrorKind::Invalid,
            format!("path must live under {root}"),
        ));
    }
    match tokio::fs::metadata(&real).await {
        Ok(meta) if meta.is_dir() => Ok(real),
        _ => Err(not_found()),
    }
}

/// A `Write` that hands full chunks to the async side through a bounded channel (blocking while
/// it is full), and refuses to go past the contract's 5 GiB cut-off.
struct ChannelWriter {
    tx: mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
    total: u64,
}

impl ChannelWriter {
    fn new(tx: mpsc::Sender<Vec<u8>>) -> Self {
        Self {
            tx,
            buf: Vec::with_capacity(CHUNK_BYTES),
            total: 0,
        }
    }

    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_BYTES));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "receiver gone"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.total += data.len() as u64;
        if self.total > MAX_ARCHIVE_BYTES {
            return Err(std::io::Error::other(
                "the archive exceeds 5 GiB and was cut off",
            ));
        }
        let room = CHUNK_BYTES - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK_BYTES {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// Writes a zip of everything below `dir` (entries relative to it) to `out`: directories stored,
/// regular files deflated, symlinks stored as files holding their target, other types skipped.
fn build_zip(dir: &Path, out: impl Write) -> zip::result::ZipResult<()> {
    let mut zip = ZipWriter::new_stream(out);
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((abs, rel)) = stack.pop() {
        let mut children: Vec<_> = match std::fs::read_dir(&abs) {
            Ok(reader) => reader.flatten().collect(),
            // A folder that vanished or that the sandbox user cannot read is left out.
            Err(_) => continue,
        };
        children.sort_by_key(|entry| entry.file_name());
        // Pushed in reverse so they pop, and are written, in name order.
        for entry in children.into_iter().rev() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let path = entry.path();
            let Ok(meta) = path.symlink_metadata() else {
                continue;
            };
            let options = SimpleFileOptions::default()
                .unix_permissions(meta.mode() & 0o7777)
                .last_modified_time(zip_time(meta.mtime()));
            let kind = meta.file_type();
            if kind.is_dir() {
                zip.add_directory(format!("{rel}/"), options)?;
                stack.push((path, rel));
            } else if kind.is_symlink() {
                let target = std::fs::read_link(&path).unwrap_or_default();
                zip.start_file(rel, options.compression_method(CompressionMethod::Stored))?;
                zip.write_all(target.as_os_str().as_bytes())?;
            } else if kind.is_file() {
                // O_NOFOLLOW: a file swapped for a symlink since the walk is not followed.
                let Ok(mut file) = std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)
                else {
                    continue;
                };
                let options = options
                    .compression_method(CompressionMethod::Deflated)
                    .compression_level(Some(1))
                    .large_file(meta.len() >= u64::from(u32::MAX));
                zip.start_file(rel, options)?;
                std::io::copy(&mut file, &mut zip)?;
            }
        }
    }
    let mut out = zip.finish()?.into_inner();
    out.flush()?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io::Read;

    use super::*;

    fn zip_of(dir: &Path) -> Vec<u8> {
        let (tx, mut rx) = mpsc::channel(1024);
        let dir = dir.to_path_buf();
        std::thread::spawn(move || build_zip(&dir, ChannelWriter::new(tx)).unwrap())
            .join()
            .unwrap();
        let mut bytes = Vec::new();
        while let Ok(chunk) = rx.try_recv() {
            bytes.extend(chunk);
        }
        bytes
    }

    #[test]
    fn zip_holds_the_tree_and_links_as_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("src/deep")).unwrap();
        std::fs::write(dir.path().join("src/deep/a.txt"), "alpha").unwrap();
        std::fs::write(dir.path().join("top.bin"), vec![7u8; 100_000]).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link")).unwrap();
        let bytes = zip_of(dir.path());
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
        let mut names: Vec<String> = archive
            .file_names()
            .map(|n| n.unwrap().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["link", "src/", "src/deep/", "src/deep/a.txt", "top.bin"]
        );
        let mut text = String::new();
        archive
            .by_name("link")
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "/etc/passwd");
        let mut top = Vec::new();
        archive
            .by_name("top.bin")
            .unwrap()
            .read_to_end(&mut top)
            .unwrap();
        assert_eq!(top, vec![7u8; 100_000]);
    }
}
