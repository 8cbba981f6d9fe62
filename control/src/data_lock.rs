//! One `outdial serve` per data directory: an exclusive `flock` on `<data_dir>/outdial.lock`,
//! held for the life of the process (the kernel releases it when the process ends, however it
//! ends, so a crash never leaves a stale lock behind).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = "outdial.lock";

/// Why the data directory could not be locked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Another process holds the lock.
    #[error(
        "the data directory {dir} is in use by another `outdial serve` ({holder}); stop that \
         server first, or give this one its own [store] data_dir"
    )]
    InUse {
        /// The data directory.
        dir: PathBuf,
        /// What the lock file says about its holder (`pid 1234`), or `pid unknown`.
        holder: String,
    },
    /// The lock file could not be opened or locked.
    #[error("cannot lock {path}: {source} (check that the data directory is writable)")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The operating-system error.
        source: std::io::Error,
    },
}

/// An exclusive lock on a data directory; released when dropped or when the process exits.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Locks `dir` (which must exist) and writes this process's id into the lock file.
    pub fn acquire(dir: &Path) -> Result<Self, LockError> {
        let path = dir.join(LOCK_FILE);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let holder = match text.trim().parse::<u32>() {
                    Ok(pid) => format!("pid {pid}"),
                    Err(_) => "pid unknown".to_owned(),
                };
                return Err(LockError::InUse {
                    dir: dir.to_path_buf(),
                    holder,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let first = DataDirLock::acquire(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        // flock locks belong to the open file description, so a second open in the same
        // process conflicts just as another process would.
        let second = DataDirLock::acquire(dir.path());
        let Err(LockError::InUse { holder, .. }) = &second else {
            panic!("second lock: {second:?}")
        };
        assert_eq!(holder, &format!("pid {}", std::process::id()));
        let message = second.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("another `outdial serve`"), "{message}");
        drop(first);
        assert!(DataDirLock::acquire(dir.path()).is_ok());
    }

    #[test]
    fn a_missing_directory_is_an_io_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let missing = dir.path().join("absent");
        let result = DataDirLock::acquire(&missing);
        let Err(e @ LockError::Io { .. }) = result else {
            panic!("{result:?}")
        };
        assert!(e.to_string().contains("outdial.lock"), "{e}");
    }
}
