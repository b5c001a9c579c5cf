//! Folder archives and multi-file uploads through pods/exec, with the `tar` of the sandbox image
//! (busybox's is enough).
//!
//! Download: a script resolves the folder (symlinks followed; it must still lie under
//! `/workspace`), prints the real path, then runs `tar -cf - .` there. This side turns the tar
//! stream into a zip as it arrives (on a blocking thread, into a bounded channel), so neither
//! side holds the tree. Symlinks are stored as files holding their target, as the local runtime
//! does. A zip has no hard links, so a second name of a file (which tar stores as a link) is read
//! again by name once the tar stream ended.
//!
//! Upload: spooled to a temporary file on this side, checked whole with the rules the local
//! runtime applies ([`unpack_plan`](crate::runtime::files::unpack_plan)), the paths it would
//! touch asked about in the Pod (symlinks and directories already there), and only then a
//! normalised tar (clean relative names, modes, nothing but directories, files, symlinks and hard
//! links) is streamed into `head -c <len> | tar -xof -`, so a refused upload writes nothing. The
//! normalised tar is measured by building it once into a counter, which also reads every entry
//! whole: content that does not match its header refuses the upload before the Pod sees a byte.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::AttachParams;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::io::{StreamReader, SyncIoBridge};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use super::exec;
use super::files::{file_error, read_file, script_argv};
use crate::runtime::files::unpack_plan::{
    Checker, MAX_EXPANSION, Planned, UnpackError, format_of, invalid, plan_tar, plan_zip,
    tar_error, tar_reader, through_symlink,
};
use crate::runtime::files::zip_util::zip_time;
use crate::runtime::files::{ARCHIVE_ROOT, MAX_ARCHIVE_BYTES};
use crate::runtime::{ArchiveFormat, ByteStream, FileErrorKind, RuntimeError, UnpackSummary};

/// Bytes per chunk between the blocking converters and the async side.
const CHUNK_BYTES: usize = 64 * 1024;
/// How many chunks may wait in between.
const PIPE_CHUNKS: usize = 4;
/// Deadline of the destination probe, and of the Pod's `tar` once the last byte was sent.
const STEP_TIMEOUT: Duration = Duration::from_secs(120);
/// Most stderr kept from a `tar` in the Pod.
const STDERR_CAP: usize = 64 * 1024;

