//! Reading and writing NumPy `.npy` files (float32, C order), the format torchvision fixtures and
//! `cargo xtask run` use. Writes go to a temporary file renamed into place, so a failure never
//! leaves a partial file behind.

use std::path::Path;

/// A float32 array.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    /// Shape, C order.
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub data: Vec<f32>,
}

/// `.npy` errors.
#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    /// I/O.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// Not a valid / supported `.npy`.
    #[error("{path} is not a float32 C-order .npy file: {reason}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// Reads a float32 (or float64, converted) `.npy` file.
pub fn read(path: &Path) -> Result<NpyArray, NpyError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| NpyError::Io { path: shown.clone(), source })?;
    parse(&bytes).map_err(|reason| NpyError::Format { path: shown, reason })
}

/// Parses the bytes of a `.npy` file (what [`read`] does after reading it); the error says what
/// is wrong in one line.
pub fn parse(bytes: &[u8]) -> Result<NpyArray, String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("missing the \\x93NUMPY magic".into());
    }
    let major = bytes[6];
    let (hlen, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err("truncated header".into());
            }
            (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
        }
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let header = bytes.get(start..start + hlen).ok_or("truncated header")?;
    let header = std::str::from_utf8(header).map_err(|_| "header is not text")?;
    // Header text quoted in an error is escaped and cut short: the message stays one line.
    let quote = |t: &str| -> String {
        let t: String = t.chars().take(40).collect();
        t.escape_debug().to_string()
    };
    let field = |key: &str| -> Result<&str, String> {
        let i = header.find(&format!("'{key}'")).ok_or(format!("header lacks '{key}'"))?;
        Ok(header.get(i + key.len() + 2..).unwrap_or("").trim_start_matches([':', ' ']))
    };
    let descr = field("descr")?;
    let dtype = descr.trim_start_matches('\'').split('\'').next().unwrap_or("");
    if field("fortran_order")?.starts_with("True") {
        return Err("Fortran order is not supported; save with np.ascontiguousarray".into());
    }
    let shape_txt = field("shape")?;
    let inner = shape_txt.trim_start_matches('(').split(')').next().unwrap_or("");
    let shape: Vec<usize> = inner
        .split(',')
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| format!("bad shape entry '{}'", quote(s))))
        .collect::<Result<_, _>>()?;
    let n = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("shape {shape:?} has more elements than memory can address"))?;
    let body = &bytes[start + hlen..];
    let need = |width: usize| -> Result<usize, String> {
        match n.checked_mul(width) {
            Some(b) if b <= body.len() => Ok(b),
            _ => Err(format!("truncated data: {} bytes for {n} values of {width} bytes (shape {shape:?})", body.len())),
        }
    };
    let data = match dtype {
        "<f4" | "|f4" => {
            let b = need(4)?;
            body[..b].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
        }
        "<f8" => {
            let b = need(8)?;
            body[..b].chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32).collect()
        }
        other => {
            return Err(format!("dtype '{}' is not float32 or float64 (save with .astype(np.float32))", quote(other)));
        }
    };
    Ok(NpyArray { shape, data })
}

/// Writes a float32 `.npy` file atomically (temporary file + rename).
pub fn write(path: &Path, array: &NpyArray) -> Result<(), NpyError> {
    let shown = path.display().to_string();
    let io = |source| NpyError::Io { path: shown.clone(), source };
    let shape = match array.shape.len() {
        1 => format!("({},)", array.shape[0]),
        _ => format!("({})", array.shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut bytes = Vec::with_capacity(10 + header.len() + 4 * array.data.len());
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in &array.data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    kiln_data::write_atomic(path, &bytes).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_errors() {
        let dir = std::env::temp_dir().join(format!("kiln-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.npy");
        let a = NpyArray { shape: vec![2, 3], data: vec![1.0, -2.5, 3.0, 0.0, 1e-3, 7.0] };
        write(&p, &a).unwrap();
        assert_eq!(read(&p).unwrap(), a);
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!((10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize) % 64, 0);
        // Truncated data.
        std::fs::write(dir.join("t.npy"), &bytes[..bytes.len() - 4]).unwrap();
        assert!(read(&dir.join("t.npy")).unwrap_err().to_string().contains("truncated"));
        // Not an npy file.
        std::fs::write(dir.join("x.npy"), b"hello").unwrap();
        assert!(read(&dir.join("x.npy")).unwrap_err().to_string().contains("magic"));
        assert!(read(&dir.join("missing.npy")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
