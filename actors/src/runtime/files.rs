//! What the file, PTY and port operations of a [`Runtime`](super::Runtime) exchange, and the path
//! rules every layer applies to paths that come from clients (contract §4.10): the gateway checks
//! them to answer 400, and the in-sandbox agent checks them again because it trusts nobody.

pub mod unpack_plan;
pub mod zip_util;

use std::collections::BTreeMap;
use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};

/// A stream of bytes with I/O errors, for file bodies and archives: nothing is held whole.
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// Longest path accepted, in bytes (Linux `PATH_MAX`).
pub const MAX_PATH_LEN: usize = 4096;
/// Longest path component accepted, in bytes (Linux `NAME_MAX`).
pub const MAX_NAME_LEN: usize = 255;
/// Largest file the contract lets a client upload or download (32 MiB).
pub const MAX_FILE_BYTES: u64 = 32 << 20;
/// Where archives are confined (contract §4.10).
pub const ARCHIVE_ROOT: &str = "/workspace";
/// The contract cuts an archive stream off after this many bytes (5 GiB).
pub const MAX_ARCHIVE_BYTES: u64 = 5 << 30;

/// Why a path from a client is refused; every variant is a client mistake (400).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// `'`, `\`, a backtick, LF, CR or NUL: the contract's disallowed characters, plus NUL.
    #[error("path contains disallowed characters")]
    DisallowedCharacters,
    /// More than [`MAX_PATH_LEN`] bytes.
    #[error("path is longer than {MAX_PATH_LEN} bytes")]
    TooLong,
    /// A component longer than [`MAX_NAME_LEN`] bytes.
    #[error("path has a component longer than {MAX_NAME_LEN} bytes")]
    NameTooLong,
    /// `..` climbs above `/`.
    #[error("path escapes the root directory")]
    Escapes,
    /// An archive path outside [`ARCHIVE_ROOT`].
    #[error("path must live under /workspace")]
    OutsideWorkspace,
}

/// Normalises a client path to an absolute clean path (`/a/b`), as the contract's server does
/// with Go's `path.Clean`, and refuses what the contract refuses. Unlike `path.Clean`, a `..`
/// that would climb above `/` is refused instead of being dropped, so an escape attempt is
/// answered rather than silently redirected.
pub fn clean_path(raw: &str) -> Result<String, PathError> {
    if raw
        .chars()
        .any(|c| matches!(c, '\'' | '\\' | '`' | '\n' | '\r' | '\0'))
    {
        return Err(PathError::DisallowedCharacters);
    }
    if raw.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong);
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(PathError::Escapes);
                }
            }
            name if name.len() > MAX_NAME_LEN => return Err(PathError::NameTooLong),
            name => parts.push(name),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

/// [`clean_path`] for archives: the result must be [`ARCHIVE_ROOT`] or below it.
pub fn clean_archive_path(raw: &str) -> Result<String, PathError> {
    let path = clean_path(raw)?;
    if is_within(&path, ARCHIVE_ROOT) {
        Ok(path)
    } else {
        Err(PathError::OutsideWorkspace)
    }
}

/// Whether clean absolute `path` is `root` or lies below it (component-wise, so `/workspace2` is
/// not below `/workspace`).
pub fn is_within(path: &str, root: &str) -> bool {
    let root = root.trim_end_matches('/');
    path == root
        || path
            .strip_prefix(root)
            .is_some_and(|rest| rest.starts_with('/'))
        || root.is_empty()
}

/// One entry of a directory listing, as the contract's JSON has it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DirEntry {
    /// The file name; symlinks read `name -> target`, as `ls -l` shows them.
    pub name: String,
    /// Size in bytes (of the link itself for symlinks).
    pub size: u64,
    /// A directory (symlinks to directories are not).
    pub is_dir: bool,
    /// `ls`-style mode, such as `drwxr-xr-x`.
    pub mode: String,
    /// Last modification, unix seconds.
    pub modified_at: i64,
}

/// A directory's entries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirListing {
    /// The clean path listed.
    pub path: String,
    /// Its entries without `.` and `..`, sorted by name.
    pub entries: Vec<DirEntry>,
}

/// A file being downloaded: its size up front (for `Content-Length`) and its bytes as a stream.
pub struct FileDownload {
    /// The file's size when it was opened; the stream yields exactly this many bytes or fails.
    pub size: u64,
    /// The bytes.
    pub body: ByteStream,
}

/// The archive formats a multi-file upload may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArchiveFormat {
    /// A tar archive.
    Tar,
    /// A gzip-compressed tar archive.
    TarGz,
    /// A zip archive.
    Zip,
}

impl ArchiveFormat {
    /// The format of an upload named by a query value (`tar`, `tgz`, `tar.gz`, `zip`).
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "tar" => Some(Self::Tar),
            "tgz" | "tar.gz" | "targz" => Some(Self::TarGz),
            "zip" => Some(Self::Zip),
            _ => None,
        }
    }

    /// Guesses the format from the first bytes of the upload.
    pub fn sniff(head: &[u8]) -> Option<Self> {
        if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
            Some(Self::Zip)
        } else if head.starts_with(&[0x1f, 0x8b]) {
            Some(Self::TarGz)
        } else if head.get(257..262) == Some(b"ustar") {
            Some(Self::Tar)
        } else {
            None
        }
    }
}

/// What a multi-file upload unpacked.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnpackSummary {
    /// Regular files written.
    pub files: u64,
    /// Directories created (or already there).
    pub dirs: u64,
    /// Symbolic links created.
    pub symlinks: u64,
    /// Bytes of file content written.
    pub bytes: u64,
}

