//! An OCI image layout (image-spec `image-layout.md`): a folder with `oci-layout`,
//! `index.json` and `blobs/ALG/HEX`, or the same as a tar file (`podman save --format
//! oci-archive`). Blobs are checked against their digests as they are read.

use std::{
    collections::HashMap,
    io::Read,
    path::{Path, PathBuf},
};

use bytes::Bytes;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::error::OciError;

/// A content descriptor: what a manifest or index points at.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// The media type of the target.
    pub media_type: String,
    /// `sha256:HEX`.
    pub digest: String,
    /// The target's size in bytes.
    pub size: u64,
    /// Annotations, e.g. `org.opencontainers.image.ref.name`.
    #[serde(default)]
    pub annotations: HashMap<String, String>,
}

/// An image index (`index.json`, or an index blob).
#[derive(Debug, Deserialize)]
pub struct Index {
    /// What it lists.
    pub manifests: Vec<Descriptor>,
}

/// An image manifest: the blobs an image is made of.
#[derive(Debug, Deserialize)]
pub struct Manifest {
    /// The config blob.
    pub config: Descriptor,
    /// The layer blobs.
    pub layers: Vec<Descriptor>,
}

/// The annotation naming a manifest's tag in `index.json`.
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Where the layout's files are.
enum Files {
    Folder(PathBuf),
    /// An archive, read into memory (images here are tens of MB).
    Archive(HashMap<String, Bytes>),
}

/// An opened OCI image layout.
pub struct Layout {
    path: PathBuf,
    files: Files,
}

impl Layout {
    /// Opens a layout folder or an oci-archive tar file and checks its `oci-layout` marker.
    pub fn open(path: &Path) -> Result<Self, OciError> {
        let files = if path.is_dir() {
            Files::Folder(path.to_path_buf())
        } else {
            Files::Archive(read_archive(path)?)
        };
        let layout = Self {
            path: path.to_path_buf(),
            files,
        };
        let marker: serde_json::Value = layout.json("oci-layout")?;
        if marker.get("imageLayoutVersion").and_then(|v| v.as_str()) != Some("1.0.0") {
            return Err(layout.error(format!(
                "oci-layout says {marker}, expected imageLayoutVersion 1.0.0"
            )));
        }
        Ok(layout)
    }

    fn error(&self, reason: String) -> OciError {
        OciError::Layout {
            path: self.path.clone(),
            reason,
        }
    }

    fn file(&self, name: &str) -> Result<Bytes, OciError> {
        match &self.files {
            Files::Folder(dir) => std::fs::read(dir.join(name))
                .map(Bytes::from)
                .map_err(|e| self.error(format!("{name}: {e}"))),
            Files::Archive(entries) => entries
                .get(name)
                .cloned()
                .ok_or_else(|| self.error(format!("{name} is missing from the archive"))),
        }
    }

    fn json<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T, OciError> {
        let bytes = self.file(name)?;
        serde_json::from_slice(&bytes).map_err(|e| self.error(format!("{name}: {e}")))
    }

    /// The manifest to push for `tag`: the only one in `index.json`, or the one whose
    /// `org.opencontainers.image.ref.name` is `tag` (or ends in `:tag`).
    pub fn top(&self, tag: Option<&str>) -> Result<Descriptor, OciError> {
        let index: Index = self.json("index.json")?;
        match index.manifests.as_slice() {
            [] => Err(self.error("index.json lists no manifests".into())),
            [only] => Ok(only.clone()),
            many => {
                let names = |d: &Descriptor| d.annotations.get(REF_NAME).cloned();
                let wanted = tag.unwrap_or("latest");
                many.iter()
                    .find(|d| {
                        names(d).is_some_and(|n| n == wanted || n.ends_with(&format!(":{wanted}")))
                    })
                    .cloned()
                    .ok_or_else(|| {
                        let known: Vec<String> = many.iter().filter_map(names).collect();
                        self.error(format!(
                            "index.json lists {} manifests and none is named `{wanted}` (names: {})",
                            many.len(),
                            known.join(", ")
                        ))
                    })
            }
        }
    }

    /// The blob `descriptor` points at, checked against its digest and size.
    pub fn blob(&self, descriptor: &Descriptor) -> Result<Bytes, OciError> {
        let hex = descriptor
            .digest
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| {
                self.error(format!(
                    "digest `{}` is not sha256:HEX (only sha256 is supported)",
                    descriptor.digest
                ))
            })?;
        let bytes = self.file(&format!("blobs/sha256/{hex}"))?;
        let actual = hex::encode(Sha256::digest(&bytes));
        if actual != hex || bytes.len() as u64 != descriptor.size {
            return Err(self.error(format!(
                "blob {} is corrupt: {} bytes with sha256:{actual}, the descriptor says {} bytes",
                descriptor.digest,
                bytes.len(),
                descriptor.size
            )));
        }
        Ok(bytes)
    }

    /// Parses a JSON blob (a manifest or an index).
    pub fn parse<T: serde::de::DeserializeOwned>(
        &self,
        descriptor: &Descriptor,
        bytes: &[u8],
    ) -> Result<T, OciError> {
        serde_json::from_slice(bytes).map_err(|e| {
            self.error(format!(
                "{} ({}): {e}",
                descriptor.digest, descriptor.media_type
            ))
        })
    }
}

fn read_archive(path: &Path) -> Result<HashMap<String, Bytes>, OciError> {
    let error = |reason: String| OciError::Layout {
        path: path.to_path_buf(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| error(format!("opening: {e}")))?;
    let mut archive = tar::Archive::new(file);
    let mut entries = HashMap::new();
    for entry in archive
        .entries()
        .map_err(|e| error(format!("not a tar archive: {e}")))?
    {
        let mut entry = entry.map_err(|e| error(format!("reading the archive: {e}")))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry
            .path()
            .map_err(|e| error(format!("an entry's name: {e}")))?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        let mut bytes = Vec::new();
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| error(format!("reading {name}: {e}")))?;
        entries.insert(name, Bytes::from(bytes));
    }
    Ok(entries)
}
