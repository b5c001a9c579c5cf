//! Files through pods/exec: small POSIX shell scripts (busybox is enough) that answer with exit
//! codes the runtime maps to the file error kinds the gateway turns into statuses. Reads stream
//! the file's bytes from the exec's stdout; writes collect the upload (at most the contract's
//! 32 MiB) and feed it through `head -c`, into a temporary file renamed over the target.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::AttachParams;
use tokio::io::AsyncReadExt;

use super::exec;
use crate::runtime::{ByteStream, DirEntry, DirListing, FileDownload, FileErrorKind, RuntimeError};

/// Deadline of a listing or a write.
const FILE_OP_TIMEOUT: Duration = Duration::from_secs(120);
/// Largest listing accepted (bytes of script output).
const LISTING_CAP: usize = 16 << 20;

const LIST_SCRIPT: &str = r#"p=$1
[ -e "$p" ] || { echo "path not found: $p" >&2; exit 3; }
[ -d "$p" ] || { echo "not a directory: $p" >&2; exit 4; }
cd "$p" 2>/dev/null || { echo "permission denied: $p" >&2; exit 6; }
for f in .* *; do
  case "$f" in .|..) continue;; esac
  [ -e "$f" ] || [ -L "$f" ] || continue
  t=$(stat -c '%s %Y %A' -- "$f" 2>/dev/null) || continue
  d=0; if [ -d "$f" ] && [ ! -L "$f" ]; then d=1; fi
  if [ -L "$f" ]; then n="$f -> $(readlink -- "$f")"; else n=$f; fi
  printf '%s %s\n%s\0' "$t" "$d" "$n"
done"#;

const READ_SCRIPT: &str = r#"p=$1
[ -e "$p" ] || { echo "path not found: $p" >&2; exit 3; }
[ -d "$p" ] && { echo "is a directory: $p" >&2; exit 4; }
[ -f "$p" ] || { echo "not a regular file: $p" >&2; exit 4; }
[ -r "$p" ] || { echo "permission denied: $p" >&2; exit 6; }
s=$(stat -L -c %s -- "$p") || exit 7
[ "$s" -le "$2" ] || { echo "$p is $s bytes, over the limit of $2" >&2; exit 5; }
printf '%s\n' "$s"
exec head -c "$s" < "$p""#;

const WRITE_SCRIPT: &str = r#"p=$1
d=$(dirname -- "$p")
[ -d "$p" ] && { echo "is a directory: $p" >&2; exit 4; }
mkdir -p -- "$d" 2>/dev/null || { echo "permission denied: cannot create $d" >&2; exit 6; }
t="$d/.agenttier-upload.$$"
head -c "$2" > "$t" 2>/dev/null || { rm -f "$t"; echo "permission denied: cannot write $p" >&2; exit 6; }
[ "$(stat -c %s "$t")" = "$2" ] || { rm -f "$t"; echo "short write to $p" >&2; exit 7; }
mv -f "$t" "$p" 2>/dev/null || { rm -f "$t"; echo "permission denied: cannot replace $p" >&2; exit 6; }"#;

pub(super) fn script_argv(script: &str, args: &[&str]) -> Vec<String> {
    let mut argv = vec![
        "/bin/sh".to_string(),
        "-c".to_string(),
        script.to_string(),
        "sh".to_string(),
    ];
    argv.extend(args.iter().map(|a| a.to_string()));
    argv
}

/// The file error of a script's exit code and message.
pub(super) fn file_error(code: Option<i32>, stderr: &[u8]) -> RuntimeError {
    let message = String::from_utf8_lossy(stderr).trim().to_string();
    let kind = match code {
        Some(3) => FileErrorKind::NotFound,
        Some(4) => FileErrorKind::Invalid,
        Some(5) => FileErrorKind::TooLarge,
        Some(6) => FileErrorKind::PermissionDenied,
        _ if message.contains("Permission denied") || message.contains("Read-only") => {
            FileErrorKind::PermissionDenied
        }
        _ => FileErrorKind::Failed,
    };
    RuntimeError::File {
        kind,
        message: if message.is_empty() {
            format!("file operation failed (exit {code:?})")
        } else {
            message
        },
    }
}

/// Parses the listing script's records: `"<size> <mtime> <mode> <isdir>\n<name>\0"`.
pub fn parse_listing(path: &str, output: &[u8]) -> DirListing {
    let mut entries: Vec<DirEntry> = output
        .split(|b| *b == 0)
        .filter(|r| !r.is_empty())
        .filter_map(|record| {
            let newline = record.iter().position(|b| *b == b'\n')?;
            let header = String::from_utf8_lossy(&record[..newline]).into_owned();
            let name = String::from_utf8_lossy(&record[newline + 1..]).into_owned();
            let mut fields = header.split(' ');
            let size = fields.next()?.parse().ok()?;
            let modified_at = fields.next()?.parse().ok()?;
            let mode = fields.next()?.to_string();
            let is_dir = fields.next()? == "1";
            Some(DirEntry {
                name,
                size,
                is_dir,
                mode,
                modified_at,
            })
        })
        .collect();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    DirListing {
        path: path.to_string(),
        entries,
    }
}

