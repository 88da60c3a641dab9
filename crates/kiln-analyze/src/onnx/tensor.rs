//! Small constant tensors: the values of integer shape arithmetic and scalar attributes-as-inputs
//! (Reshape's shape, Slice's starts, Clip's bounds, Resize's scales). Weights are never decoded:
//! [`decode`] refuses tensors over [`MAX_CONST_ELEMS`] elements.

use std::path::Path;

use super::OnnxError;
use super::proto::{TensorP, dtype};
use super::wire::Value;

/// The largest constant whose values are decoded or computed (shape vectors have a handful).
pub(crate) const MAX_CONST_ELEMS: u64 = 1 << 16;

/// Values of a small constant, row-major.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Data {
    /// Integer and boolean types.
    I(Vec<i64>),
    /// Floating-point types.
    F(Vec<f64>),
}

impl Data {
    pub fn len(&self) -> usize {
        match self {
            Data::I(v) => v.len(),
            Data::F(v) => v.len(),
        }
    }

    /// As integers (floats truncated toward zero, saturating).
    pub fn ints(&self) -> Vec<i64> {
        match self {
            Data::I(v) => v.clone(),
            Data::F(v) => v.iter().map(|&x| x as i64).collect(),
        }
    }

    /// As floats.
    pub fn floats(&self) -> Vec<f64> {
        match self {
            Data::I(v) => v.iter().map(|&x| x as f64).collect(),
            Data::F(v) => v.clone(),
        }
    }

    /// Picks elements by index (`None` if one is out of range).
    pub fn pick(&self, idx: &[usize]) -> Option<Data> {
        Some(match self {
            Data::I(v) => Data::I(idx.iter().map(|&i| v.get(i).copied()).collect::<Option<_>>()?),
            Data::F(v) => Data::F(idx.iter().map(|&i| v.get(i).copied()).collect::<Option<_>>()?),
        })
    }

    pub fn concat(parts: &[&Data]) -> Data {
        if parts.iter().all(|p| matches!(p, Data::I(_))) {
            Data::I(parts.iter().flat_map(|p| p.ints()).collect())
        } else {
            Data::F(parts.iter().flat_map(|p| p.floats()).collect())
        }
    }
}

fn le_ints(raw: &[u8], t: i32) -> Option<Vec<i64>> {
    let size = dtype::size(t)?;
    Some(
        raw.chunks_exact(size)
            .map(|c| match t {
                dtype::INT64 => i64::from_le_bytes(c.try_into().expect("8")),
                dtype::UINT64 => u64::from_le_bytes(c.try_into().expect("8")) as i64,
                dtype::INT32 => i32::from_le_bytes(c.try_into().expect("4")) as i64,
                dtype::UINT32 => u32::from_le_bytes(c.try_into().expect("4")) as i64,
                dtype::INT16 => i16::from_le_bytes(c.try_into().expect("2")) as i64,
                dtype::UINT16 => u16::from_le_bytes(c.try_into().expect("2")) as i64,
                dtype::INT8 => c[0] as i8 as i64,
                _ => c[0] as i64,
            })
            .collect(),
    )
}

fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as i32;
    let mant = (h & 0x3ff) as u32;
    if exp == 0 {
        // Zero and subnormals: mant x 2^-24.
        let v = mant as f32 * 2f32.powi(-24);
        return if sign != 0 { -v } else { v };
    }
    let bits = if exp == 31 {
        sign | 0x7f80_0000 | (mant << 13)
    } else {
        sign | (((exp - 15 + 127) as u32) << 23) | (mant << 13)
    };
    f32::from_bits(bits)
}

fn le_floats(raw: &[u8], t: i32) -> Option<Vec<f64>> {
    Some(match t {
        dtype::FLOAT => raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4")) as f64).collect(),
        dtype::DOUBLE => raw.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8"))).collect(),
        dtype::FLOAT16 => raw.chunks_exact(2).map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])) as f64).collect(),
        dtype::BFLOAT16 => raw
            .chunks_exact(2)
            .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16) as f64)
            .collect(),
        _ => return None,
    })
}

