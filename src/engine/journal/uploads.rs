//! Files uploaded for a paid stage (a fal reference image), by content hash: a resumed batch
//! sends the URL it already has instead of uploading again, and a file whose content changed
//! has another hash, so it is uploaded anew.

use rusqlite::{OptionalExtension as _, params};

use super::{Journal, now};

/// One row per uploaded content.
pub(super) const UPLOADS_TABLE: &str = "CREATE TABLE uploads (
    sha256 TEXT PRIMARY KEY, url TEXT NOT NULL, bytes INTEGER NOT NULL, uploaded_at TEXT NOT NULL)";

impl Journal {
    /// The URL the content with hash `sha256` was uploaded to in this batch, if it was.
    pub(super) fn uploaded(&self, sha256: &str) -> anyhow::Result<Option<String>> {
        let conn = self.lock();
        let url = conn
            .query_row("SELECT url FROM uploads WHERE sha256 = ?1", params![sha256], |r| r.get(0))
            .optional()?;
        Ok(url)
    }

    /// Records that the content with hash `sha256` (`bytes` long) is at `url`.
    pub(super) fn record_upload(&self, sha256: &str, url: &str, bytes: u64) -> anyhow::Result<()> {
        self.execute(
            "INSERT INTO uploads (sha256, url, bytes, uploaded_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (sha256) DO UPDATE SET url = ?2, uploaded_at = ?4",
            params![sha256, url, i64::try_from(bytes).unwrap_or(i64::MAX), now()],
        )
    }
}
