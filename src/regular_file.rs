//! The one way pullstart reads a file whose name or content the checkout decides: a compose
//! project's `.env` and `--env-file`s, the compose files `COMPOSE_FILE` names, a `--config` file
//! that lies in the checkout.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The bytes of the regular file at `path`, at most `limit` of them.
///
/// Anyone who can push decides which paths these are (`COMPOSE_FILE=/dev/zero` in a pushed
/// `.env`, a symlink), and a container with the checkout mounted can put a FIFO there. So the
/// file is opened without blocking (`O_NONBLOCK`: opening a FIFO does not wait for a writer),
/// the *opened* file is checked to be a regular file (a check of the path could be raced), and
/// the read stops after `limit` bytes: a device, a FIFO or a socket is an error of kind
/// `InvalidInput`, a directory one of kind `IsADirectory`, a larger file one of kind
/// `FileTooLarge`.
pub fn read(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let file_type = file.metadata()?.file_type();
    if file_type.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::IsADirectory,
            "Is a directory",
        ));
    }
    if !file_type.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file but a FIFO, a device or a socket",
        ));
    }
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!("larger than {limit} bytes"),
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_within_the_limit_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "12345").unwrap();
        assert_eq!(read(&file, 5).unwrap(), b"12345");
        let too_large = read(&file, 4).unwrap_err();
        assert_eq!(too_large.kind(), std::io::ErrorKind::FileTooLarge);
        let device = read(Path::new("/dev/zero"), 5).unwrap_err();
        assert_eq!(device.kind(), std::io::ErrorKind::InvalidInput);
        let directory = read(dir.path(), 5).unwrap_err();
        assert_eq!(directory.kind(), std::io::ErrorKind::IsADirectory);
        let fifo = dir.path().join("fifo");
        let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo(3) with a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let fifo_error = read(&fifo, 5).unwrap_err();
        assert_eq!(fifo_error.kind(), std::io::ErrorKind::InvalidInput);
    }
}
