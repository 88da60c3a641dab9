//! The one error type of the readers, splits and scalers.
//!
//! Every message is a single line that names the file or folder at fault and says what would fix
//! it. Readers never panic on bad input: a corrupt, truncated or mismatched file is an `Err`.

use std::path::PathBuf;

/// Why a dataset could not be read, split or scaled.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The OS refused to read or list a path.
    #[error("cannot read {path}: {source} (check that the path exists and is readable)")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// A dataset name or path that resolves to nothing.
    #[error("dataset {name:?} not found: {path} does not exist ({hint})")]
    NotFound {
        /// What the caller asked for.
        name: String,
        /// Where it was looked for.
        path: PathBuf,
        /// What would fix it.
        hint: String,
    },

    /// A file a format needs is absent from the folder.
    #[error("{dir}: missing {what} ({hint})")]
    MissingFile {
        /// The dataset folder.
        dir: PathBuf,
        /// The file that was looked for.
        what: String,
        /// What would fix it.
        hint: String,
    },

    /// A file that does not start with the magic number its format requires.
    #[error(
        "{path}: not an IDX {kind} file (magic number {found}, expected {expected}); \
         point at the matching *-{kind}-idx*-ubyte[.gz] file or re-download it"
    )]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// "images" or "labels".
        kind: &'static str,
        /// The magic the format requires (2051 images, 2049 labels).
        expected: u32,
        /// The first four bytes read as a big-endian u32.
        found: u32,
    },

    /// A file shorter than its header (or its format) says it must be.
    #[error(
        "{path}: truncated: expected {expected} bytes, found {found} \
         (the file is incomplete: re-download or re-extract it)"
    )]
    Truncated {
        /// The file (after gzip decompression where it was compressed).
        path: PathBuf,
        /// Bytes the header or record size requires.
        expected: usize,
        /// Bytes actually present.
        found: usize,
    },

    /// A file longer than its header says it is.
    #[error(
        "{path}: expected {expected} bytes from its header, found {found} \
         (trailing data: the header or the file is corrupt; re-download it)"
    )]
    TrailingBytes {
        /// The file.
        path: PathBuf,
        /// Bytes the header requires.
        expected: usize,
        /// Bytes actually present.
        found: usize,
    },

    /// A gzip stream or an image that could not be decoded.
    #[error("{path}: cannot decode: {reason} (the file is corrupt or not in the format its name says)")]
    Decode {
        /// The file.
        path: PathBuf,
        /// The decoder's complaint.
        reason: String,
    },

    /// Image and label files that disagree on the number of samples.
    #[error(
        "{images} holds {n_images} images but {labels} holds {n_labels} labels \
         (use the image and label files of the same split)"
    )]
    CountMismatch {
        /// The image file.
        images: PathBuf,
        /// The label file.
        labels: PathBuf,
        /// Images in the image file.
        n_images: usize,
        /// Labels in the label file.
        n_labels: usize,
    },

    /// A label outside the classes the format allows.
    #[error("{path}: sample {index} has label {label}, but the format allows labels 0..{limit} (corrupt file)")]
    BadLabel {
        /// The file.
        path: PathBuf,
        /// Sample index in the file.
        index: usize,
        /// The label read.
        label: usize,
        /// One past the largest valid label.
        limit: usize,
    },

    /// A folder that holds nothing usable.
    #[error("{path}: empty folder ({hint})")]
    EmptyFolder {
        /// The folder.
        path: PathBuf,
        /// What it should hold.
        hint: String,
    },

    /// A class folder without a single PNG or JPEG.
    #[error("{path}: no images (put .png/.jpg/.jpeg files in it, or remove the empty class folder)")]
    NoImages {
        /// The class folder.
        path: PathBuf,
    },

    /// An image whose size differs from the others of the dataset.
    #[error(
        "{path}: image is {found_w}x{found_h} but the dataset's images are {width}x{height} \
         (first seen in {first}); resize all images to one size"
    )]
    SizeMismatch {
        /// The odd file.
        path: PathBuf,
        /// Its width.
        found_w: usize,
        /// Its height.
        found_h: usize,
        /// The dataset's width.
        width: usize,
        /// The dataset's height.
        height: usize,
        /// The image that set the dataset's size.
        first: PathBuf,
    },

    /// A folder (or file) in no format this crate reads.
    #[error("{path}: unsupported dataset format: {reason}")]
    UnsupportedFormat {
        /// The folder or file.
        path: PathBuf,
        /// What was looked for and what would fix it.
        reason: String,
    },

    /// An argument out of its range (a split fraction, an index, a channel count).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// `Result` with [`DataError`].
pub type Result<T, E = DataError> = std::result::Result<T, E>;

/// Collapses a third-party message (which may span lines) to one line.
pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> DataError {
    let path = path.into();
    move |source| DataError::Io { path, source }
}
