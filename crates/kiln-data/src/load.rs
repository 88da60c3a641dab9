//! Loading a dataset by name (`mnist-5k`) or by folder, with its format detected or forced.

use std::path::{Path, PathBuf};

use crate::dataset::{ImageDataset, Split};
use crate::error::{DataError, Result, io_err};

/// The on-disk formats this crate reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// MNIST's IDX files (`train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`,
    /// `t10k-*` or `test-*` for the test split).
    Idx,
    /// CIFAR-10 binary batches (`data_batch_*.bin`, `test_batch.bin`).
    Cifar10,
    /// One subfolder per class holding PNG / JPEG files (optionally under `train/` and `test/`).
    ImageFolder,
}

impl Format {
    /// Every format, in detection order.
    pub const ALL: [Format; 3] = [Format::Idx, Format::Cifar10, Format::ImageFolder];

    /// The name [`FromStr`](std::str::FromStr) accepts and `Display` prints.
    pub fn name(self) -> &'static str {
        match self {
            Format::Idx => "idx",
            Format::Cifar10 => "cifar10",
            Format::ImageFolder => "image-folder",
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Format {
    type Err = DataError;

    /// Accepts `idx` / `mnist`, `cifar10` / `cifar` / `cifar-10`, `image-folder` / `folder` /
    /// `imagefolder` (case-insensitive).
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "idx" | "mnist" => Ok(Format::Idx),
            "cifar10" | "cifar-10" | "cifar" => Ok(Format::Cifar10),
            "image-folder" | "imagefolder" | "folder" | "image_folder" => Ok(Format::ImageFolder),
            other => Err(DataError::InvalidArgument(format!(
                "unknown dataset format {other:?}; use one of idx, cifar10, image-folder"
            ))),
        }
    }
}

/// Names [`Dataset::load`] resolves without a path, each a folder under [`data_dir`].
pub const BUILTIN_DATASETS: &[&str] = &["mnist-5k"];

/// The folder holding the built-in datasets: `$KILN_DATA_DIR` when set; else the nearest `data/`
/// folder holding `mnist-5k` in the current directory or one above it (a kiln checkout you are
/// working in); else the repository's `data/` folder as found from this crate's manifest directory
/// at build time (which may name another checkout when build outputs are shared between clones).
pub fn data_dir() -> PathBuf {
    data_dir_from(std::env::var_os("KILN_DATA_DIR"), std::env::current_dir().ok().as_deref())
}

fn data_dir_from(env: Option<std::ffi::OsString>, cwd: Option<&Path>) -> PathBuf {
    if let Some(d) = env.filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..").join("data");
    cwd.into_iter()
        .flat_map(Path::ancestors)
        .map(|dir| dir.join("data"))
        .find(|data| data.join(BUILTIN_DATASETS[0]).is_dir())
        .unwrap_or(built)
}

/// A dataset: its training split and, when the files provide one, its test split.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// The name it was loaded by (a built-in name or the path as given).
    pub name: String,
    /// The folder it was read from.
    pub root: PathBuf,
    /// The format it was read as.
    pub format: Format,
    /// The training split.
    pub train: ImageDataset,
    /// The test split, `None` when the folder has none.
    pub test: Option<ImageDataset>,
}

impl Dataset {
    /// The built-in `mnist-5k` subset: 4,000 train / 1,000 test images of `[1, 28, 28]`, 10
    /// classes (`"0"`..`"9"`), 400 / 100 per digit.
    pub fn mnist_5k() -> Result<Self> {
        Self::load("mnist-5k", None)
    }

