//! The protobuf wire format, read from a byte slice with every length checked against the bytes
//! that remain. Nothing here allocates: strings and sub-messages are borrowed slices.

use super::OnnxError;

/// One field's payload.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Value<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1.
    Fixed64(u64),
    /// Wire type 2: a string, bytes, a sub-message or a packed repeated field.
    Bytes(&'a [u8]),
    /// Wire type 5.
    Fixed32(u32),
}

/// Iterates over the fields of one message.
pub(crate) struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
    /// What the message is, for error messages.
    what: &'static str,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Self {
        Self { buf, pos: 0, what }
    }

    fn truncated(&self) -> OnnxError {
        OnnxError::Malformed(format!("a {} message ends in the middle of a field", self.what))
    }

    fn varint(&mut self) -> Result<u64, OnnxError> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = *self.buf.get(self.pos).ok_or_else(|| self.truncated())?;
            self.pos += 1;
            v |= ((b & 0x7f) as u64) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(OnnxError::Malformed(format!("a varint longer than 10 bytes in a {} message", self.what)))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], OnnxError> {
        if n > self.buf.len() - self.pos {
            return Err(self.truncated());
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// The next field as `(field number, value)`, or `None` at the end of the message.
    pub(crate) fn next_field(&mut self) -> Result<Option<(u32, Value<'a>)>, OnnxError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = (key >> 3) as u32;
        if field == 0 || key >> 3 > u32::MAX as u64 {
            return Err(OnnxError::Malformed(format!("field number {} in a {} message", key >> 3, self.what)));
        }
        let v = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => Value::Fixed64(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes"))),
            2 => {
                let len = self.varint()?;
                let len = usize::try_from(len).map_err(|_| self.truncated())?;
                Value::Bytes(self.take(len)?)
            }
            5 => Value::Fixed32(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes"))),
            t => {
                return Err(OnnxError::Malformed(format!(
                    "wire type {t} (field {field}) in a {} message: not a protobuf file",
                    self.what
                )));
            }
        };
        Ok(Some((field, v)))
    }
}

impl<'a> Value<'a> {
    pub(crate) fn bytes(self, what: &'static str) -> Result<&'a [u8], OnnxError> {
        match self {
            Value::Bytes(b) => Ok(b),
            _ => Err(OnnxError::Malformed(format!("{what}: expected a length-delimited field"))),
        }
    }

    pub(crate) fn str(self, what: &'static str) -> Result<&'a str, OnnxError> {
        std::str::from_utf8(self.bytes(what)?).map_err(|_| OnnxError::Malformed(format!("{what}: not UTF-8")))
    }

    pub(crate) fn int(self, what: &'static str) -> Result<i64, OnnxError> {
        match self {
            Value::Varint(v) => Ok(v as i64),
            _ => Err(OnnxError::Malformed(format!("{what}: expected an integer"))),
        }
    }

    pub(crate) fn float(self, what: &'static str) -> Result<f32, OnnxError> {
        match self {
            Value::Fixed32(v) => Ok(f32::from_bits(v)),
            _ => Err(OnnxError::Malformed(format!("{what}: expected a float"))),
        }
    }

    /// A repeated int64 / int32 field, packed or not: appends to `out`.
    pub(crate) fn ints_into(self, out: &mut Vec<i64>, what: &'static str) -> Result<(), OnnxError> {
        match self {
            Value::Varint(v) => out.push(v as i64),
            Value::Bytes(b) => {
                let mut f = Fields::new(b, what);
                while f.pos < b.len() {
                    out.push(f.varint()? as i64);
                }
            }
            _ => return Err(OnnxError::Malformed(format!("{what}: expected integers"))),
        }
        Ok(())
    }

    /// A repeated float field, packed or not: appends to `out`.
    pub(crate) fn floats_into(self, out: &mut Vec<f32>, what: &'static str) -> Result<(), OnnxError> {
        match self {
            Value::Fixed32(v) => out.push(f32::from_bits(v)),
            Value::Bytes(b) => {
                if b.len() % 4 != 0 {
                    return Err(OnnxError::Malformed(format!("{what}: packed floats of {} bytes", b.len())));
                }
                out.extend(b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))));
            }
            _ => return Err(OnnxError::Malformed(format!("{what}: expected floats"))),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_varints_and_rejects_truncation() {
        // field 1 varint 300, field 2 bytes "hi"
        let buf = [0x08, 0xac, 0x02, 0x12, 0x02, b'h', b'i'];
        let mut f = Fields::new(&buf, "test");
        match f.next_field().unwrap() {
            Some((1, Value::Varint(300))) => {}
            other => panic!("{other:?}"),
        }
        match f.next_field().unwrap() {
            Some((2, Value::Bytes(b"hi"))) => {}
            other => panic!("{other:?}"),
        }
        assert!(f.next_field().unwrap().is_none());
        // A length running past the end.
        let bad = [0x12, 0x05, b'h'];
        assert!(Fields::new(&bad, "test").next_field().is_err());
        // A huge length (2^63) must not overflow.
        let huge = [0x12, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01];
        assert!(Fields::new(&huge, "test").next_field().is_err());
        // Group wire types are refused.
        assert!(Fields::new(&[0x0b], "test").next_field().is_err());
    }
}
