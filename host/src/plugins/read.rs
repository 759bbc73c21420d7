//! Reading a plugin file as the untrusted input it is.
//!
//! A service folder belongs to its team, and so do the files in it. A file
//! is opened relative to its folder (itself opened without following a
//! link), without following a link and without blocking (a FIFO would
//! otherwise hang the reading thread until someone writes to it); it must
//! be a regular file no larger than the cap, and at most the cap is read
//! even if it grows meanwhile. So a link to another team's `service.toml`,
//! to `/dev/zero` or to a file outside the folder is refused, not followed.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{FileType, Mode, OFlags};

/// Why a plugin file was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// There is no such file (or no such folder).
    #[error("not found")]
    NotFound,
    /// The file, or its service folder, is a symbolic link.
    #[error("is a symbolic link; plugin files must be regular files inside the service folder")]
    Link,
    /// The file is a directory, FIFO, socket or device.
    #[error("is a {0}, not a regular file")]
    NotRegular(&'static str),
    /// The file is larger than the cap.
    #[error("is {size} bytes, more than the limit of {limit}")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The cap.
        limit: u64,
    },
    /// Any other I/O failure.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl From<rustix::io::Errno> for ReadError {
    fn from(errno: rustix::io::Errno) -> Self {
        match errno {
            rustix::io::Errno::NOENT => Self::NotFound,
            // O_NOFOLLOW on a link.
            rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR => Self::Link,
            other => Self::Io(other.into()),
        }
    }
}

fn kind(file_type: FileType) -> &'static str {
    match file_type {
        FileType::Directory => "directory",
        FileType::Fifo => "FIFO",
        FileType::Socket => "socket",
        FileType::CharacterDevice | FileType::BlockDevice => "device",
        FileType::Symlink => "symbolic link",
        _ => "special file",
    }
}

/// Opens `dir` itself without following a link.
fn open_folder(dir: &Path) -> Result<OwnedFd, ReadError> {
    Ok(rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Reads the file `name` of the service folder `dir`: a regular file of at
/// most `limit` bytes, reached without following any link. Blocking: call
/// it off the async runtime.
pub fn read_plugin_file(dir: &Path, name: &str, limit: u64) -> Result<Vec<u8>, ReadError> {
    let folder = open_folder(dir)?;
    let fd = rustix::fs::openat(
        &folder,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let stat = rustix::fs::fstat(&fd)?;
    let file_type = FileType::from_raw_mode(stat.st_mode);
    if file_type != FileType::RegularFile {
        return Err(ReadError::NotRegular(kind(file_type)));
    }
    let size = u64::try_from(stat.st_size).unwrap_or(0);
    if size > limit {
        return Err(ReadError::TooLarge { size, limit });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    // A file that grows while it is read is cut at the cap plus one byte,
    // which the check below refuses.
    std::fs::File::from(fd)
        .take(limit + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge {
            size: bytes.len() as u64,
            limit,
        });
    }
    Ok(bytes)
}

/// Whether `dir` is a real folder (not a link to one).
pub fn is_real_folder(dir: &Path) -> bool {
    std::fs::symlink_metadata(dir).is_ok_and(|metadata| metadata.is_dir())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("wasmgate-read-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn regular_files_within_the_cap_are_read() {
        let dir = folder("regular");
        std::fs::write(dir.join("handler.wasm"), b"\0asm").unwrap();
        assert_eq!(read_plugin_file(&dir, "handler.wasm", 4).unwrap(), b"\0asm");
        assert!(matches!(
            read_plugin_file(&dir, "handler.wasm", 3),
            Err(ReadError::TooLarge { size: 4, limit: 3 })
        ));
        assert!(matches!(
            read_plugin_file(&dir, "absent.wasm", 4),
            Err(ReadError::NotFound)
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn links_fifos_and_devices_are_refused_without_blocking() {
        let dir = folder("hostile");
        std::os::unix::fs::symlink("/dev/zero", dir.join("zero.wasm")).unwrap();
        std::fs::write(dir.join("real.toml"), b"x = 1").unwrap();
        std::os::unix::fs::symlink(dir.join("real.toml"), dir.join("service.toml")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            dir.join("fifo.wasm"),
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        std::fs::create_dir(dir.join("folder.wasm")).unwrap();
        assert!(matches!(
            read_plugin_file(&dir, "zero.wasm", 1 << 20),
            Err(ReadError::Link)
        ));
        assert!(matches!(
            read_plugin_file(&dir, "service.toml", 1 << 20),
            Err(ReadError::Link)
        ));
        assert!(matches!(
            read_plugin_file(&dir, "fifo.wasm", 1 << 20),
            Err(ReadError::NotRegular("FIFO"))
        ));
        assert!(matches!(
            read_plugin_file(&dir, "folder.wasm", 1 << 20),
            Err(ReadError::NotRegular("directory"))
        ));
        // A service folder that is itself a link is not entered.
        let linked = dir.with_extension("link");
        let _ = std::fs::remove_file(&linked);
        std::os::unix::fs::symlink(&dir, &linked).unwrap();
        assert!(matches!(
            read_plugin_file(&linked, "real.toml", 1 << 20),
            Err(ReadError::Link)
        ));
        assert!(!is_real_folder(&linked));
        std::fs::remove_file(linked).unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }
}