const ARCHIVE_SCRIPT: &str = r#"p=$1; root=$2
[ -e "$p" ] || { echo "directory not found: $p" >&2; exit 3; }
r=$(readlink -f -- "$p") && w=$(readlink -f -- "$root") || { echo "directory not found: $p" >&2; exit 3; }
case "$r" in "$w"|"$w"/*) ;; *) echo "path must live under $root" >&2; exit 4;; esac
[ -d "$r" ] || { echo "directory not found: $p" >&2; exit 3; }
cd -- "$r" 2>/dev/null || { echo "permission denied: $p" >&2; exit 6; }
command -v tar >/dev/null 2>&1 || { echo "the sandbox image has no tar" >&2; exit 8; }
printf '%s\n' "$r"
exec tar -cf - ."#;

/// Creates the destination, then reports which of the NUL-separated relative paths on stdin
/// exist: `L` a symlink, `D` a directory, `F` anything else, each `<type><path>\0`.
const PROBE_SCRIPT: &str = r#"d=$1
mkdir -p -- "$d" 2>/dev/null || { echo "permission denied: cannot create $d" >&2; exit 6; }
[ -d "$d" ] || { echo "not a directory: $d" >&2; exit 4; }
cd -- "$d" 2>/dev/null || { echo "permission denied: $d" >&2; exit 6; }
[ "$2" -gt 0 ] || exit 0
head -c "$2" | xargs -0 sh -c 'for p; do if [ -L "$p" ]; then printf "L%s\0" "$p"; elif [ -d "$p" ]; then printf "D%s\0" "$p"; elif [ -e "$p" ]; then printf "F%s\0" "$p"; fi; done' sh"#;

const UNPACK_SCRIPT: &str = r#"d=$1
cd -- "$d" 2>/dev/null || { echo "permission denied: $d" >&2; exit 6; }
command -v tar >/dev/null 2>&1 || { echo "the sandbox image has no tar" >&2; exit 8; }
head -c "$2" | tar -xof -"#;

fn no_stream(pod: &str, which: &str) -> RuntimeError {
    RuntimeError::Agent {
        id: pod.to_string(),
        detail: format!("the exec has no {which}"),
    }
}

/// A `Write` that hands chunks to the async side through a bounded channel (blocking while it
/// is full) and refuses to go past `cap` bytes.
struct ChannelWriter {
    tx: mpsc::Sender<std::io::Result<Bytes>>,
    buf: Vec<u8>,
    total: u64,
    cap: u64,
}

impl ChannelWriter {
    fn new(tx: mpsc::Sender<std::io::Result<Bytes>>, cap: u64) -> Self {
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

/// What an upload would change, checked against this side's rules.
struct Checked {
    spool: std::fs::File,
    format: ArchiveFormat,
    plan: Vec<Planned>,
    /// Length of the normalised tar.
    length: u64,
}

/// Unpacks a tar, tar.gz or zip upload into the folder `dir` of the Pod.
pub async fn unpack(
    pods: &Api<Pod>,
    pod: &str,
    dir: &str,
    format: Option<ArchiveFormat>,
    mut body: ByteStream,
    max_bytes: u64,
) -> Result<UnpackSummary, RuntimeError> {
    let spool = tempfile::tempfile().map_err(|e| RuntimeError::io("spooling the upload", e))?;
    let mut file = tokio::fs::File::from_std(spool);
    let mut total = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| RuntimeError::File {
            kind: FileErrorKind::Failed,
            message: format!("reading the upload: {e}"),
        })?;
        total += chunk.len() as u64;
        if total > max_bytes {
            return Err(RuntimeError::File {
                kind: FileErrorKind::TooLarge,
                message: format!("payload exceeds {max_bytes} bytes"),
            });
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| RuntimeError::io("spooling the upload", e))?;
    }
    file.flush()
        .await
        .map_err(|e| RuntimeError::io("spooling the upload", e))?;
    let spool = file.into_std().await;
    let limit = total.saturating_mul(MAX_EXPANSION).max(1 << 20);
    let checked = blocking(move || check_upload(spool, format, limit)).await?;

    let answers = probe(pods, pod, dir, &questions(&checked.plan)).await?;
    judge(&checked.plan, &answers).map_err(refusal)?;
    let summary = summarise(&checked.plan);
    send(pods, pod, dir, checked).await?;
    Ok(summary)
}

async fn blocking<T: Send + 'static>(
    job: impl FnOnce() -> Result<T, UnpackError> + Send + 'static,
) -> Result<T, RuntimeError> {
    tokio::task::spawn_blocking(job)
        .await
        .map_err(|e| RuntimeError::io("unpacking the upload", std::io::Error::other(e)))?
        .map_err(refusal)
}

fn refusal(e: UnpackError) -> RuntimeError {
    RuntimeError::File {
        kind: e.kind,
        message: e.message,
    }
}

/// Plans every entry and measures the normalised tar (reading every entry whole).
fn check_upload(
    mut spool: std::fs::File,
    format: Option<ArchiveFormat>,
    limit: u64,
) -> Result<Checked, UnpackError> {
    spool.rewind()?;
    let format = format_of(format, &mut spool)?;
    let mut checker = Checker::new(None, limit);
    let plan = match format {
        ArchiveFormat::Zip => {
            let mut archive = zip::ZipArchive::new(std::io::BufReader::new(spool.try_clone()?))?;
            plan_zip(&mut archive, &mut checker)?
        }
        ArchiveFormat::Tar | ArchiveFormat::TarGz => {
            spool.rewind()?;
            plan_tar(&mut tar_reader(spool.try_clone()?, format), &mut checker)?
        }
    };
    let mut counter = Counter(0);
    write_normalised(&mut spool, format, &plan, &mut counter)?;
    Ok(Checked {
        spool,
        format,
        plan,
        length: counter.0,
    })
}

/// A writer that only counts.
struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0 += data.len() as u64;
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Reads exactly the size an entry's header declared: less is an error, more is not read.
struct Exact<R> {
    inner: std::io::Take<R>,
    name: PathBuf,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() && self.inner.limit() > 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "entry {} is shorter than its header says",
                    self.name.display()
                ),
            ));
        }
        Ok(n)
    }
}

/// Writes the normalised tar of `plan` (entries in archive order) to `out`.
fn write_normalised(
    spool: &mut std::fs::File,
    format: ArchiveFormat,
    plan: &[Planned],
    out: impl Write,
) -> Result<(), UnpackError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut builder = tar::Builder::new(out);
    let content_error = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => invalid(e.to_string()),
        _ => tar_error(e),
    };
    match format {
        ArchiveFormat::Zip => {
            let mut archive = zip::ZipArchive::new(std::io::BufReader::new(spool.try_clone()?))?;
            for (i, planned) in plan.iter().enumerate() {
                let file = archive.by_index(i)?;
                append(&mut builder, planned, file, now).map_err(content_error)?;
            }
        }
        ArchiveFormat::Tar | ArchiveFormat::TarGz => {
            spool.rewind()?;
            let mut archive = tar_reader(spool.try_clone()?, format);
            let mut entries = archive.entries().map_err(tar_error)?;
            for planned in plan {
                let entry = entries
                    .next()
                    .ok_or_else(|| invalid("the archive changed while it was unpacked"))?
                    .map_err(tar_error)?;
                append(&mut builder, planned, entry, now).map_err(content_error)?;
            }
        }
    }
    builder.finish().map_err(UnpackError::from)?;
    // The last partial chunk: the tar builder does not flush its writer.
    builder.into_inner()?.flush()?;
    Ok(())
}

/// Appends one planned entry: modes as the local runtime sets them (owner may always read and
/// write), the time of the upload as mtime.
fn append(
    builder: &mut tar::Builder<impl Write>,
    planned: &Planned,
    content: impl Read,
    now: u64,
) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_mtime(now);
    header.set_uid(0);
    header.set_gid(0);
    match planned {
        Planned::Skip => Ok(()),
        Planned::Dir(path, mode) => {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode((mode & 0o7777) | 0o700);
            header.set_size(0);
            builder.append_data(&mut header, path, std::io::empty())
        }
        Planned::File(path, mode, size) => {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode((mode & 0o777) | 0o600);
            header.set_size(*size);
            let exact = Exact {
                inner: content.take(*size),
                name: path.clone(),
            };
            builder.append_data(&mut header, path, exact)
        }
        Planned::Symlink(path, target) => {
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_mode(0o777);
            header.set_size(0);
            builder.append_link(&mut header, path, target)
        }
        Planned::HardLink(path, target) => {
            header.set_entry_type(tar::EntryType::Link);
            header.set_mode(0o644);
            header.set_size(0);
            builder.append_link(&mut header, path, target)
        }
    }
}

/// Every path whose state on disk matters: each entry's parents and itself, and hard link
/// targets with their parents.
fn questions(plan: &[Planned]) -> BTreeSet<PathBuf> {
    let mut asked = BTreeSet::new();
    let mut ask = |path: &Path| {
        let mut prefix = PathBuf::new();
        for component in path.components() {
            prefix.push(component);
            asked.insert(prefix.clone());
        }
    };
    for planned in plan {
        match planned {
            Planned::Skip => {}
            Planned::Dir(path, _) | Planned::File(path, _, _) | Planned::Symlink(path, _) => {
                ask(path)
            }
            Planned::HardLink(path, target) => {
                ask(path);
                ask(target);
            }
        }
    }
    asked
}

/// Creates the destination and asks what already exists at `paths` below it.
async fn probe(
    pods: &Api<Pod>,
    pod: &str,
    dir: &str,
    paths: &BTreeSet<PathBuf>,
) -> Result<BTreeMap<PathBuf, u8>, RuntimeError> {
    let mut input = Vec::new();
    for path in paths {
        input.extend_from_slice(path.as_os_str().as_bytes());
        input.push(0);
    }
    let captured = exec::capture(
        pods,
        pod,
        script_argv(PROBE_SCRIPT, &[dir, &input.len().to_string()]),
        input,
        STEP_TIMEOUT,
        64 << 20,
    )
    .await?;
    if captured.timed_out {
        return Err(RuntimeError::Agent {
            id: pod.to_string(),
            detail: format!(
                "checking the destination took longer than {}s",
                STEP_TIMEOUT.as_secs()
            ),
        });
    }
    if captured.code != Some(0) {
        return Err(file_error(captured.code, &captured.stderr));
    }
    Ok(parse_answers(&captured.stdout))
}

/// Parses the probe's `<type><path>\0` records.
fn parse_answers(output: &[u8]) -> BTreeMap<PathBuf, u8> {
    output
        .split(|b| *b == 0)
        .filter_map(|record| {
            let (&kind, path) = record.split_first()?;
            Some((PathBuf::from(std::ffi::OsStr::from_bytes(path)), kind))
        })
        .collect()
}

/// Judges the plan against what exists in the destination, as the local runtime does while it
/// unpacks: nothing goes through a symlink or a file, no directory is replaced by a file, and a
/// directory entry does not land on a symlink.
fn judge(plan: &[Planned], on_disk: &BTreeMap<PathBuf, u8>) -> Result<(), UnpackError> {
    let parents_ok = |path: &Path| -> Result<(), UnpackError> {
        let mut prefix = PathBuf::new();
        let components: Vec<_> = path.components().collect();
        for component in &components[..components.len().saturating_sub(1)] {
            prefix.push(component);
            match on_disk.get(&prefix) {
                Some(b'L') => return Err(through_symlink(path, &prefix)),
                Some(b'F') => {
                    return Err(invalid(format!(
                        "{} exists and is not a directory",
                        prefix.display()
                    )));
                }
                _ => {}
            }
        }
        Ok(())
    };
    for planned in plan {
        match planned {
            Planned::Skip => {}
            Planned::Dir(path, _) => {
                parents_ok(path)?;
                match on_disk.get(path) {
                    Some(b'L') => return Err(through_symlink(path, path)),
                    Some(b'F') => {
                        return Err(invalid(format!(
                            "{} exists and is not a directory",
                            path.display()
                        )));
                    }
                    _ => {}
                }
            }
            Planned::File(path, _, _) | Planned::Symlink(path, _) | Planned::HardLink(path, _) => {
                parents_ok(path)?;
                if on_disk.get(path) == Some(&b'D') {
                    return Err(invalid(format!(
                        "entry {} would replace a directory",
                        path.display()
                    )));
                }
                if let Planned::HardLink(_, target) = planned {
                    parents_ok(target)?;
                    if on_disk.get(target) == Some(&b'L') {
                        return Err(through_symlink(target, target));
                    }
                }
            }
        }
    }
    Ok(())
}

fn summarise(plan: &[Planned]) -> UnpackSummary {
    let mut summary = UnpackSummary::default();
    for planned in plan {
        match planned {
            Planned::Dir(..) => summary.dirs += 1,
            Planned::File(_, _, size) => {
                summary.files += 1;
                summary.bytes += size;
            }
            Planned::HardLink(..) => summary.files += 1,
            Planned::Symlink(..) => summary.symlinks += 1,
            Planned::Skip => {}
        }
    }
    summary
}

/// Streams the normalised tar into the Pod's `tar -x` and waits for its verdict.
async fn send(pods: &Api<Pod>, pod: &str, dir: &str, checked: Checked) -> Result<(), RuntimeError> {
    let Checked {
        mut spool,
        format,
        plan,
        length,
    } = checked;
    let argv = script_argv(UNPACK_SCRIPT, &[dir, &length.to_string()]);
    let params = AttachParams::default()
        .stdin(true)
        .stdout(false)
        .stderr(true);
    let mut process = exec::attach(pods, pod, argv, params).await?;
    // Kept until the verdict: dropping the writer closes the whole v4 stream.
    let mut stdin = process.stdin().ok_or_else(|| no_stream(pod, "stdin"))?;
    let stderr = process.stderr().ok_or_else(|| no_stream(pod, "stderr"))?;
    let status = process.take_status();
    let errors = tokio::spawn(async move {
        let mut message = Vec::new();
        let _ = stderr
            .take(STDERR_CAP as u64)
            .read_to_end(&mut message)
            .await;
        message
    });
    let (tx, mut rx) = mpsc::channel(PIPE_CHUNKS);
    // The second build of the same plan from the same spool is the measured length.
    let builder = tokio::task::spawn_blocking(move || {
        write_normalised(&mut spool, format, &plan, ChannelWriter::new(tx, length))
    });
    let feed = async {
        while let Some(chunk) = rx.recv().await {
            let Ok(chunk) = chunk else { break };
            if stdin.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = stdin.flush().await;
    };
    let verdict = async {
        match status {
            Some(status) => status.await,
            None => None,
        }
    };
    tokio::pin!(verdict);
    let status = tokio::select! {
        () = feed => tokio::time::timeout(STEP_TIMEOUT, &mut verdict).await.ok().flatten(),
        status = &mut verdict => status,
    };
    drop(stdin);
    if status.is_none() {
        // No verdict in time: end the exec, which also ends its stderr.
        process.abort();
    }
    let built = builder.await;
    let code = status.as_ref().and_then(exec::exit_code);
    let message = match tokio::time::timeout(STEP_TIMEOUT, errors).await {
        Ok(Ok(message)) => message,
        _ => Vec::new(),
    };
    match (code, built) {
        (Some(0), Ok(Ok(()))) => Ok(()),
        // The Pod's verdict first: a tar that gave up also breaks the builder's pipe.
        (Some(_), _) => Err(file_error(code, &message)),
        (None, Ok(Err(e))) => Err(refusal(e)),
        (None, _) => Err(RuntimeError::Agent {
            id: pod.to_string(),
            detail: "the unpacking exec ended without an exit status (the Pod went away?)".into(),
        }),
    }
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

    fn checked(bytes: &[u8], limit: u64) -> Result<Checked, UnpackError> {
        let mut spool = tempfile::tempfile().unwrap();
        spool.write_all(bytes).unwrap();
        check_upload(spool, None, limit)
    }

    #[test]
    fn uploads_are_normalised_into_a_tar_of_the_measured_length() {
        let long = format!("d/{}", "n".repeat(150));
        let tar = tar_of(&[
            ("./d/", tar::EntryType::Directory, b""),
            ("d/a.txt", tar::EntryType::Regular, b"hello"),
            (&long, tar::EntryType::Regular, b"long name"),
            ("d/ln", tar::EntryType::Symlink, b"a.txt"),
            ("hard", tar::EntryType::Link, b"d/a.txt"),
            ("dev", tar::EntryType::Char, b""),
        ]);
        let mut checked = checked(&tar, 1 << 20).unwrap();
        let summary = summarise(&checked.plan);
        assert_eq!(
            (summary.files, summary.dirs, summary.symlinks, summary.bytes),
            (3, 1, 1, 14)
        );
        // Through the channel the Pod is fed from, the last partial chunk included.
        let (tx, mut rx) = mpsc::channel(1024);
        let writer = ChannelWriter::new(tx, checked.length);
        write_normalised(&mut checked.spool, checked.format, &checked.plan, writer).unwrap();
        let mut out = Vec::new();
        while let Ok(chunk) = rx.try_recv() {
            out.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(out.len() as u64, checked.length);
        let mut archive = tar::Archive::new(&out[..]);
        let seen: Vec<(String, tar::EntryType, u32)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    e.header().entry_type(),
                    e.header().mode().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("d".to_string(), tar::EntryType::Directory, 0o740),
                ("d/a.txt".to_string(), tar::EntryType::Regular, 0o640),
                (long.clone(), tar::EntryType::Regular, 0o640),
                ("d/ln".to_string(), tar::EntryType::Symlink, 0o777),
                ("hard".to_string(), tar::EntryType::Link, 0o644),
            ]
        );
    }

    #[test]
    fn zip_uploads_with_short_content_are_refused_before_sending() {
        let mut zip = ZipWriter::new(std::io::Cursor::new(Vec::new()));
        zip.start_file("a.txt", SimpleFileOptions::default())
            .unwrap();
        zip.write_all(b"data").unwrap();
        let bytes = zip.finish().unwrap().into_inner();
        let mut checked = checked(&bytes, 1 << 20).unwrap();
        assert_eq!(summarise(&checked.plan).files, 1);
        // The plan says 10 bytes where the zip holds 4.
        checked.plan[0] = Planned::File(PathBuf::from("a.txt"), 0o644, 10);
        let err = write_normalised(
            &mut checked.spool,
            checked.format,
            &checked.plan,
            Counter(0),
        )
        .unwrap_err();
        assert_eq!(err.kind, FileErrorKind::Invalid, "{}", err.message);
        assert!(err.message.contains("shorter"), "{}", err.message);
    }

    #[test]
    fn the_destination_on_disk_is_judged() {
        let plan = vec![
            Planned::Dir(PathBuf::from("d"), 0o755),
            Planned::File(PathBuf::from("d/x"), 0o644, 1),
            Planned::HardLink(PathBuf::from("h"), PathBuf::from("d/x")),
        ];
        let asked: Vec<_> = questions(&plan).into_iter().collect();
        assert_eq!(
            asked,
            [PathBuf::from("d"), PathBuf::from("d/x"), PathBuf::from("h")]
        );
        let disk = |records: &[u8]| parse_answers(records);
        assert!(judge(&plan, &disk(b"")).is_ok());
        assert!(
            judge(&plan, &disk(b"Dd\0Fd/x\0")).is_ok(),
            "files are replaced"
        );
        for (records, words) in [
            (&b"Ld\0"[..], "passes through the symlink d"),
            (b"Fd\0", "d exists and is not a directory"),
            (b"Dd/x\0", "would replace a directory"),
            (b"Lh\0Dd\0Dh\0", "entry h would replace a directory"),
        ] {
            let err = judge(&plan, &disk(records)).unwrap_err();
            assert_eq!(err.kind, FileErrorKind::Invalid);
            assert!(err.message.contains(words), "{records:?}: {}", err.message);
        }
    }
}
