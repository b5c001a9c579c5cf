//! The checks of a multi-file upload that do not depend on where it is unpacked: every entry of a
//! tar, tar.gz or zip is read and judged before anything is written. Entries with absolute paths,
//! `..`, over-long names, symlinks whose target leaves the destination, hard links to outside and
//! entries that pass through a symlink made by an earlier entry are refused; devices and fifos are
//! skipped. The local runtime's agent also checks the destination on disk as it plans (symlinks
//! already there); the Kubernetes runtime asks the Pod about the same paths afterwards.

use std::collections::HashSet;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::runtime::files::{MAX_NAME_LEN, MAX_PATH_LEN};
use crate::runtime::{ArchiveFormat, FileErrorKind};

/// Most entries one upload may hold.
pub const MAX_ENTRIES: u64 = 100_000;
/// An upload may unpack to at most this many times its own size (zip bombs).
pub const MAX_EXPANSION: u64 = 4;

/// Why an upload was refused.
#[derive(Debug)]
pub struct UnpackError {
    /// For the HTTP status.
    pub kind: FileErrorKind,
    /// For the client.
    pub message: String,
}

/// An `Invalid` upload error.
pub fn invalid(message: impl Into<String>) -> UnpackError {
    UnpackError {
        kind: FileErrorKind::Invalid,
        message: message.into(),
    }
}

impl From<std::io::Error> for UnpackError {
    fn from(e: std::io::Error) -> Self {
        Self {
            kind: FileErrorKind::of(&e),
            message: format!("upload failed: {e}"),
        }
    }
}

impl From<zip::result::ZipError> for UnpackError {
    fn from(e: zip::result::ZipError) -> Self {
        invalid(format!("not a valid zip archive: {e}"))
    }
}

/// One archive entry, checked: paths relative to the destination, with only normal components.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Planned {
    /// A directory and its mode.
    Dir(PathBuf, u32),
    /// A regular file, its mode and size.
    File(PathBuf, u32, u64),
    /// A symlink and its (relative, inside) target.
    Symlink(PathBuf, PathBuf),
    /// A hard link and the entry it links to.
    HardLink(PathBuf, PathBuf),
    /// A device, fifo or other entry that is not unpacked.
    Skip,
}

/// The format of an upload: the one named, else sniffed from its first bytes.
pub fn format_of(
    named: Option<ArchiveFormat>,
    file: &mut (impl Read + std::io::Seek),
) -> Result<ArchiveFormat, UnpackError> {
    if let Some(format) = named {
        return Ok(format);
    }
    let mut head = [0u8; 512];
    let n = read_up_to(file, &mut head)?;
    file.rewind()?;
    ArchiveFormat::sniff(&head[..n])
        .ok_or_else(|| invalid("unknown archive format: send a tar, tar.gz or zip"))
}

/// Fills `buf` as far as the reader allows.
pub fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// A tar reader over a spooled upload, gunzipped for `TarGz`.
pub fn tar_reader(file: std::fs::File, format: ArchiveFormat) -> tar::Archive<Box<dyn Read>> {
    let reader: Box<dyn Read> = match format {
        ArchiveFormat::TarGz => {
            Box::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)))
        }
        _ => Box::new(std::io::BufReader::new(file)),
    };
    tar::Archive::new(reader)
}

/// A tar reading error as a refusal.
pub fn tar_error(e: std::io::Error) -> UnpackError {
    invalid(format!("not a valid tar archive: {e}"))
}

