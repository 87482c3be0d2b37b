//! Positional reads, the only way the block readers touch their files, so a
//! local file, an in-memory buffer and (later) an object-store range request
//! serve the same parsing code.

use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::error::BlockError;

/// Random access to an immutable file of known size.
pub trait ReadAt: Send + Sync + fmt::Debug {
    /// The file's size in bytes (for an object: from the listing or a HEAD).
    fn size(&self) -> u64;

    /// Exactly `len` bytes starting at `offset`. Callers only ask for ranges
    /// within [`ReadAt::size`]; a short read is an error.
    fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes>;
}

/// An in-memory file.
impl ReadAt for Bytes {
    fn size(&self) -> u64 {
        self.len() as u64
    }

    fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let start = usize::try_from(offset).map_err(|_| eof())?;
        let end = start.checked_add(len).ok_or_else(eof)?;
        if end > self.len() {
            return Err(eof());
        }
        Ok(self.slice(start..end))
    }
}

fn eof() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end")
}

/// A local file read with positional reads (no shared cursor, no lock on Unix).
#[derive(Debug)]
pub struct FileReadAt {
    path: PathBuf,
    size: u64,
    #[cfg(unix)]
    file: File,
    #[cfg(not(unix))]
    file: parking_lot::Mutex<File>,
}

impl FileReadAt {
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = File::open(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_path_buf(),
            size,
            #[cfg(unix)]
            file,
            #[cfg(not(unix))]
            file: parking_lot::Mutex::new(file),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl ReadAt for FileReadAt {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let mut buf = vec![0u8; len];
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileExt;
            self.file.read_exact_at(&mut buf, offset)?;
        }
        #[cfg(not(unix))]
        {
            use std::io::{Read, Seek, SeekFrom};
            let mut f = self.file.lock();
            f.seek(SeekFrom::Start(offset))?;
            f.read_exact(&mut buf)?;
        }
        Ok(Bytes::from(buf))
    }
}

/// A [`ReadAt`] with the name used in error messages; every read is checked
/// against the size first, so a corrupt offset or length becomes an error that
/// names the file and the offset.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    name: String,
    inner: Arc<dyn ReadAt>,
    size: u64,
}

impl Source {
    pub(crate) fn new(name: String, inner: Arc<dyn ReadAt>) -> Self {
        let size = inner.size();
        Self { name, inner, size }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    pub(crate) fn corrupt(&self, offset: u64, reason: impl Into<String>) -> BlockError {
        BlockError::Corrupt {
            file: self.name.clone(),
            offset,
            reason: reason.into(),
        }
    }

    /// `len` bytes at `offset`, or an error if they are not all in the file.
    pub(crate) fn read(&self, offset: u64, len: u64) -> Result<Bytes, BlockError> {
        let in_bounds = offset.checked_add(len).is_some_and(|end| end <= self.size);
        if !in_bounds {
            return Err(self.corrupt(
                offset,
                format!(
                    "{len} bytes requested, past the end of the {}-byte file",
                    self.size
                ),
            ));
        }
        let len = usize::try_from(len)
            .map_err(|_| self.corrupt(offset, format!("{len} bytes do not fit in memory")))?;
        let data = self
            .inner
            .read_at(offset, len)
            .map_err(|source| BlockError::Io {
                path: self.name.clone(),
                op: "read",
                source,
            })?;
        if data.len() != len {
            return Err(self.corrupt(offset, format!("short read: {} of {len} bytes", data.len())));
        }
        Ok(data)
    }

    /// Up to `len` bytes at `offset`, fewer if the file ends first: for reading
    /// a length-prefixed entry before its length is known.
    pub(crate) fn read_upto(&self, offset: u64, len: u64) -> Result<Bytes, BlockError> {
        if offset > self.size {
            return Err(self.corrupt(
                offset,
                format!("offset past the end of the {}-byte file", self.size),
            ));
        }
        self.read(offset, len.min(self.size - offset))
    }
}
