//! The job a fetch carries: what `get`, `mirror s3://` and the stores'
//! listings hand to the pipeline. Below `get`, `probe` and `store`, so that
//! data walks one way: commands → get/probe/cp → store → pipeline → fetch.

use crate::fetch::url::Url;

/// One file to fetch.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Job {
    /// Line number in the list (1-based); 0 for URLs from the command line.
    pub line: u64,
    pub url: String,
    /// Relative output path.
    pub name: String,
    pub sha256: Option<[u8; 32]>,
    /// Set for an object-store object (boxed: one word for other jobs,
    /// which are most of a frontier's memory).
    pub object: Option<Box<Object>>,
}

/// What is known of an object-store job's object.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Object {
    /// What messages, the ledger and sidecars show instead of the job's
    /// presigned `url`, which holds a signature: `s3://BUCKET/KEY`.
    pub shown: String,
    /// The size the listing gave, checked on landing.
    pub size: Option<u64>,
    /// The MD5 the listing's ETag gave (`--checksum`), checked on landing.
    pub md5: Option<[u8; 16]>,
    /// The CRC32C the listing gave where it gave no MD5 (`--checksum`),
    /// checked on landing.
    #[serde(default)]
    pub crc32c: Option<u32>,
    /// The pipeline sends it signed in an `Authorization` header made at
    /// send time (its store's [`crate::store::Store::sign_get`]), the path
    /// without the URL's presigned query. The presigned `url` stands for
    /// every other way it may go (a split download, a redirect).
    #[serde(default)]
    pub sign: bool,
}

impl Job {
    /// The URL for messages, the ledger and resume sidecars.
    pub fn shown(&self) -> &str {
        self.object.as_ref().map_or(&self.url, |o| &o.shown)
    }

    /// The listed size, if a listing gave one.
    pub fn size(&self) -> Option<u64> {
        self.object.as_ref().and_then(|o| o.size)
    }

    /// The expected MD5, if checked.
    pub fn md5(&self) -> Option<[u8; 16]> {
        self.object.as_ref().and_then(|o| o.md5)
    }

    /// The expected CRC32C, if checked.
    pub fn crc32c(&self) -> Option<u32> {
        self.object.as_ref().and_then(|o| o.crc32c)
    }

    /// The parsed URL (checked when the job was made).
    pub fn target(&self) -> Url<'_> {
        Url::parse(&self.url).expect("checked when the job was made")
    }
}
