//! The agent's file operations: list a directory, send a file, receive a file. They run inside
//! the sandbox as its user, so every path is the sandbox's own view: nothing outside its mount
//! namespace can be named, whatever the path says. Paths are checked again here anyway (the
//! agent trusts nobody), and blocking filesystem calls run on the blocking pool so a large
//! directory never stalls the terminals the same agent serves.

use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::runtime::files::clean_path;
use crate::runtime::{DirEntry, DirListing, FileErrorKind};

use super::protocol::{
    CHUNK_BYTES, Chunk, Response, read_chunk, write_chunk, write_data, write_frame,
};

/// The answer to a refused or failed file operation.
pub fn file_error(kind: FileErrorKind, message: impl Into<String>) -> Response {
    Response::FileError {
        kind,
        message: message.into(),
    }
}

/// Checks a path the host sent (it must already be clean and absolute).
pub fn checked(path: &str) -> Result<String, Response> {
    match clean_path(path) {
        Ok(clean) if clean == path => Ok(clean),
        Ok(_) => Err(file_error(FileErrorKind::Invalid, "path is not clean")),
        Err(e) => Err(file_error(FileErrorKind::Invalid, e.to_string())),
    }
}

/// Lists a directory (`ls -la` without `.` and `..`).
pub async fn list_dir(path: String) -> Response {
    let path = match checked(&path) {
        Ok(path) => path,
        Err(response) => return response,
    };
    let listed = tokio::task::spawn_blocking(move || list_blocking(&path)).await;
    match listed {
        Ok(response) => response,
        Err(e) => file_error(FileErrorKind::Failed, format!("listing failed: {e}")),
    }
}

fn list_blocking(path: &str) -> Response {
    let dir = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return file_error(FileErrorKind::NotFound, format!("path not found: {path}"));
        }
        Err(e) => return file_error(FileErrorKind::of(&e), format!("{path}: {e}")),
    };
    if !dir.is_dir() {
        return file_error(FileErrorKind::Invalid, format!("not a directory: {path}"));
    }
    let reader = match std::fs::read_dir(path) {
        Ok(reader) => reader,
        Err(e) => return file_error(FileErrorKind::of(&e), format!("{path}: {e}")),
    };
    let mut entries = Vec::new();
    for entry in reader.flatten() {
        // An entry that vanished since readdir is simply not listed.
        let Ok(meta) = entry.path().symlink_metadata() else {
            continue;
        };
        let mut name = entry.file_name().to_string_lossy().into_owned();
        if meta.file_type().is_symlink()
            && let Ok(target) = std::fs::read_link(entry.path())
        {
            name = format!("{name} -> {}", target.to_string_lossy());
        }
        entries.push(DirEntry {
            name,
            size: meta.len(),
            is_dir: meta.is_dir(),
            mode: mode_string(meta.mode()),
            modified_at: meta.mtime(),
        });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Response::DirListing {
        listing: DirListing {
            path: path.to_owned(),
            entries,
        },
    }
}