/// Plans every entry of a tar, in archive order (one [`Planned`] per entry, `Skip`s included).
pub fn plan_tar(
    archive: &mut tar::Archive<Box<dyn Read>>,
    checker: &mut Checker<'_>,
) -> Result<Vec<Planned>, UnpackError> {
    let mut plan = Vec::new();
    for entry in archive.entries().map_err(tar_error)? {
        let entry = entry.map_err(tar_error)?;
        let header = entry.header();
        let name = entry.path_bytes();
        let mode = header.mode().unwrap_or(0o644);
        let kind = header.entry_type();
        let planned = if kind.is_dir() {
            Planned::Dir(checker.path(&name)?, mode)
        } else if kind.is_file() || kind == tar::EntryType::Continuous {
            Planned::File(checker.path(&name)?, mode, entry.size())
        } else if kind.is_symlink() {
            let target = entry.link_name_bytes().unwrap_or_default();
            Planned::Symlink(
                checker.path(&name)?,
                PathBuf::from(std::ffi::OsStr::from_bytes(&target)),
            )
        } else if kind.is_hard_link() {
            let target = entry.link_name_bytes().unwrap_or_default();
            Planned::HardLink(checker.path(&name)?, checker.path(&target)?)
        } else {
            Planned::Skip
        };
        checker.check(&planned)?;
        plan.push(planned);
    }
    Ok(plan)
}

/// Plans every entry of a zip, in index order.
pub fn plan_zip<R: Read + std::io::Seek>(
    archive: &mut zip::ZipArchive<R>,
    checker: &mut Checker<'_>,
) -> Result<Vec<Planned>, UnpackError> {
    let mut plan = Vec::with_capacity(archive.len());
    for i in 0..archive.len() {
        let mut file = archive.by_index(i)?;
        let path = checker.path(file.name_raw())?;
        let mode = file.unix_mode().unwrap_or(0o644);
        let planned = if file.is_dir() {
            Planned::Dir(path, mode)
        } else if file.is_symlink() {
            let mut target = Vec::new();
            (&mut file)
                .take(MAX_PATH_LEN as u64 + 1)
                .read_to_end(&mut target)?;
            Planned::Symlink(path, PathBuf::from(std::ffi::OsStr::from_bytes(&target)))
        } else {
            Planned::File(path, mode, file.size())
        };
        checker.check(&planned)?;
        plan.push(planned);
    }
    Ok(plan)
}

/// Checks entry names and the links between entries, and keeps the running totals. With a
/// destination it also refuses paths through symlinks already on disk there.
pub struct Checker<'a> {
    dest: Option<&'a Path>,
    limit: u64,
    entries: u64,
    bytes: u64,
    symlinks: HashSet<PathBuf>,
}

impl<'a> Checker<'a> {
    /// A checker for an upload that may unpack to `limit` bytes; `dest` is the destination on
    /// this machine, if it is on this machine.
    pub fn new(dest: Option<&'a Path>, limit: u64) -> Self {
        Self {
            dest,
            limit,
            entries: 0,
            bytes: 0,
            symlinks: HashSet::new(),
        }
    }

    /// An entry name as a relative path with only normal components.
    pub fn path(&self, name: &[u8]) -> Result<PathBuf, UnpackError> {
        let shown = String::from_utf8_lossy(name);
        if name.contains(&0) || name.len() > MAX_PATH_LEN {
            return Err(invalid(format!("entry {shown:?} has an invalid name")));
        }
        let raw = Path::new(std::ffi::OsStr::from_bytes(name));
        let mut clean = PathBuf::new();
        for component in raw.components() {
            match component {
                Component::Normal(part) if part.len() <= MAX_NAME_LEN => clean.push(part),
                Component::Normal(_) => {
                    return Err(invalid(format!(
                        "entry {shown:?} has a name that is too long"
                    )));
                }
                Component::CurDir => {}
                Component::RootDir | Component::Prefix(_) => {
                    return Err(invalid(format!("entry {shown:?} has an absolute path")));
                }
                Component::ParentDir => {
                    return Err(invalid(format!("entry {shown:?} contains \"..\"")));
                }
            }
        }
        if clean.as_os_str().is_empty() {
            return Err(invalid(format!("entry {shown:?} has an empty name")));
        }
        Ok(clean)
    }