/// Lists a directory.
pub async fn list_dir(pods: &Api<Pod>, pod: &str, path: &str) -> Result<DirListing, RuntimeError> {
    let captured = exec::capture(
        pods,
        pod,
        script_argv(LIST_SCRIPT, &[path]),
        Vec::new(),
        FILE_OP_TIMEOUT,
        LISTING_CAP,
    )
    .await?;
    match captured.code {
        Some(0) => Ok(parse_listing(path, &captured.stdout)),
        code => Err(file_error(code, &captured.stderr)),
    }
}

/// Opens a file for download: its size first, then its bytes streamed from the exec.
pub async fn read_file(
    pods: &Api<Pod>,
    pod: &str,
    path: &str,
    max_bytes: u64,
) -> Result<FileDownload, RuntimeError> {
    let argv = script_argv(READ_SCRIPT, &[path, &max_bytes.to_string()]);
    let params = AttachParams::default().stdout(true).stderr(true);
    let mut process = exec::attach(pods, pod, argv, params).await?;
    let (Some(mut stdout), Some(mut stderr)) = (process.stdout(), process.stderr()) else {
        return Err(RuntimeError::Agent {
            id: pod.to_string(),
            detail: "the exec has no stdout".into(),
        });
    };
    let mut header = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match stdout.read(&mut byte).await {
            Ok(1) if byte[0] == b'\n' => break,
            Ok(1) if header.len() < 32 => header.push(byte[0]),
            _ => {
                let mut message = Vec::new();
                let _ = stderr.read_to_end(&mut message).await;
                let code = match process.take_status() {
                    Some(status) => status.await.as_ref().and_then(exec::exit_code),
                    None => None,
                };
                return Err(file_error(code, &message));
            }
        }
    }
    let size: u64 = String::from_utf8_lossy(&header)
        .trim()
        .parse()
        .map_err(|_| file_error(None, b"unreadable size"))?;
    let shown = path.to_string();
    // The process and stderr ride along in the stream's state: dropping either ends the exec.
    let body = futures::stream::unfold(
        (stdout, stderr, process, size),
        move |(mut stdout, stderr, process, left)| {
            let shown = shown.clone();
            async move {
                if left == 0 {
                    return None;
                }
                let mut buf = vec![0u8; 64 * 1024];
                let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                match stdout.read(&mut buf[..want]).await {
                    Ok(0) => Some((
                        Err(std::io::Error::other(format!(
                            "{shown} shrank while it was read"
                        ))),
                        (stdout, stderr, process, 0),
                    )),
                    Ok(n) => {
                        buf.truncate(n);
                        Some((
                            Ok(Bytes::from(buf)),
                            (stdout, stderr, process, left - n as u64),
                        ))
                    }
                    Err(e) => Some((Err(e), (stdout, stderr, process, 0))),
                }
            }
        },
    );
    Ok(FileDownload {
        size,
        body: Box::pin(body),
    })
}

/// Writes a file (parents created, an existing file replaced); returns the bytes written.
pub async fn write_file(
    pods: &Api<Pod>,
    pod: &str,
    path: &str,
    mut body: ByteStream,
    max_bytes: u64,
) -> Result<u64, RuntimeError> {
    let mut data = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| RuntimeError::File {
            kind: FileErrorKind::Failed,
            message: format!("reading the upload: {e}"),
        })?;
        data.extend_from_slice(&chunk);
        if data.len() as u64 > max_bytes {
            return Err(RuntimeError::File {
                kind: FileErrorKind::TooLarge,
                message: format!("the upload is larger than {max_bytes} bytes"),
            });
        }
    }
    let length = data.len() as u64;
    let captured = exec::capture(
        pods,
        pod,
        script_argv(WRITE_SCRIPT, &[path, &length.to_string()]),
        data,
        FILE_OP_TIMEOUT,
        64 * 1024,
    )
    .await?;
    match captured.code {
        Some(0) => Ok(length),
        code => Err(file_error(code, &captured.stderr)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_parse_and_sort() {
        let output = b"5 1700000000 -rw-r--r-- 0\nb.txt\x004096 1700000001 drwxr-xr-x 1\na dir\x0011 1700000002 lrwxrwxrwx 0\nl -> /etc/x\x00";
        let listing = parse_listing("/workspace", output);
        let names: Vec<_> = listing.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["a dir", "b.txt", "l -> /etc/x"]);
        assert!(listing.entries[0].is_dir);
        assert_eq!(listing.entries[1].size, 5);
        assert_eq!(listing.entries[1].mode, "-rw-r--r--");
        assert_eq!(listing.entries[2].modified_at, 1_700_000_002);
    }

    #[test]
    fn exit_codes_map_to_file_errors() {
        let kind = |code, msg: &[u8]| match file_error(code, msg) {
            RuntimeError::File { kind, .. } => kind,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            kind(Some(3), b"path not found: /x"),
            FileErrorKind::NotFound
        );
        assert_eq!(kind(Some(4), b""), FileErrorKind::Invalid);
        assert_eq!(kind(Some(5), b""), FileErrorKind::TooLarge);
        assert_eq!(kind(Some(6), b""), FileErrorKind::PermissionDenied);
        assert_eq!(
            kind(Some(1), b"sh: can't create: Read-only file system"),
            FileErrorKind::PermissionDenied
        );
        assert_eq!(kind(Some(1), b"boom"), FileErrorKind::Failed);
    }
}