/// `ls`-style mode text: the type letter, then `rwx` three times with setuid, setgid and sticky
/// shown as `s`/`S` and `t`/`T`.
pub fn mode_string(mode: u32) -> String {
    let kind = match mode & libc::S_IFMT {
        libc::S_IFDIR => 'd',
        libc::S_IFLNK => 'l',
        libc::S_IFCHR => 'c',
        libc::S_IFBLK => 'b',
        libc::S_IFIFO => 'p',
        libc::S_IFSOCK => 's',
        _ => '-',
    };
    let mut text = String::with_capacity(10);
    text.push(kind);
    let special = [
        (libc::S_ISUID, 's'),
        (libc::S_ISGID, 's'),
        (libc::S_ISVTX, 't'),
    ];
    for (i, (bit, letter)) in special.iter().enumerate() {
        let shift = 6 - 3 * i as u32;
        let bits = (mode >> shift) & 0o7;
        text.push(if bits & 4 != 0 { 'r' } else { '-' });
        text.push(if bits & 2 != 0 { 'w' } else { '-' });
        let exec = bits & 1 != 0;
        text.push(match (mode & bit != 0, exec) {
            (true, true) => *letter,
            (true, false) => letter.to_ascii_uppercase(),
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    text
}

/// Sends a regular file: `FileStart`, its bytes as chunks, `End`.
pub async fn read_file(mut stream: UnixStream, path: String, max_bytes: u64) {
    let path = match checked(&path) {
        Ok(path) => path,
        Err(response) => {
            let _ = write_frame(&mut stream, &response).await;
            return;
        }
    };
    let (mut file, size) = match open_for_reading(&path, max_bytes).await {
        Ok(opened) => opened,
        Err(response) => {
            let _ = write_frame(&mut stream, &response).await;
            return;
        }
    };
    if write_frame(&mut stream, &Response::FileStart { size })
        .await
        .is_err()
    {
        return;
    }
    let mut left = size;
    let mut buf = vec![0u8; CHUNK_BYTES];
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = match file.read(&mut buf[..want]).await {
            Ok(0) => {
                let failed = Chunk::Failed {
                    kind: FileErrorKind::Failed,
                    message: format!("{path} shrank while it was read"),
                };
                let _ = write_chunk(&mut stream, &failed).await;
                return;
            }
            Ok(n) => n,
            Err(e) => {
                let failed = Chunk::Failed {
                    kind: FileErrorKind::of(&e),
                    message: format!("reading {path}: {e}"),
                };
                let _ = write_chunk(&mut stream, &failed).await;
                return;
            }
        };
        left -= n as u64;
        if write_data(&mut stream, &buf[..n]).await.is_err() {
            return;
        }
    }
    let _ = write_chunk(&mut stream, &Chunk::End).await;
}

async fn open_for_reading(path: &str, max_bytes: u64) -> Result<(tokio::fs::File, u64), Response> {
    let file = match tokio::fs::File::open(path).await {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(file_error(
                FileErrorKind::NotFound,
                format!("file not found: {path}"),
            ));
        }
        Err(e) => return Err(file_error(FileErrorKind::of(&e), format!("{path}: {e}"))),
    };
    let meta = file
        .metadata()
        .await
        .map_err(|e| file_error(FileErrorKind::of(&e), format!("{path}: {e}")))?;
    if meta.is_dir() {
        return Err(file_error(
            FileErrorKind::Invalid,
            format!("path is a directory: {path}"),
        ));
    }
    // Devices and pipes have no size and may never end.
    if !meta.is_file() {
        return Err(file_error(
            FileErrorKind::Invalid,
            format!("not a regular file: {path}"),
        ));
    }
    if meta.len() > max_bytes {
        return Err(file_error(
            FileErrorKind::TooLarge,
            format!("file exceeds {max_bytes} bytes"),
        ));
    }
    Ok((file, meta.len()))
}

/// Receives a file: creates the parents, answers `Ready`, writes the chunks to a temporary file
/// beside the target and renames it over the target at `End`, so a failed or oversized upload
/// leaves the old file as it was. The new file keeps the old one's permission bits.
pub async fn write_file(mut stream: UnixStream, path: String, max_bytes: u64) {
    let path = match checked(&path) {
        Ok(path) => path,
        Err(response) => {
            let _ = write_frame(&mut stream, &response).await;
            return;
        }
    };
    let target = Path::new(&path);
    let (temp, mut file) = match prepare_write(target).await {
        Ok(prepared) => prepared,
        Err(response) => {
            let _ = write_frame(&mut stream, &response).await;
            return;
        }
    };
    let outcome = receive_into(&mut stream, &mut file, max_bytes).await;
    let response = match outcome {
        Ok(bytes) => match finish_write(file, &temp, target).await {
            Ok(()) => Response::Written { bytes },
            Err(e) => file_error(FileErrorKind::of(&e), format!("write failed: {e}")),
        },
        Err(response) => {
            drop(file);
            let _ = tokio::fs::remove_file(&temp).await;
            match response {
                Some(response) => response,
                None => return,
            }
        }
    };
    if matches!(response, Response::FileError { .. }) {
        let _ = tokio::fs::remove_file(&temp).await;
    }
    let _ = write_frame(&mut stream, &response).await;
}

async fn prepare_write(target: &Path) -> Result<(std::path::PathBuf, tokio::fs::File), Response> {
    let shown = target.display();
    let (Some(parent), Some(_)) = (target.parent(), target.file_name()) else {
        return Err(file_error(
            FileErrorKind::Invalid,
            format!("cannot write to {shown}"),
        ));
    };
    if let Err(e) = tokio::fs::create_dir_all(parent).await {
        return Err(file_error(
            FileErrorKind::of(&e),
            format!("write failed: creating {}: {e}", parent.display()),
        ));
    }
    let mode = match tokio::fs::metadata(target).await {
        Ok(meta) if meta.is_dir() => {
            return Err(file_error(
                FileErrorKind::Invalid,
                format!("path is a directory: {shown}"),
            ));
        }
        Ok(meta) => meta.permissions().mode() & 0o7777,
        Err(_) => 0o644,
    };
    let temp = parent.join(format!(
        ".agenttier-{}.part",
        hex::encode(rand::random::<[u8; 8]>())
    ));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&temp)
        .map_err(|e| file_error(FileErrorKind::of(&e), format!("write failed: {e}")))?;
    Ok((temp, tokio::fs::File::from_std(file)))
}

