//! Multi-file uploads through pods/exec, with the `tar` of the sandbox image (busybox's is
//! enough). The upload is spooled to a temporary file on this side, checked whole with the rules
//! the local runtime applies ([`unpack_plan`](crate::runtime::files::unpack_plan)), the paths it
//! would touch asked about in the Pod (symlinks and directories already there), and only then a
//! normalised tar (clean relative names, modes, nothing but directories, files, symlinks and hard
//! links) is streamed into `head -c <len> | tar -xof -`, so a refused upload writes nothing. The
//! normalised tar is measured by building it once into a counter, which also reads every entry
//! whole: content that does not match its header refuses the upload before the Pod sees a byte.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::AttachParams;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::archive::{ChannelWriter, PIPE_CHUNKS, STDERR_CAP, no_stream};
use super::exec;
use super::files::{file_error, script_argv};
use crate::runtime::files::unpack_plan::{
    Checker, MAX_EXPANSION, Planned, UnpackError, format_of, invalid, plan_tar, plan_zip,
    tar_error, tar_reader, through_symlink,
};
use crate::runtime::{ArchiveFormat, ByteStream, FileErrorKind, RuntimeError, UnpackSummary};

/// Deadline of the destination probe, and of the Pod's `tar` once the last byte was sent.
const STEP_TIMEOUT: Duration = Duration::from_secs(120);
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

    use zip::ZipWriter;
    use zip::write::SimpleFileOptions;

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
