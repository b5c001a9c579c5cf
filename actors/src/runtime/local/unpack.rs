//! Multi-file uploads: a tar, tar.gz or zip unpacked into a folder inside the sandbox, as its
//! user. The upload is spooled to a hidden file in the destination, checked whole, then unpacked,
//! so a bad entry refuses the upload before anything is written. Entries with absolute paths,
//! `..`, over-long names, symlinks whose target leaves the destination, hard links to outside,
//! entries that pass through a symlink (one in the archive or one already on disk) are refused;
//! devices and fifos are skipped.

use std::io::{Read, Seek};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

use crate::runtime::files::unpack_plan::{
    Checker, MAX_EXPANSION, Planned, UnpackError, format_of, invalid, plan_tar, plan_zip,
    tar_error, tar_reader, too_large,
};
use crate::runtime::{ArchiveFormat, FileErrorKind, UnpackSummary};

use super::protocol::{Chunk, Response, read_chunk, write_frame};
use super::serve_files::{checked, file_error};

/// Receives an archive into `dir`: `Ready`, chunks, `End`, then `Unpacked` or `FileError`.
pub async fn receive_unpack(
    mut stream: UnixStream,
    dir: String,
    format: Option<ArchiveFormat>,
    max_bytes: u64,
) {
    let response = match spool_and_unpack(&mut stream, &dir, format, max_bytes).await {
        Ok(summary) => Response::Unpacked { summary },
        Err(Some(response)) => response,
        Err(None) => return,
    };
    let _ = write_frame(&mut stream, &response).await;
}

async fn spool_and_unpack(
    stream: &mut UnixStream,
    dir: &str,
    format: Option<ArchiveFormat>,
    max_bytes: u64,
) -> Result<UnpackSummary, Option<Response>> {
    let dir = checked(dir).map_err(Some)?;
    let dest = PathBuf::from(&dir);
    tokio::fs::create_dir_all(&dest).await.map_err(|e| {
        Some(file_error(
            FileErrorKind::of(&e),
            format!("creating {dir}: {e}"),
        ))
    })?;
    let spool_path = dest.join(format!(
        ".agenttier-upload-{}.part",
        hex::encode(rand::random::<[u8; 8]>())
    ));
    let spool = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&spool_path)
        .map_err(|e| {
            Some(file_error(
                FileErrorKind::of(&e),
                format!("upload failed: {e}"),
            ))
        })?;
    let result = async {
        let mut file = tokio::fs::File::from_std(spool.try_clone().map_err(|e| {
            Some(file_error(
                FileErrorKind::Failed,
                format!("upload failed: {e}"),
            ))
        })?);
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
                    file.write_all(&data).await.map_err(|e| {
                        Some(file_error(
                            FileErrorKind::of(&e),
                            format!("upload failed: {e}"),
                        ))
                    })?;
                }
                Ok(Some(Chunk::End)) => break,
                Ok(Some(_)) => {
                    return Err(Some(file_error(
                        FileErrorKind::Invalid,
                        "unexpected frame in an upload",
                    )));
                }
                Ok(None) | Err(_) => return Err(None),
            }
        }
        file.flush().await.map_err(|e| {
            Some(file_error(
                FileErrorKind::Failed,
                format!("upload failed: {e}"),
            ))
        })?;
        let limit = total.saturating_mul(MAX_EXPANSION).max(1 << 20);
        let dest = dest.clone();
        tokio::task::spawn_blocking(move || unpack(spool, &dest, format, limit))
            .await
            .map_err(|e| {
                Some(file_error(
                    FileErrorKind::Failed,
                    format!("upload failed: {e}"),
                ))
            })?
            .map_err(|e| Some(file_error(e.kind, e.message)))
    }
    .await;
    let _ = tokio::fs::remove_file(&spool_path).await;
    result
}

/// Checks and then unpacks the spooled archive into `dest`; nothing is written unless every
/// entry passes.
fn unpack(
    mut spool: std::fs::File,
    dest: &Path,
    format: Option<ArchiveFormat>,
    limit: u64,
) -> Result<UnpackSummary, UnpackError> {
    spool.rewind()?;
    let format = format_of(format, &mut spool)?;
    match format {
        ArchiveFormat::Zip => unpack_zip(spool, dest, limit),
        ArchiveFormat::Tar | ArchiveFormat::TarGz => {
            let plan = {
                let mut archive = tar_reader(spool.try_clone()?, format);
                plan_tar(&mut archive, &mut Checker::new(Some(dest), limit))?
            };
            spool.rewind()?;
            let mut archive = tar_reader(spool, format);
            let mut summary = UnpackSummary::default();
            let mut entries = archive.entries().map_err(tar_error)?;
            for planned in plan {
                let mut entry = entries
                    .next()
                    .ok_or_else(|| invalid("the archive changed while it was unpacked"))?
                    .map_err(tar_error)?;
                write_entry(dest, &planned, &mut entry, &mut summary, limit)?;
            }
            Ok(summary)
        }
    }
}