/// Receives `Data` chunks into `file` until `End`, after `Ready`. `Err(None)` = the host went
/// away (nothing to answer); `Err(Some(r))` = answer `r`.
async fn receive_into(
    stream: &mut UnixStream,
    file: &mut (impl tokio::io::AsyncWrite + Unpin),
    max_bytes: u64,
) -> Result<u64, Option<Response>> {
    write_frame(stream, &Response::Ready)
        .await
        .map_err(|_| None)?;
    let mut total = 0u64;
    loop {
        match read_chunk(stream).await {
            Ok(Some(Chunk::Data { data })) => {
                total += data.len() as u64;
                if total > max_bytes {
                    return Err(Some(file_error(
                        FileErrorKind::TooLarge,
                        format!("payload exceeds {max_bytes} bytes"),
                    )));
                }
                if let Err(e) = file.write_all(&data).await {
                    return Err(Some(file_error(
                        FileErrorKind::of(&e),
                        format!("write failed: {e}"),
                    )));
                }
            }
            Ok(Some(Chunk::End)) => return Ok(total),
            Ok(Some(_)) => {
                return Err(Some(file_error(
                    FileErrorKind::Invalid,
                    "unexpected frame in an upload",
                )));
            }
            Ok(None) | Err(_) => return Err(None),
        }
    }
}

async fn finish_write(
    mut file: tokio::fs::File,
    temp: &Path,
    target: &Path,
) -> std::io::Result<()> {
    file.flush().await?;
    drop(file);
    tokio::fs::rename(temp, target).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn modes_read_like_ls() {
        assert_eq!(mode_string(libc::S_IFDIR | 0o755), "drwxr-xr-x");
        assert_eq!(mode_string(libc::S_IFREG | 0o644), "-rw-r--r--");
        assert_eq!(mode_string(libc::S_IFLNK | 0o777), "lrwxrwxrwx");
        assert_eq!(mode_string(libc::S_IFDIR | 0o1777), "drwxrwxrwt");
        assert_eq!(mode_string(libc::S_IFREG | 0o4644), "-rwSr--r--");
        assert_eq!(mode_string(libc::S_IFREG | 0o2755), "-rwxr-sr-x");
    }

    #[test]
    fn listing_shows_entries_links_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.txt"), b"hello").unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        std::os::unix::fs::symlink("b.txt", dir.path().join("c")).unwrap();
        let path = dir.path().to_str().unwrap();
        let Response::DirListing { listing } = list_blocking(path) else {
            panic!("not a listing");
        };
        let names: Vec<&str> = listing.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["a", "b.txt", "c -> b.txt"]);
        assert!(listing.entries[0].is_dir && listing.entries[0].mode.starts_with('d'));
        assert_eq!(listing.entries[1].size, 5);
        assert!(!listing.entries[2].is_dir);
        let missing = format!("{path}/nope");
        assert!(matches!(
            list_blocking(&missing),
            Response::FileError { kind: FileErrorKind::NotFound, message } if message == format!("path not found: {missing}")
        ));
        let file = format!("{path}/b.txt");
        assert!(matches!(
            list_blocking(&file),
            Response::FileError {
                kind: FileErrorKind::Invalid,
                ..
            }
        ));
    }

    #[test]
    fn unclean_paths_are_refused() {
        assert!(checked("/a/../b").is_err());
        assert!(checked("relative").is_err());
        assert!(checked("/a\nb").is_err());
        assert_eq!(checked("/a/b").ok().as_deref(), Some("/a/b"));
    }
}
