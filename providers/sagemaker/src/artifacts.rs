//! Model artifacts as SageMaker keeps them: one `model.tar.gz` of the model directory.

use mlctl_core::components::Artifact;
use std::collections::BTreeMap;
use std::io::Read;

/// The largest artifact unpacked (a hostile archive cannot fill memory).
const MAX_UNPACKED: u64 = 8 << 30;

/// Packs the files (sorted, mtime 0, mode 0644): the same files give the same bytes.
pub(crate) fn pack(artifact: &Artifact) -> std::io::Result<Vec<u8>> {
    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (path, data) in &artifact.files {
        let mut h = tar::Header::new_gnu();
        h.set_path(path)?;
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        tar.append(&h, &data[..])?;
    }
    tar.into_inner()?.finish()
}

/// Every regular file of a `.tar.gz`, by its path (a leading `./` dropped); directories and
/// links are skipped.
pub(crate) fn unpack(bytes: &[u8]) -> std::io::Result<Artifact> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let mut files = BTreeMap::new();
    let mut total = 0u64;
    for entry in archive.entries()? {
        let mut entry = entry?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = entry.path()?.to_string_lossy().into_owned();
        let path = path.trim_start_matches("./").to_string();
        total = total.saturating_add(entry.size());
        if total > MAX_UNPACKED {
            return Err(std::io::Error::other(
                "the archive unpacks to more than 8 GiB",
            ));
        }
        let mut data = Vec::with_capacity(entry.size().min(1 << 26) as usize);
        entry.read_to_end(&mut data)?;
        files.insert(path, data);
    }
    Ok(Artifact { files })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_files_unpack_to_the_same_digest() {
        let a = Artifact {
            files: BTreeMap::from([
                ("model.json".to_string(), b"{\"format\":1}".to_vec()),
                ("weights/w.json".to_string(), vec![0u8; 1000]),
            ]),
        };
        let packed = pack(&a).unwrap();
        assert_eq!(packed, pack(&a).unwrap(), "deterministic");
        assert_eq!(unpack(&packed).unwrap().digest(), a.digest());
    }
}