fn unpack_zip(spool: std::fs::File, dest: &Path, limit: u64) -> Result<UnpackSummary, UnpackError> {
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(spool))?;
    let plan = plan_zip(&mut archive, &mut Checker::new(Some(dest), limit))?;
    let mut summary = UnpackSummary::default();
    for (i, planned) in plan.iter().enumerate() {
        let mut file = archive.by_index(i)?;
        write_entry(dest, planned, &mut file, &mut summary, limit)?;
    }
    Ok(summary)
}

/// Writes one checked entry below `dest`, never following a symlink on the way.
fn write_entry(
    dest: &Path,
    planned: &Planned,
    content: &mut impl Read,
    summary: &mut UnpackSummary,
    limit: u64,
) -> Result<(), UnpackError> {
    match planned {
        Planned::Skip => {}
        Planned::Dir(path, mode) => {
            make_dirs(dest, path)?;
            let _ = std::fs::set_permissions(
                dest.join(path),
                std::os::unix::fs::PermissionsExt::from_mode((mode & 0o7777) | 0o700),
            );
            summary.dirs += 1;
        }
        Planned::File(path, mode, _) => {
            let target = prepare_leaf(dest, path)?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode((mode & 0o777) | 0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&target)?;
            let room = limit.saturating_sub(summary.bytes);
            let written = std::io::copy(&mut content.take(room.saturating_add(1)), &mut file)?;
            if written > room {
                drop(file);
                let _ = std::fs::remove_file(&target);
                return Err(too_large(limit));
            }
            summary.bytes += written;
            summary.files += 1;
        }
        Planned::Symlink(path, target) => {
            let link = prepare_leaf(dest, path)?;
            std::os::unix::fs::symlink(target, &link)?;
            summary.symlinks += 1;
        }
        Planned::HardLink(path, target) => {
            let link = prepare_leaf(dest, path)?;
            std::fs::hard_link(dest.join(target), &link)?;
            summary.files += 1;
        }
    }
    Ok(())
}

/// Creates the parents of `path` below `dest` and removes whatever non-directory is at `path`
/// (a symlink there is replaced, not followed); returns the full path.
fn prepare_leaf(dest: &Path, path: &Path) -> Result<PathBuf, UnpackError> {
    if let Some(parent) = path.parent() {
        make_dirs(dest, parent)?;
    }
    let full = dest.join(path);
    match full.symlink_metadata() {
        Ok(meta) if meta.is_dir() => {
            return Err(invalid(format!(
                "entry {} would replace a directory",
                path.display()
            )));
        }
        Ok(_) => std::fs::remove_file(&full)?,
        Err(_) => {}
    }
    Ok(full)
}

