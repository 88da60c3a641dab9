//! MNIST's IDX format: `*-images-idx3-ubyte` and `*-labels-idx1-ubyte`, raw or gzip-compressed.
//!
//! Images file: big-endian u32 magic 2051 (`0x00000803`: unsigned bytes, 3 dimensions), count,
//! rows, columns, then `count * rows * columns` bytes. Labels file: magic 2049 (`0x00000801`),
//! count, then `count` bytes. The same reader reads MNIST, Fashion-MNIST, KMNIST and the built-in
//! `mnist-5k` subset.

use std::io::Read;
use std::path::Path;

use crate::dataset::{ImageDataset, Pixels, Split};
use crate::error::{DataError, Result, io_err, one_line};

/// Magic number of an IDX images file (unsigned bytes, 3 dimensions).
pub const IDX_IMAGES_MAGIC: u32 = 2051;
/// Magic number of an IDX labels file (unsigned bytes, 1 dimension).
pub const IDX_LABELS_MAGIC: u32 = 2049;

/// Reads a whole file, gunzipping it when it starts with the gzip magic (`1f 8b`), whatever its
/// name.
pub(crate) fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(io_err(path))?;
    if raw.len() >= 2 && raw[0] == 0x1f && raw[1] == 0x8b {
        let mut out = Vec::with_capacity(raw.len() * 4);
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| DataError::Decode { path: path.to_path_buf(), reason: one_line(&format!("gzip: {e}")) })?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn check_len(path: &Path, expected: usize, found: usize) -> Result<()> {
    if found < expected {
        Err(DataError::Truncated { path: path.to_path_buf(), expected, found })
    } else if found > expected {
        Err(DataError::TrailingBytes { path: path.to_path_buf(), expected, found })
    } else {
        Ok(())
    }
}

/// Parses an IDX images file already in memory. Returns `(count, rows, cols, pixels)`, pixels
/// being `count * rows * cols` bytes, image after image, row-major.
pub fn parse_idx_images(path: &Path, bytes: &[u8]) -> Result<(usize, usize, usize, Vec<u8>)> {
    if bytes.len() < 16 {
        if bytes.len() >= 4 && be_u32(bytes, 0) != IDX_IMAGES_MAGIC {
            return Err(DataError::BadMagic {
                path: path.to_path_buf(),
                kind: "images",
                expected: IDX_IMAGES_MAGIC,
                found: be_u32(bytes, 0),
            });
        }
        return Err(DataError::Truncated { path: path.to_path_buf(), expected: 16, found: bytes.len() });
    }
    let magic = be_u32(bytes, 0);
    if magic != IDX_IMAGES_MAGIC {
        return Err(DataError::BadMagic {
            path: path.to_path_buf(),
            kind: "images",
            expected: IDX_IMAGES_MAGIC,
            found: magic,
        });
    }
    let (n, rows, cols) = (be_u32(bytes, 4) as usize, be_u32(bytes, 8) as usize, be_u32(bytes, 12) as usize);
    if rows == 0 || cols == 0 {
        return Err(DataError::Decode {
            path: path.to_path_buf(),
            reason: format!("IDX header gives images of {rows}x{cols} pixels"),
        });
    }
    let expected =
        n.checked_mul(rows).and_then(|v| v.checked_mul(cols)).and_then(|v| v.checked_add(16)).ok_or_else(|| {
            DataError::Decode {
                path: path.to_path_buf(),
                reason: format!("IDX header gives an impossible size {n} x {rows} x {cols}"),
            }
        })?;
    check_len(path, expected, bytes.len())?;
    Ok((n, rows, cols, bytes[16..].to_vec()))
}

/// Parses an IDX labels file already in memory.
pub fn parse_idx_labels(path: &Path, bytes: &[u8]) -> Result<Vec<u8>> {
    if bytes.len() < 8 {
        if bytes.len() >= 4 && be_u32(bytes, 0) != IDX_LABELS_MAGIC {
            return Err(DataError::BadMagic {
                path: path.to_path_buf(),
                kind: "labels",
                expected: IDX_LABELS_MAGIC,
                found: be_u32(bytes, 0),
            });
        }
        return Err(DataError::Truncated { path: path.to_path_buf(), expected: 8, found: bytes.len() });
    }
    let magic = be_u32(bytes, 0);
    if magic != IDX_LABELS_MAGIC {
        return Err(DataError::BadMagic {
            path: path.to_path_buf(),
            kind: "labels",
            expected: IDX_LABELS_MAGIC,
            found: magic,
        });
    }
    let n = be_u32(bytes, 4) as usize;
    check_len(path, 8 + n, bytes.len())?;
    Ok(bytes[8..].to_vec())
}

/// Reads one IDX split: an images file and its labels file (each raw or gzipped).
///
/// The result has `C = 1`, `H = rows`, `W = cols` and classes `"0"..` up to `num_classes`
/// (pass `None` to use the largest label + 1).
pub fn read_idx_pair(images: &Path, labels: &Path, num_classes: Option<usize>, split: Split) -> Result<ImageDataset> {
    let (n, rows, cols, pixels) = parse_idx_images(images, &read_maybe_gz(images)?)?;
    let lab = parse_idx_labels(labels, &read_maybe_gz(labels)?)?;
    if lab.len() != n {
        return Err(DataError::CountMismatch {
            images: images.to_path_buf(),
            labels: labels.to_path_buf(),
            n_images: n,
            n_labels: lab.len(),
        });
    }
    let k = num_classes.unwrap_or_else(|| lab.iter().map(|&l| l as usize + 1).max().unwrap_or(0));
    if let Some((i, &l)) = lab.iter().enumerate().find(|(_, l)| **l as usize >= k) {
        return Err(DataError::BadLabel { path: labels.to_path_buf(), index: i, label: l as usize, limit: k });
    }
    let names = (0..k).map(|c| c.to_string()).collect();
    ImageDataset::new(Pixels::U8(pixels), lab.into_iter().map(usize::from).collect(), [1, rows, cols], names, split)
}
