//! Writing output files safely.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` through a temporary file in the same folder that is synced and then
/// renamed into place (and the folder synced, so the rename survives a crash), so readers never
/// see a partial file and a failure leaves none behind.
/// kiln's reports, pictures and model files are all written this way.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename itself is durable only once the folder's entry is on disk.
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        std::fs::File::open(dir).and_then(|d| d.sync_all())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Puts a temporary file that another writer produced (Burn's recorder writes `.bpk` files itself)
/// in place of `path` the same way [`write_atomic`] does: syncs `tmp`, renames it over `path`,
/// syncs the folder. On failure `tmp` is removed.
pub fn commit_atomic(tmp: &Path, path: &Path) -> std::io::Result<()> {
    let result = (|| {
        std::fs::OpenOptions::new().write(true).open(tmp)?.sync_all()?;
        std::fs::rename(tmp, path)?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        std::fs::File::open(dir).and_then(|d| d.sync_all())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    #[test]
    fn writes_and_leaves_nothing_on_failure() {
        let dir = std::env::temp_dir().join(format!("kiln-data-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.txt");
        super::write_atomic(&p, b"hello").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"hello");
        // A folder that does not exist: an error, and no temporary file anywhere.
        let bad = dir.join("missing").join("b.txt");
        assert!(super::write_atomic(&bad, b"x").is_err());
        // A parent that is a regular file (chmod does not stop root, so this is the portable way
        // to make a folder unwritable): an error, nothing written.
        let file_parent = dir.join("a.txt").join("c.txt");
        assert!(super::write_atomic(&file_parent, b"x").is_err());
        // A temporary file committed over a target.
        std::fs::write(dir.join("t.tmp"), b"new").unwrap();
        super::commit_atomic(&dir.join("t.tmp"), &p).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from("a.txt")]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
