//! A PDF file written one object at a time, keeping each object's offset for the xref table.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use pdf_writer::{Chunk, Ref};

/// A PDF file written one object at a time, remembering each object's byte offset for the
/// cross-reference table. Removed on drop unless [`ObjectFile::commit`] renamed it into place.
pub(super) struct ObjectFile {
    pub(super) path: PathBuf,
    pub(super) out: BufWriter<File>,
    pub(super) position: u64,
    /// Offset of object `n` at index `n - 1`; `None` until it is written.
    pub(super) offsets: Vec<Option<u64>>,
    pub(super) committed: bool,
}

impl ObjectFile {
    pub(super) fn create(path: &Path) -> io::Result<Self> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let mut out = BufWriter::new(File::create(path)?);
        // The binary-marker comment tells transfer tools the file is not text.
        let header = b"%PDF-1.7\n%\x80\x80\x80\x80\n";
        out.write_all(header)?;
        Ok(ObjectFile {
            path: path.to_owned(),
            out,
            position: header.len() as u64,
            offsets: Vec::new(),
            committed: false,
        })
    }

    /// Reserves the next object number.
    pub(super) fn alloc(&mut self) -> Ref {
        self.offsets.push(None);
        Ref::new(self.offsets.len() as i32)
    }

    /// Appends a chunk holding exactly one object (so its offset is where the chunk starts).
    pub(super) fn write(&mut self, chunk: &Chunk) -> io::Result<()> {
        let mut refs = chunk.refs();
        let (Some(id), None) = (refs.next(), refs.next()) else {
            return Err(io::Error::other("internal: a chunk must hold exactly one object"));
        };
        let slot = usize::try_from(id.get() - 1).ok().and_then(|index| self.offsets.get_mut(index));
        let Some(slot @ None) = slot else {
            return Err(io::Error::other(format!(
                "internal: object {} is unallocated or written twice",
                id.get()
            )));
        };
        *slot = Some(self.position);
        self.out.write_all(chunk.as_bytes())?;
        self.position += chunk.len() as u64;
        Ok(())
    }

    pub(super) fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Writes the xref table and trailer, syncs, and renames the file to `final_path`.
    pub(super) fn commit(mut self, catalog: Ref, info: Ref, final_path: &Path) -> io::Result<()> {
        let xref_offset = self.position;
        let size = self.offsets.len() + 1;
        let mut tail = Vec::with_capacity(64 + 20 * size);
        write!(tail, "xref\n0 {size}\n0000000000 65535 f\r\n")?;
        for (index, offset) in self.offsets.iter().enumerate() {
            let Some(offset) = offset else {
                return Err(io::Error::other(format!("internal: object {} was never written", index + 1)));
            };
            write!(tail, "{offset:010} 00000 n\r\n")?;
        }
        write!(
            tail,
            "trailer\n<< /Size {size} /Root {} 0 R /Info {} 0 R >>\nstartxref\n{xref_offset}\n%%EOF\n",
            catalog.get(),
            info.get()
        )?;
        self.out.write_all(&tail)?;
        self.out.flush()?;
        self.out.get_ref().sync_all()?;
        fs::rename(&self.path, final_path)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for ObjectFile {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: a partial book is useless, and the next run truncates it anyway.
            let _ = fs::remove_file(&self.path);
        }
    }
}