    /// Loads a built-in dataset by name (see [`BUILTIN_DATASETS`]) or a folder by path.
    ///
    /// With `format == None` the format is detected: IDX files present -> [`Format::Idx`];
    /// `data_batch_*.bin` / `test_batch.bin` (also under `cifar-10-batches-bin/`) ->
    /// [`Format::Cifar10`]; subfolders -> [`Format::ImageFolder`].
    pub fn load(name_or_path: &str, format: Option<Format>) -> Result<Self> {
        let builtin = BUILTIN_DATASETS.contains(&name_or_path);
        let root = if builtin { data_dir().join(name_or_path) } else { PathBuf::from(name_or_path) };
        if !root.exists() {
            let hint = if builtin {
                "set KILN_DATA_DIR to the folder that holds it".to_string()
            } else {
                format!("give a folder path or one of the built-in names {BUILTIN_DATASETS:?}")
            };
            return Err(DataError::NotFound { name: name_or_path.to_string(), path: root, hint });
        }
        let mut ds = Self::load_path(&root, format)?;
        ds.name = name_or_path.to_string();
        Ok(ds)
    }

    /// Loads the folder `root` (see [`load`](Self::load)).
    pub fn load_path(root: &Path, format: Option<Format>) -> Result<Self> {
        if !root.is_dir() {
            return Err(DataError::UnsupportedFormat {
                path: root.to_path_buf(),
                reason: "expected a folder holding the dataset's files, not a file".into(),
            });
        }
        let format = match format {
            Some(f) => f,
            None => detect_format(root)?,
        };
        let (train, test) = match format {
            Format::Idx => read_idx_dir(root)?,
            Format::Cifar10 => crate::cifar::read_cifar10_dir(root)?,
            Format::ImageFolder => crate::folder::read_image_folder_dataset(root)?,
        };
        Ok(Self { name: root.display().to_string(), root: root.to_path_buf(), format, train, test })
    }

    /// The test split, or an error naming the folder when it has none.
    pub fn test(&self) -> Result<&ImageDataset> {
        self.test.as_ref().ok_or_else(|| DataError::MissingFile {
            dir: self.root.clone(),
            what: "test split".into(),
            hint: match self.format {
                Format::Idx => "add t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz]".into(),
                Format::Cifar10 => "add test_batch.bin".into(),
                Format::ImageFolder => "add a test/ folder with one subfolder per class".into(),
            },
        })
    }
}

/// Loads a dataset by built-in name or folder path; same as [`Dataset::load`].
pub fn load(name_or_path: &str, format: Option<Format>) -> Result<Dataset> {
    Dataset::load(name_or_path, format)
}

/// Normalised file name for IDX matching: lower case, `.gz` stripped, `.` -> `-`
/// (`train-images.idx3-ubyte` is a common spelling).
fn idx_key(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    lower.strip_suffix(".gz").unwrap_or(&lower).replace('.', "-")
}

fn list_files(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let e = e.map_err(io_err(dir))?;
        if e.path().is_file() {
            v.push((e.file_name().to_string_lossy().into_owned(), e.path()));
        }
    }
    v.sort();
    Ok(v)
}

/// Finds the IDX file `{prefix}-{kind}` for one of `prefixes`.
fn find_idx(files: &[(String, PathBuf)], prefixes: &[&str], kind: &str) -> Option<PathBuf> {
    prefixes.iter().find_map(|p| {
        let want = format!("{p}-{kind}");
        files.iter().find(|(n, _)| idx_key(n) == want).map(|(_, path)| path.clone())
    })
}

/// Detects the format of `dir` (see [`Dataset::load`]).
pub fn detect_format(dir: &Path) -> Result<Format> {
    let files = list_files(dir)?;
    if files.iter().any(|(n, _)| idx_key(n).contains("idx3-ubyte") || idx_key(n).contains("idx1-ubyte")) {
        return Ok(Format::Idx);
    }
    if crate::cifar::cifar_root(dir).is_some()
        || files.iter().any(|(n, _)| n.starts_with("data_batch_") && n.ends_with(".bin"))
    {
        return Ok(Format::Cifar10);
    }
    if crate::folder::has_subdirs(dir) {
        return Ok(Format::ImageFolder);
    }
    if files.is_empty() {
        return Err(DataError::EmptyFolder {
            path: dir.to_path_buf(),
            hint: "put IDX files, CIFAR-10 .bin batches or one subfolder of images per class in it".into(),
        });
    }
    Err(DataError::UnsupportedFormat {
        path: dir.to_path_buf(),
        reason: "no IDX files (*-idx3-ubyte[.gz]), no CIFAR-10 batches (data_batch_*.bin, test_batch.bin) \
                 and no class subfolders; convert the data to one of these or force a format"
            .into(),
    })
}

