//! Writing output files safely, and the fault-injection points the crash tests kill kiln at.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::sync::OnceLock;

/// The environment variable that arms a fault-injection point (for kiln's crash tests):
/// `KILN_FAILPOINT=<point>[@n]` makes the process kill itself with `SIGKILL` at the `n`-th time
/// (default 1) it reaches `<point>`, exactly as if it had been killed from outside at that moment
/// (no destructor, no flush, no cleanup).
///
/// Points: `write:<file name>` (half-way through writing that file's temporary copy, before the
/// rename: e.g. `write:model.bpk`, `write:model-2.bpk` for the checkpoint of epoch 2),
/// `train-batch` (before the `n`-th training batch of the run), and whatever else calls
/// [`failpoint`]. Unset (the normal case), each point costs one comparison.
pub const FAILPOINT_ENV: &str = "KILN_FAILPOINT";

fn armed() -> Option<&'static (String, u64)> {
    static ARMED: OnceLock<Option<(String, u64)>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let v = std::env::var(FAILPOINT_ENV).ok()?;
            let (name, n) = match v.rsplit_once('@') {
                Some((name, n)) => (name.to_string(), n.parse().ok()?),
                None => (v, 1),
            };
            Some((name, n))
        })
        .as_ref()
}

/// `true` when `point` is the armed point and this is the hit it was armed for (see
/// [`FAILPOINT_ENV`]); the caller then does what a crash there would leave behind and calls
/// [`die`].
pub fn failpoint_hit(point: &str) -> bool {
    static HITS: Mutex<u64> = Mutex::new(0);
    match armed() {
        Some((name, n)) if name == point => {
            let mut hits = HITS.lock().unwrap_or_else(|e| e.into_inner());
            *hits += 1;
            *hits == *n
        }
        _ => false,
    }
}

/// Kills the process with `SIGKILL` when `point` is the armed fault-injection point.
pub fn failpoint(point: &str) {
    if failpoint_hit(point) {
        die();
    }
}

/// `SIGKILL` to this process (what `kill -9` does; elsewhere than Unix, an abort).
pub fn die() -> ! {
    #[cfg(unix)]
    // SAFETY: kill(2) on our own pid has no memory-safety preconditions.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    std::process::abort()
}

/// Syncs the folder that holds `path` (a rename is durable only once the folder's entry is on
/// disk).
fn sync_folder_of(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir).and_then(|d| d.sync_all())
}

fn write_point(path: &Path) -> bool {
    match (armed(), path.file_name()) {
        (Some(_), Some(name)) => failpoint_hit(&format!("write:{}", name.to_string_lossy())),
        _ => false,
    }
}

/// Writes `bytes` to `path` through a temporary file in the same folder that is synced and then
/// renamed into place (and the folder synced, so the rename survives a crash), so readers never
/// see a partial file and a failure leaves none behind.
/// kiln's reports, pictures and model files are all written this way.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        if write_point(path) {
            // Killed half-way through the write: half a temporary file, the target untouched.
            f.write_all(&bytes[..bytes.len() / 2])?;
            f.sync_all()?;
            die();
        }
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename itself is durable only once the folder's entry is on disk.
        sync_folder_of(path)
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
        let f = std::fs::OpenOptions::new().write(true).open(tmp)?;
        if write_point(path) {
            // Killed while the other writer was still writing: half of it on disk, no rename.
            f.set_len(f.metadata()?.len() / 2)?;
            f.sync_all()?;
            die();
        }
        f.sync_all()?;
        std::fs::rename(tmp, path)?;
        sync_folder_of(path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    result
}

