//! Reading the operator's files: the chain file, policy modules and policy
//! data files. Only regular files are read, and never more than a bound: a
//! FIFO or a device named by mistake (or by an attacker who can write the
//! chain file) must not hang a reload or fill memory.

use std::io::Read as _;
use std::path::Path;

use crate::error::LoadError;

/// Largest chain file accepted.
pub const MAX_CHAIN_FILE_BYTES: u64 = 1 << 20;
/// Largest policy data file accepted (a password file, an ACL file, a JWKS).
pub const MAX_DATA_FILE_BYTES: u64 = 16 << 20;

/// Read `path` if it is a regular file of at most `max` bytes: never blocks
/// on a FIFO, never reads a device, never reads past `max`.
pub fn read_regular(path: &Path, max: u64) -> Result<Vec<u8>, LoadError> {
    let err = |source: std::io::Error| LoadError::Read {
        path: path.to_owned(),
        error: source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    // Opening a FIFO for reading blocks until a writer appears; non-blocking
    // open returns at once, and the type check below then refuses it.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, nonblocking_flag());
    let file = options.open(path).map_err(err)?;
    let meta = file.metadata().map_err(err)?;
    if !meta.is_file() {
        return Err(err(std::io::Error::other(
            "not a regular file (a FIFO, device or directory is never read)",
        )));
    }
    if meta.len() > max {
        return Err(err(std::io::Error::other(format!(
            "file is {} bytes, over the {max} byte limit",
            meta.len()
        ))));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    // The file may grow between the check and the read: never read past max.
    file.take(max + 1).read_to_end(&mut bytes).map_err(err)?;
    if bytes.len() as u64 > max {
        return Err(err(std::io::Error::other(format!(
            "file grew over the {max} byte limit while being read"
        ))));
    }
    Ok(bytes)
}

/// Read a text file (UTF-8) under the same rules.
pub fn read_regular_text(path: &Path, max: u64) -> Result<String, LoadError> {
    let bytes = read_regular(path, max)?;
    String::from_utf8(bytes).map_err(|e| LoadError::Read {
        path: path.to_owned(),
        error: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        ),
    })
}

#[cfg(target_os = "linux")]
fn nonblocking_flag() -> i32 {
    0o4000 // O_NONBLOCK on Linux
}

#[cfg(all(unix, not(target_os = "linux")))]
fn nonblocking_flag() -> i32 {
    0x0004 // O_NONBLOCK on the BSDs and macOS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_within_the_bound_are_read() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("f");
        std::fs::write(&file, b"hello")?;
        assert_eq!(read_regular(&file, 5)?, b"hello");
        let too_big = read_regular(&file, 4).err().map(|e| e.to_string());
        assert!(too_big.is_some_and(|e| e.contains("over the 4 byte limit")));
        let dev = read_regular(Path::new("/dev/zero"), 1 << 20)
            .err()
            .map(|e| e.to_string());
        assert!(
            dev.is_some_and(|e| e.contains("not a regular file")),
            "devices are refused"
        );
        let dir_err = read_regular(dir.path(), 10).err().map(|e| e.to_string());
        assert!(dir_err.is_some_and(|e| e.contains("not a regular file")));
        #[cfg(unix)]
        {
            let fifo = dir.path().join("fifo");
            let made = std::process::Command::new("mkfifo").arg(&fifo).status()?;
            if made.success() {
                // Would block for ever without the non-blocking open.
                let e = read_regular(&fifo, 10).err().map(|e| e.to_string());
                assert!(e.is_some_and(|e| e.contains("not a regular file")));
            }
        }
        std::fs::write(&file, [0xff, 0xfe])?;
        let text = read_regular_text(&file, 10).err().map(|e| e.to_string());
        assert!(text.is_some_and(|e| e.contains("not UTF-8")));
        Ok(())
    }
}