/// Reads an IDX folder: `train-{images-idx3,labels-idx1}-ubyte[.gz]` and, when present,
/// `t10k-*` (or `test-*`) for the test split. Both splits share `max label + 1` classes.
fn read_idx_dir(dir: &Path) -> Result<(ImageDataset, Option<ImageDataset>)> {
    let files = list_files(dir)?;
    let missing = |what: &str| DataError::MissingFile {
        dir: dir.to_path_buf(),
        what: format!("{what}[.gz]"),
        hint: "an IDX dataset needs train-images-idx3-ubyte and train-labels-idx1-ubyte".into(),
    };
    let tr_img = find_idx(&files, &["train"], "images-idx3-ubyte").ok_or_else(|| missing("train-images-idx3-ubyte"))?;
    let tr_lab = find_idx(&files, &["train"], "labels-idx1-ubyte").ok_or_else(|| missing("train-labels-idx1-ubyte"))?;
    let te_img = find_idx(&files, &["t10k", "test"], "images-idx3-ubyte");
    let te_lab = find_idx(&files, &["t10k", "test"], "labels-idx1-ubyte");
    let test_pair = match (te_img, te_lab) {
        (Some(i), Some(l)) => Some((i, l)),
        (None, None) => None,
        (Some(_), None) => return Err(missing("t10k-labels-idx1-ubyte (the test images have no labels)")),
        (None, Some(_)) => return Err(missing("t10k-images-idx3-ubyte (the test labels have no images)")),
    };
    let train = crate::idx::read_idx_pair(&tr_img, &tr_lab, None, Split::Train)?;
    let test = match test_pair {
        Some((i, l)) => Some(crate::idx::read_idx_pair(&i, &l, None, Split::Test)?),
        None => None,
    };
    // Both splits get the larger class count (a test split may lack the last class or vice versa).
    let k = train.num_classes().max(test.as_ref().map_or(0, |t| t.num_classes()));
    let names: Vec<String> = (0..k).map(|c| c.to_string()).collect();
    let widen = |d: ImageDataset| d.with_class_names(names.clone());
    Ok((widen(train)?, test.map(widen).transpose()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_dir_default_and_override() {
        // The checkout the tests run in (cargo runs them in the crate's folder) has its data/.
        // The build-time default is not checked for existence: with build outputs shared between
        // clones it names the clone that compiled this crate, which may be gone.
        let here = data_dir_from(None, std::env::current_dir().ok().as_deref());
        assert!(here.join("mnist-5k").join("train-images-idx3-ubyte.gz").is_file(), "{}", here.display());
        let default = data_dir_from(None, None);
        assert_eq!(default, Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..").join("data"));
        assert_eq!(data_dir_from(Some("".into()), None), default);
        assert_eq!(data_dir_from(Some("/srv/kiln".into()), None), PathBuf::from("/srv/kiln"));
        // From inside a checkout (tests run in their crate's folder) the checkout's own data/ wins.
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..");
        let nested = repo.join("crates").join("kiln-data").join("src");
        assert_eq!(data_dir_from(None, Some(&nested)), repo.join("data"));
        // Outside any checkout it falls back to the build-time path.
        assert_eq!(data_dir_from(None, Some(Path::new("/"))), default);
    }

    #[test]
    fn idx_names() {
        assert_eq!(idx_key("train-images.idx3-ubyte.GZ"), "train-images-idx3-ubyte");
        let files = vec![
            ("t10k-labels-idx1-ubyte".to_string(), PathBuf::from("a")),
            ("test-images.idx3-ubyte.gz".to_string(), PathBuf::from("b")),
        ];
        assert_eq!(find_idx(&files, &["t10k", "test"], "labels-idx1-ubyte"), Some(PathBuf::from("a")));
        assert_eq!(find_idx(&files, &["t10k", "test"], "images-idx3-ubyte"), Some(PathBuf::from("b")));
        assert_eq!(find_idx(&files, &["train"], "images-idx3-ubyte"), None);
    }
}