/// Removes what an interrupted kiln writer left in `dir`: the hidden temporary files and folders
/// of [`write_atomic`] / [`replace_dir`] (`.<name>.tmp-<pid>`, `.<name>.new-<pid>`,
/// `.<name>.old-<pid>`) and Burn's `.bpk.partial` files. Returns how many it removed.
pub fn remove_temporaries(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut n = 0;
    for e in entries.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        let ours = name.starts_with('.')
            && [".tmp-", ".new-", ".old-"].iter().any(|m| {
                name.rsplit_once(m).is_some_and(|(_, pid)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
            });
        if ours || name.ends_with(".bpk.partial") {
            let p = e.path();
            let removed = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
            n += removed.is_ok() as usize;
        }
    }
    n
}

/// Puts the folder `new` (complete, written by the caller) in place of the folder `dst`: the
/// files and `new` are synced, then on Linux the two are exchanged in one `renameat2(...,
/// RENAME_EXCHANGE)` and the old contents removed, so `dst` is at every moment either the old
/// folder or the new one. Where the exchange is not supported (another OS, a file system without
/// it) `dst` is first renamed aside, then `new` renamed into place: a crash between the two
/// renames leaves no `dst`, never a mixed one. The parent folder is synced last.
pub fn replace_dir(new: &Path, dst: &Path) -> std::io::Result<()> {
    for e in std::fs::read_dir(new)? {
        let p = e?.path();
        if p.is_file() {
            std::fs::File::open(&p)?.sync_all()?;
        }
    }
    std::fs::File::open(new)?.sync_all()?;
    let name = dst.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    failpoint(&format!("replace-dir:{name}"));
    if !dst.exists() {
        std::fs::rename(new, dst)?;
    } else if exchange(new, dst)? {
        std::fs::remove_dir_all(new)?;
    } else {
        let old = dst.with_file_name(format!(".{name}.old-{}", std::process::id()));
        std::fs::rename(dst, &old)?;
        std::fs::rename(new, dst)?;
        std::fs::remove_dir_all(&old)?;
    }
    sync_folder_of(dst)
}

/// Exchanges two paths atomically; `Ok(false)` where the system cannot.
fn exchange(a: &Path, b: &Path) -> std::io::Result<bool> {
    #[cfg(target_os = "linux")]
    {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let ca = CString::new(a.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
        let cb = CString::new(b.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
        // SAFETY: two valid NUL-terminated paths; renameat2 reads them and nothing else.
        let r =
            unsafe { libc::renameat2(libc::AT_FDCWD, ca.as_ptr(), libc::AT_FDCWD, cb.as_ptr(), libc::RENAME_EXCHANGE) };
        if r == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::EXDEV) | Some(libc::ENOTSUP) => Ok(false),
            _ => Err(e),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (a, b);
        Ok(false)
    }
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
        // A folder replaced by another: the new files only, nothing left beside it.
        let (old, new) = (dir.join("model"), dir.join(".model.new"));
        std::fs::create_dir_all(&old).unwrap();
        std::fs::write(old.join("old.bin"), b"old").unwrap();
        std::fs::create_dir_all(&new).unwrap();
        std::fs::write(new.join("new.bin"), b"new").unwrap();
        super::replace_dir(&new, &old).unwrap();
        let files: Vec<_> = std::fs::read_dir(&old).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(files, vec![std::ffi::OsString::from("new.bin")]);
        let mut left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        left.sort();
        assert_eq!(left, vec![std::ffi::OsString::from("a.txt"), std::ffi::OsString::from("model")]);
        // What a killed writer leaves is recognised and removed; other hidden files are not.
        std::fs::write(dir.join(".report.json.tmp-4242"), b"half").unwrap();
        std::fs::create_dir_all(dir.join(".model.new-77")).unwrap();
        std::fs::write(dir.join(".keep.tmp-x"), b"user's").unwrap();
        assert_eq!(super::remove_temporaries(&dir), 2);
        assert!(dir.join(".keep.tmp-x").exists());
        std::fs::remove_file(dir.join(".keep.tmp-x")).unwrap();
        // Into a place where there was none.
        std::fs::create_dir_all(&new).unwrap();
        super::replace_dir(&new, &dir.join("fresh")).unwrap();
        assert!(dir.join("fresh").is_dir() && !new.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