/// Reads `length` bytes at `offset` of an external data file, named relative to the model's
/// folder. Absolute names and names that leave the folder are refused, and the range is checked
/// against the file's size before anything is read.
fn read_external(t: &TensorP<'_>, dir: Option<&Path>, want: usize) -> Result<Vec<u8>, OnnxError> {
    use std::io::{Read, Seek, SeekFrom};
    let entry = |k: &str| t.external.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
    let bad = |why: String| OnnxError::Malformed(format!("tensor '{}': external data {why}", t.name));
    let location = entry("location").ok_or_else(|| bad("has no location".into()))?;
    let rel = Path::new(location);
    if rel.is_absolute() || rel.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
        return Err(bad(format!("location '{location}' is not a plain name inside the model's folder")));
    }
    let num = |k: &str| -> Result<u64, OnnxError> {
        match entry(k) {
            None => Ok(0),
            Some(s) => s.parse::<u64>().map_err(|_| bad(format!("{k} '{s}' is not a number"))),
        }
    };
    let offset = num("offset")?;
    let length = match entry("length") {
        Some(_) => num("length")?,
        None => want as u64,
    };
    if length != want as u64 {
        return Err(bad(format!("length {length} does not match the {want} bytes its shape needs")));
    }
    let Some(dir) = dir else {
        return Err(bad(format!("'{location}' cannot be read: the model was given as bytes, not a file")));
    };
    let path = dir.join(rel);
    let missing = |e: std::io::Error| {
        OnnxError::Io(format!(
            "{} (external data of tensor '{}'): {e}; keep it beside the .onnx file",
            path.display(),
            t.name
        ))
    };
    let mut f = std::fs::File::open(&path).map_err(missing)?;
    let size = f.metadata().map_err(missing)?.len();
    if offset.checked_add(length).is_none_or(|end| end > size) {
        return Err(bad(format!("range {offset}+{length} lies past the end of {} ({size} bytes)", path.display())));
    }
    f.seek(SeekFrom::Start(offset)).map_err(missing)?;
    let mut buf = vec![0u8; want];
    f.read_exact(&mut buf).map_err(missing)?;
    Ok(buf)
}

/// Decodes a small tensor's values. `Ok(None)`: too large to decode, or an element type the
/// analyzer does not compute with (strings); the shape is still known.
pub(crate) fn decode(t: &TensorP<'_>, dir: Option<&Path>) -> Result<Option<Data>, OnnxError> {
    let Some(n) = t.numel() else {
        return Err(OnnxError::Malformed(format!("tensor '{}' has invalid dims {:?}", t.name, t.dims)));
    };
    if n > MAX_CONST_ELEMS {
        return Ok(None);
    }
    let n = n as usize;
    let float = dtype::is_float(t.data_type);
    let Some(size) = dtype::size(t.data_type) else { return Ok(None) };
    let external;
    let raw = if t.data_location_external {
        external = read_external(t, dir, n * size)?;
        Some(external.as_slice())
    } else {
        t.raw
    };
    let wrong = |got: usize| {
        OnnxError::Malformed(format!("tensor '{}' holds {got} values, its dims {:?} say {n}", t.name, t.dims))
    };
    let data = if let Some(raw) = raw {
        if raw.len() != n * size {
            return Err(wrong(raw.len() / size));
        }
        if float { le_floats(raw, t.data_type).map(Data::F) } else { le_ints(raw, t.data_type).map(Data::I) }
    } else {
        // Typed fields: float_data (4), int32_data (5, also for 8/16-bit, bool and half
        // floats' bits), int64_data (7), double_data (10), uint64_data (11).
        let mut ints = vec![];
        let mut floats = vec![];
        for &(field, v) in &t.typed {
            match (field, v) {
                (4, v) => v.floats_into(&mut floats, "TensorProto.float_data")?,
                (5 | 7 | 11, v) => v.ints_into(&mut ints, "TensorProto.int_data")?,
                (10, Value::Bytes(b)) => {
                    floats.extend(le_floats(b, dtype::DOUBLE).unwrap_or_default().iter().map(|&x| x as f32))
                }
                (10, Value::Fixed64(x)) => floats.push(f64::from_bits(x) as f32),
                _ => {}
            }
        }
        match t.data_type {
            dtype::FLOAT | dtype::DOUBLE => Some(Data::F(floats.iter().map(|&x| x as f64).collect())),
            dtype::FLOAT16 => Some(Data::F(ints.iter().map(|&b| f16_to_f32(b as u16) as f64).collect())),
            dtype::BFLOAT16 => Some(Data::F(ints.iter().map(|&b| f32::from_bits((b as u32) << 16) as f64).collect())),
            _ if float => None,
            dtype::INT32 | dtype::INT16 | dtype::INT8 => Some(Data::I(ints.iter().map(|&x| x as i32 as i64).collect())),
            _ => Some(Data::I(ints)),
        }
    };
    if let Some(d) = &data
        && d.len() != n
    {
        return Err(wrong(d.len()));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_floats() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x4600), 6.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
    }
}