/// Creates each missing directory of `path` below `dest`, refusing to go through a symlink.
fn make_dirs(dest: &Path, path: &Path) -> Result<(), UnpackError> {
    let mut current = dest.to_path_buf();
    for component in path.components() {
        current.push(component);
        match current.symlink_metadata() {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(invalid(format!(
                    "{} is a symlink; refusing to unpack through it",
                    current.display()
                )));
            }
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(invalid(format!(
                    "{} exists and is not a directory",
                    current.display()
                )));
            }
            Err(_) => match std::fs::create_dir(&current) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e.into()),
            },
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    use std::io::Write;

    use zip::ZipWriter;
    use zip::write::SimpleFileOptions;

    fn tar_with(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, kind, content_or_target) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_mode(0o644);
            if *kind == tar::EntryType::Symlink || *kind == tar::EntryType::Link {
                header.set_size(0);
                // Raw names, so hostile ones get through the builder's own checks.
                header.as_old_mut().linkname[..content_or_target.len()]
                    .copy_from_slice(content_or_target.as_bytes());
                header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
                header.set_cksum();
                builder.append(&header, std::io::empty()).unwrap();
            } else {
                header.set_size(content_or_target.len() as u64);
                header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
                header.set_cksum();
                builder
                    .append(&header, content_or_target.as_bytes())
                    .unwrap();
            }
        }
        builder.into_inner().unwrap()
    }

    fn unpack_bytes(bytes: &[u8], dest: &Path) -> Result<UnpackSummary, UnpackError> {
        let spool_dir = tempfile::tempdir().unwrap();
        let spool_path = spool_dir.path().join("spool");
        std::fs::write(&spool_path, bytes).unwrap();
        let spool = std::fs::File::open(&spool_path).unwrap();
        unpack(spool, dest, None, 1 << 30)
    }

    #[test]
    fn tar_uploads_unpack_with_links_inside() {
        let dest = tempfile::tempdir().unwrap();
        let bytes = tar_with(&[
            ("d/", tar::EntryType::Directory, ""),
            ("d/a.txt", tar::EntryType::Regular, "hello"),
            ("d/ln", tar::EntryType::Symlink, "a.txt"),
            ("hard", tar::EntryType::Link, "d/a.txt"),
        ]);
        let summary = unpack_bytes(&bytes, dest.path()).unwrap();
        assert_eq!((summary.files, summary.dirs, summary.symlinks), (2, 1, 1));
        assert_eq!(
            std::fs::read_to_string(dest.path().join("d/ln")).unwrap(),
            "hello"
        );
        assert_eq!(
            std::fs::read_to_string(dest.path().join("hard")).unwrap(),
            "hello"
        );
    }

    #[test]
    fn hostile_tar_entries_are_refused_before_anything_is_written() {
        let cases: Vec<Vec<(&str, tar::EntryType, &str)>> = vec![
            vec![
                ("ok.txt", tar::EntryType::Regular, "x"),
                ("../evil", tar::EntryType::Regular, "x"),
            ],
            vec![
                ("ok.txt", tar::EntryType::Regular, "x"),
                ("/etc/evil", tar::EntryType::Regular, "x"),
            ],
            vec![
                ("ok.txt", tar::EntryType::Regular, "x"),
                ("ln", tar::EntryType::Symlink, "/etc"),
            ],
            vec![
                ("ok.txt", tar::EntryType::Regular, "x"),
                ("ln", tar::EntryType::Symlink, "../.."),
            ],
            vec![
                ("ok.txt", tar::EntryType::Regular, "x"),
                ("ln", tar::EntryType::Symlink, "sub"),
                ("ln/x", tar::EntryType::Regular, "x"),
            ],
            vec![
                ("ok.txt", tar::EntryType::Regular, "x"),
                ("h", tar::EntryType::Link, "../../etc/passwd"),
            ],
        ];
        for entries in cases {
            let dest = tempfile::tempdir().unwrap();
            let bytes = tar_with(&entries);
            let err = unpack_bytes(&bytes, dest.path()).unwrap_err();
            assert_eq!(err.kind, FileErrorKind::Invalid, "{entries:?}: {err:?}");
            assert!(
                !dest.path().join("ok.txt").exists(),
                "{entries:?} wrote before refusing"
            );
        }
    }

    #[test]
    fn existing_symlinks_in_the_destination_are_not_followed() {
        let outside = tempfile::tempdir().unwrap();
        let dest = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dest.path().join("out")).unwrap();
        let bytes = tar_with(&[("out/x", tar::EntryType::Regular, "x")]);
        assert!(unpack_bytes(&bytes, dest.path()).is_err());
        assert!(!outside.path().join("x").exists());
        // A file entry replaces a symlink that sits where the file goes, without writing through.
        std::fs::write(outside.path().join("target"), "keep").unwrap();
        std::os::unix::fs::symlink(outside.path().join("target"), dest.path().join("f")).unwrap();
        let bytes = tar_with(&[("f", tar::EntryType::Regular, "new")]);
        unpack_bytes(&bytes, dest.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(outside.path().join("target")).unwrap(),
            "keep"
        );
        assert_eq!(
            std::fs::read_to_string(dest.path().join("f")).unwrap(),
            "new"
        );
    }

    #[test]
    fn zip_uploads_unpack_and_escapes_are_refused() {
        let write_zip = |names: &[&str]| {
            let mut zip = ZipWriter::new(std::io::Cursor::new(Vec::new()));
            for name in names {
                zip.start_file(*name, SimpleFileOptions::default()).unwrap();
                zip.write_all(b"data").unwrap();
            }
            zip.finish().unwrap().into_inner()
        };
        let dest = tempfile::tempdir().unwrap();
        let summary = unpack_bytes(&write_zip(&["a/b.txt", "c.txt"]), dest.path()).unwrap();
        assert_eq!(summary.files, 2);
        assert_eq!(std::fs::read(dest.path().join("a/b.txt")).unwrap(), b"data");
        for bad in ["../x", "/abs", "a/../../x"] {
            let dest = tempfile::tempdir().unwrap();
            let err = unpack_bytes(&write_zip(&["fine", bad]), dest.path()).unwrap_err();
            assert_eq!(err.kind, FileErrorKind::Invalid, "{bad}");
            assert!(!dest.path().join("fine").exists());
        }
    }

    #[test]
    fn unknown_formats_are_refused() {
        let dest = tempfile::tempdir().unwrap();
        let err = unpack_bytes(b"just some text", dest.path()).unwrap_err();
        assert_eq!(err.kind, FileErrorKind::Invalid);
    }
}