    /// Judges one planned entry against the entries before it.
    pub fn check(&mut self, planned: &Planned) -> Result<(), UnpackError> {
        self.entries += 1;
        if self.entries > MAX_ENTRIES {
            return Err(invalid(format!(
                "the archive has more than {MAX_ENTRIES} entries"
            )));
        }
        let path = match planned {
            Planned::Skip => return Ok(()),
            Planned::Dir(path, _) => path,
            Planned::File(path, _, size) => {
                self.bytes = self.bytes.saturating_add(*size);
                if self.bytes > self.limit {
                    return Err(too_large(self.limit));
                }
                path
            }
            Planned::Symlink(path, target) => {
                if !stays_inside(path, target) {
                    return Err(invalid(format!(
                        "symlink {} points outside the destination ({})",
                        path.display(),
                        target.display()
                    )));
                }
                path
            }
            Planned::HardLink(path, target) => {
                self.no_symlink_on_the_way(target, true)?;
                path
            }
        };
        self.no_symlink_on_the_way(path, false)?;
        if let Planned::Symlink(path, _) = planned {
            self.symlinks.insert(path.clone());
        }
        Ok(())
    }

    /// Refuses a path whose parents (and the path itself when `including_self`) are symlinks,
    /// either made by an earlier entry or already in the destination.
    fn no_symlink_on_the_way(&self, path: &Path, including_self: bool) -> Result<(), UnpackError> {
        let mut prefix = PathBuf::new();
        let components: Vec<_> = path.components().collect();
        let last = components.len();
        for (i, component) in components.into_iter().enumerate() {
            prefix.push(component);
            if i + 1 == last && !including_self {
                break;
            }
            let on_disk = self.dest.is_some_and(|dest| {
                dest.join(&prefix)
                    .symlink_metadata()
                    .is_ok_and(|m| m.file_type().is_symlink())
            });
            if on_disk || self.symlinks.contains(&prefix) {
                return Err(through_symlink(path, &prefix));
            }
        }
        Ok(())
    }
}

/// The refusal of an entry that would pass through a symlink.
pub fn through_symlink(path: &Path, symlink: &Path) -> UnpackError {
    invalid(format!(
        "entry {} passes through the symlink {}",
        path.display(),
        symlink.display()
    ))
}

/// The refusal of an upload that unpacks to more than `limit` bytes.
pub fn too_large(limit: u64) -> UnpackError {
    UnpackError {
        kind: FileErrorKind::TooLarge,
        message: format!("the archive unpacks to more than {limit} bytes"),
    }
}

/// Whether a relative symlink target, followed from the link's own folder, stays inside the
/// destination (absolute targets never do).
pub fn stays_inside(link: &Path, target: &Path) -> bool {
    if target.is_absolute() || target.as_os_str().is_empty() {
        return false;
    }
    let mut depth: i64 = link.components().count() as i64 - 1;
    for component in target.components() {
        match component {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            _ => return false,
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn symlink_targets_are_judged_from_the_link() {
        assert!(stays_inside(Path::new("a/b/ln"), Path::new("../c")));
        assert!(stays_inside(Path::new("ln"), Path::new("x/../y")));
        assert!(!stays_inside(Path::new("ln"), Path::new("../y")));
        assert!(!stays_inside(Path::new("a/ln"), Path::new("../../y")));
        assert!(!stays_inside(Path::new("ln"), Path::new("/etc")));
    }

    #[test]
    fn without_a_destination_only_the_archive_is_judged() {
        let mut checker = Checker::new(None, 10);
        let ln = checker.path(b"./ln").unwrap();
        checker
            .check(&Planned::Symlink(ln, PathBuf::from("sub")))
            .unwrap();
        let through = checker.path(b"ln/x").unwrap();
        assert!(checker.check(&Planned::File(through, 0o644, 1)).is_err());
        let big = checker.path(b"big").unwrap();
        let err = checker.check(&Planned::File(big, 0o644, 11)).unwrap_err();
        assert_eq!(err.kind, FileErrorKind::TooLarge);
        assert!(checker.path(b"/abs").is_err());
        assert!(checker.path(b"a/../../b").is_err());
    }
}