/// How a PTY is opened inside a sandbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PtyRequest {
    /// The program and its arguments (the template's shell, `-l`); the runtime falls back to
    /// `/bin/sh -l` when the program does not exist in the sandbox.
    pub command: Vec<String>,
    /// Width in columns.
    pub cols: u16,
    /// Height in rows.
    pub rows: u16,
    /// Extra environment (`TERM` and friends) on top of the sandbox's.
    pub env: BTreeMap<String, String>,
    /// Working directory; `None` = the sandbox's default (its workspace).
    pub working_dir: Option<String>,
}

/// What a terminal sends into a PTY.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PtyInput {
    /// Keystrokes, written to the PTY as they are.
    Data(Bytes),
    /// A new window size.
    Resize {
        /// Columns.
        cols: u16,
        /// Rows.
        rows: u16,
    },
}

/// What comes out of a PTY.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PtyOutput {
    /// Bytes the programs on the terminal wrote (stdout and stderr merged, as on any TTY).
    Data(Bytes),
    /// The shell exited with this code (128+signal when killed); no output follows.
    Exited(Option<i32>),
}

/// An open PTY: a bounded writer and a bounded reader, so a slow reader slows the programs on the
/// terminal down instead of piling output up in memory. Dropping the writer hangs the terminal
/// up, which ends the shell.
pub struct PtySession {
    /// Input and resizes.
    pub input: tokio::sync::mpsc::Sender<PtyInput>,
    /// Output, then one `Exited`.
    pub output: tokio::sync::mpsc::Receiver<PtyOutput>,
}

/// A byte stream in both directions to a port inside a sandbox.
pub trait PortStream: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> PortStream for T {}

/// A connection to a server listening inside a sandbox.
pub type PortConnection = Box<dyn PortStream>;

/// Why a file operation failed in a way the client should hear about (not a transport failure).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileErrorKind {
    /// The path does not exist (404).
    NotFound,
    /// Over the size limit (413).
    TooLarge,
    /// The request cannot work on this path: not a directory, a directory, a special file, a
    /// path refused by the rules above, an archive entry that would escape (400).
    Invalid,
    /// The sandbox user may not do this (403).
    PermissionDenied,
    /// Anything else (disk full, I/O error) (500).
    Failed,
}

impl FileErrorKind {
    /// The kind an I/O error maps to.
    pub fn of(error: &std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        match error.kind() {
            K::NotFound => Self::NotFound,
            K::PermissionDenied | K::ReadOnlyFilesystem => Self::PermissionDenied,
            K::NotADirectory | K::IsADirectory | K::InvalidInput | K::InvalidFilename => {
                Self::Invalid
            }
            K::FileTooLarge => Self::TooLarge,
            _ => Self::Failed,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_cleaned_like_go_path_clean() {
        assert_eq!(clean_path("workspace/a.txt").unwrap(), "/workspace/a.txt");
        assert_eq!(clean_path("/workspace//a/./b/").unwrap(), "/workspace/a/b");
        assert_eq!(clean_path("/workspace/a/../b").unwrap(), "/workspace/b");
        assert_eq!(clean_path("").unwrap(), "/");
        assert_eq!(clean_path("/").unwrap(), "/");
    }

    #[test]
    fn escapes_and_bad_characters_are_refused() {
        assert_eq!(clean_path("/../etc/passwd"), Err(PathError::Escapes));
        assert_eq!(clean_path("a/../../x"), Err(PathError::Escapes));
        for bad in ["a'b", "a\\b", "a`b", "a\nb", "a\rb", "a\0b"] {
            assert_eq!(
                clean_path(bad),
                Err(PathError::DisallowedCharacters),
                "{bad:?}"
            );
        }
        assert_eq!(
            clean_path(&format!("/{}", "a".repeat(256))),
            Err(PathError::NameTooLong)
        );
        assert!(clean_path(&format!("/{}", "a".repeat(255))).is_ok());
        let long = "/abc".repeat(1025);
        assert_eq!(clean_path(&long), Err(PathError::TooLong));
    }

    #[test]
    fn archives_stay_in_the_workspace() {
        assert_eq!(clean_archive_path("/workspace").unwrap(), "/workspace");
        assert_eq!(
            clean_archive_path("/workspace/src").unwrap(),
            "/workspace/src"
        );
        assert_eq!(
            clean_archive_path("/workspace/../etc"),
            Err(PathError::OutsideWorkspace)
        );
        assert_eq!(
            clean_archive_path("/workspace2"),
            Err(PathError::OutsideWorkspace)
        );
        assert_eq!(clean_archive_path("/"), Err(PathError::OutsideWorkspace));
    }

    #[test]
    fn within_compares_components() {
        assert!(is_within("/workspace/a", "/workspace"));
        assert!(is_within("/workspace", "/workspace/"));
        assert!(!is_within("/workspacex", "/workspace"));
        assert!(is_within("/anything", "/"));
    }

    #[test]
    fn upload_formats_are_named_or_sniffed() {
        assert_eq!(ArchiveFormat::parse("TGZ"), Some(ArchiveFormat::TarGz));
        assert_eq!(ArchiveFormat::parse("rar"), None);
        assert_eq!(
            ArchiveFormat::sniff(b"PK\x03\x04rest"),
            Some(ArchiveFormat::Zip)
        );
        assert_eq!(
            ArchiveFormat::sniff(&[0x1f, 0x8b, 8]),
            Some(ArchiveFormat::TarGz)
        );
        let mut tar = vec![0u8; 512];
        tar[257..262].copy_from_slice(b"ustar");
        assert_eq!(ArchiveFormat::sniff(&tar), Some(ArchiveFormat::Tar));
        assert_eq!(ArchiveFormat::sniff(b"hello"), None);
    }
}
