//! A safety check of a `.pth` file's pickle before burn-store reads it.
//!
//! A pickle is a program: its `GLOBAL` / `REDUCE` opcodes name any Python callable and call it.
//! kiln runs none of it (burn-store's reader interprets the opcodes itself), but it also refuses,
//! before that reader sees the file, anything that `torch.save(model.state_dict())` never writes:
//!
//! * **Globals**: only [`ALLOWED_GLOBALS`] (the `OrderedDict`, the tensor / parameter rebuild
//!   functions and the typed storage classes). Any other global (`os.system`,
//!   `builtins.eval`, ...) is an error naming it; `INST`, `OBJ`, the extension registry and
//!   out-of-band buffers are refused outright.
//! * **Bombs**: value nesting and `MARK` nesting are limited to [`MAX_DEPTH`], the stack to
//!   [`MAX_STACK`] items, and a memo index must be below the pickle's length (each memo entry
//!   costs at least two bytes of it, so a larger index cannot be real). Shared values are
//!   reference-counted, so memo re-use cannot blow up memory.
//! * **Claims**: every length (strings, bytes, frames) must fit in what is left of the pickle, and
//!   every storage's element count times its element size must fit in the file's record for that
//!   storage (in the file, for the legacy format); a tensor's view must lie inside its storage.
//!   All checked before anything is allocated for it.
//!
//! The scan keeps only what these checks need (integers, short strings, tuples); list and dict
//! contents are dropped as they are built.

use std::collections::HashMap;
use std::rc::Rc;

/// The globals a `torch.save` state_dict pickle may name, as `module.name`.
pub const ALLOWED_GLOBALS: &[&str] = &[
    "collections.OrderedDict",
    "torch._utils._rebuild_tensor",
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_parameter",
    "torch.device",
    "torch.FloatStorage",
    "torch.DoubleStorage",
    "torch.HalfStorage",
    "torch.BFloat16Storage",
    "torch.LongStorage",
    "torch.IntStorage",
    "torch.ShortStorage",
    "torch.CharStorage",
    "torch.ByteStorage",
    "torch.BoolStorage",
];

/// Deepest value nesting and `MARK` nesting accepted (a state_dict needs fewer than 10).
pub const MAX_DEPTH: usize = 1000;
/// Most values on the pickle stack at once (a state_dict needs a few thousand).
pub const MAX_STACK: usize = 100_000;

/// Why a file was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuardError {
    /// Not a torch.save file, or a damaged one (truncated, bad zip, bad opcode).
    Malformed(String),
    /// A well-formed pickle that asks for something a state_dict never needs, or a bomb.
    Refused(String),
}

fn malformed<T>(s: impl Into<String>) -> Result<T, GuardError> {
    Err(GuardError::Malformed(s.into()))
}
fn refused<T>(s: impl Into<String>) -> Result<T, GuardError> {
    Err(GuardError::Refused(s.into()))
}

/// Checks a whole `.pth` file (the zip format of torch >= 1.6, or the legacy format).
pub fn check_bytes(file: &[u8]) -> Result<(), GuardError> {
    if file.starts_with(b"PK\x03\x04") {
        let records = zip_records(file)?;
        let (pkl_name, pkl) = records
            .iter()
            .find(|(n, _)| n.as_str() == "data.pkl" || n.ends_with("/data.pkl"))
            .ok_or_else(|| GuardError::Malformed("the zip has no data.pkl record".into()))?;
        let prefix = &pkl_name[..pkl_name.len() - "data.pkl".len()];
        let storages: HashMap<&str, u64> = records
            .iter()
            .filter_map(|(n, r)| n.strip_prefix(prefix)?.strip_prefix("data/").map(|k| (k, r.len() as u64)))
            .collect();
        let mut scan = Scan::new(pkl, StorageBound::Records(&storages));
        scan.run()?;
        Ok(())
    } else {
        // Legacy format: magic number, protocol, sys info and the state_dict, one pickle each.
        let mut at = 0;
        for _ in 0..4 {
            let mut scan = Scan::new(&file[at..], StorageBound::File(file.len() as u64));
            at += scan.run()?;
        }
        Ok(())
    }
}

/// A stored (uncompressed) zip member's bytes, by name.
fn zip_records(file: &[u8]) -> Result<Vec<(String, &[u8])>, GuardError> {
    let u16_at = |o: usize| -> Result<u64, GuardError> {
        file.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as u64).ok_or_else(trunc_zip)
    };
    let u32_at = |o: usize| -> Result<u64, GuardError> {
        file.get(o..o + 4).map(|b| u32::from_le_bytes(b.try_into().unwrap()) as u64).ok_or_else(trunc_zip)
    };
    let u64_at = |o: usize| -> Result<u64, GuardError> {
        file.get(o..o + 8).map(|b| u64::from_le_bytes(b.try_into().unwrap())).ok_or_else(trunc_zip)
    };
    // End of central directory: the last "PK\x05\x06" within 64 KiB + 22 bytes of the end.
    let tail = file.len().saturating_sub(65_557);
    let eocd = (tail..file.len().saturating_sub(21))
        .rev()
        .find(|&i| file[i..i + 4] == *b"PK\x05\x06")
        .ok_or_else(|| GuardError::Malformed("no zip directory at the end (truncated?)".into()))?;
    let (mut count, mut cd_off) = (u16_at(eocd + 10)?, u32_at(eocd + 16)?);
    if (count == 0xFFFF || cd_off == 0xFFFF_FFFF) && eocd >= 20 && file[eocd - 20..eocd - 16] == *b"PK\x06\x07" {
        let z64 = u64_at(eocd - 12)? as usize;
        if file.get(z64..z64 + 4) != Some(b"PK\x06\x06") {
            return malformed("bad zip64 directory record");
        }
        count = u64_at(z64 + 32)?;
        cd_off = u64_at(z64 + 48)?;
    }
    // Each directory entry takes at least 46 bytes: a larger count is a lie.
    if count > file.len() as u64 / 46 {
        return malformed(format!("the zip directory claims {count} entries, more than the file can hold"));
    }
    let mut out = Vec::with_capacity(count as usize);
    let mut at = usize::try_from(cd_off).map_err(|_| trunc_zip())?;
    for _ in 0..count {
        if file.get(at..at + 4) != Some(b"PK\x01\x02") {
            return malformed("bad zip directory entry (truncated?)");
        }
        let method = u16_at(at + 10)?;
        let (mut csize, mut usize_, mut local) = (u32_at(at + 20)?, u32_at(at + 24)?, u32_at(at + 42)?);
        let (nlen, xlen, clen) = (u16_at(at + 28)? as usize, u16_at(at + 30)? as usize, u16_at(at + 32)? as usize);
        let name = file.get(at + 46..at + 46 + nlen).ok_or_else(trunc_zip)?;
        let name = String::from_utf8_lossy(name).into_owned();
        // zip64 extra field: the 0xFFFFFFFF fields, in order.
        let mut x = at + 46 + nlen;
        let xend = x + xlen;
        while x + 4 <= xend {
            let (id, len) = (u16_at(x)?, u16_at(x + 2)? as usize);
            if id == 1 {
                let mut f = x + 4;
                for v in [&mut usize_, &mut csize, &mut local] {
                    if *v == 0xFFFF_FFFF {
                        *v = u64_at(f)?;
                        f += 8;
                    }
                }
            }
            x += 4 + len;
        }
        let local = usize::try_from(local).map_err(|_| trunc_zip())?;
        if file.get(local..local + 4) != Some(b"PK\x03\x04") {
            return malformed(format!("zip record {name} points outside the file"));
        }
        let data = local + 30 + u16_at(local + 26)? as usize + u16_at(local + 28)? as usize;
        let len = if method == 0 { usize_ } else { csize };
        let bytes = usize::try_from(len)
            .ok()
            .and_then(|l| file.get(data..data.checked_add(l)?))
            .ok_or_else(|| GuardError::Malformed(format!("zip record {name} runs past the end of the file")))?;
        if method != 0 && (name.ends_with("data.pkl") || name.contains("/data/")) {
            return malformed(format!("zip record {name} is compressed (torch.save stores records uncompressed)"));
        }
        out.push((name, bytes));
        at += 46 + nlen + xlen + clen;
    }
    Ok(out)
}

fn trunc_zip() -> GuardError {
    GuardError::Malformed("the zip structure is cut short (truncated?)".into())
}

/// What a storage's bytes may be compared against.
enum StorageBound<'a> {
    /// Sizes of the zip's `data/<key>` records.
    Records(&'a HashMap<&'a str, u64>),
    /// The whole file's size (legacy format: storages follow the pickles).
    File(u64),
}

/// The abstract value of a pickle stack slot: only what the checks need.
#[derive(Clone, Debug)]
enum Val {
    Int(i64),
    Str(Rc<str>),
    Global(&'static str),
    Tuple(Rc<[Val]>, usize),
    /// A storage with this many elements.
    Storage(u64),
    /// Anything else, with its nesting depth.
    Opaque(usize),
}

impl Val {
    fn depth(&self) -> usize {
        match self {
            Val::Tuple(_, d) | Val::Opaque(d) => *d,
            _ => 0,
        }
    }
}

struct Scan<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Val>,
    marks: Vec<usize>,
    memo: HashMap<u64, Val>,
    bound: StorageBound<'a>,
}

fn elem_size(storage: &str) -> u64 {
    match storage {
        "torch.DoubleStorage" | "torch.LongStorage" => 8,
        "torch.FloatStorage" | "torch.IntStorage" => 4,
        "torch.HalfStorage" | "torch.BFloat16Storage" | "torch.ShortStorage" => 2,
        _ => 1,
    }
}

impl<'a> Scan<'a> {
    fn new(data: &'a [u8], bound: StorageBound<'a>) -> Self {
        Scan { data, pos: 0, stack: Vec::new(), marks: Vec::new(), memo: HashMap::new(), bound }
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], GuardError> {
        let left = (self.data.len() - self.pos) as u64;
        if n > left {
            return malformed(format!(
                "opcode at byte {} claims {n} bytes but only {left} are left (truncated or forged)",
                self.pos
            ));
        }
        let s = &self.data[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }
    fn uint(&mut self, n: u64) -> Result<u64, GuardError> {
        Ok(self.take(n)?.iter().rev().fold(0u64, |a, &b| (a << 8) | b as u64))
    }
    fn line(&mut self) -> Result<&'a str, GuardError> {
        let rest = &self.data[self.pos..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| GuardError::Malformed("unterminated text opcode".into()))?;
        self.pos += end + 1;
        std::str::from_utf8(&rest[..end]).map_err(|_| GuardError::Malformed("text opcode is not UTF-8".into()))
    }
    fn push(&mut self, v: Val) -> Result<(), GuardError> {
        if v.depth() > MAX_DEPTH {
            return refused(format!("values nested more than {MAX_DEPTH} deep (a pickle bomb?)"));
        }
        if self.stack.len() >= MAX_STACK {
            return refused(format!("more than {MAX_STACK} values on the pickle stack (a pickle bomb?)"));
        }
        self.stack.push(v);
        Ok(())
    }
    fn pop(&mut self) -> Result<Val, GuardError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return malformed(format!("stack underflow at byte {}", self.pos));
        }
        Ok(self.stack.pop().unwrap())
    }
    fn pop_mark(&mut self) -> Result<Vec<Val>, GuardError> {
        let m = self.marks.pop().ok_or_else(|| GuardError::Malformed(format!("no MARK before byte {}", self.pos)))?;
        Ok(self.stack.split_off(m))
    }
    fn memo_index(&self, i: u64) -> Result<u64, GuardError> {
        if i >= self.data.len() as u64 {
            return refused(format!(
                "memo index {i} exceeds what a {}-byte pickle can hold (a pickle bomb?)",
                self.data.len()
            ));
        }
        Ok(i)
    }
    fn put(&mut self, i: u64) -> Result<(), GuardError> {
        let i = self.memo_index(i)?;
        let top =
            self.stack.last().cloned().ok_or_else(|| GuardError::Malformed("memo store of an empty stack".into()))?;
        self.memo.insert(i, top);
        Ok(())
    }
    fn get(&mut self, i: u64) -> Result<(), GuardError> {
        let i = self.memo_index(i)?;
        let v = self
            .memo
            .get(&i)
            .cloned()
            .ok_or_else(|| GuardError::Malformed(format!("memo index {i} read before it is stored")))?;
        self.push(v)
    }
    fn global(&mut self, module: &str, name: &str) -> Result<(), GuardError> {
        let full = format!("{module}.{name}");
        match ALLOWED_GLOBALS.iter().find(|g| **g == full) {
            Some(g) => self.push(Val::Global(g)),
            None => refused(format!(
                "its pickle asks for the global `{full}`, which torch.save never writes for a state_dict"
            )),
        }
    }
    fn tuple(items: Vec<Val>) -> Val {
        let d = items.iter().map(Val::depth).max().unwrap_or(0) + 1;
        Val::Tuple(items.into(), d)
    }
    fn opaque(items: &[Val]) -> Val {
        Val::Opaque(items.iter().map(Val::depth).max().unwrap_or(0) + 1)
    }
    /// Folds values into the container below them (APPEND, SETITEM, ...): the container's depth grows.
    fn fold_into(&mut self, items: Vec<Val>) -> Result<(), GuardError> {
        let c = self.pop()?;
        let d = items.iter().map(Val::depth).max().map_or(c.depth(), |m| c.depth().max(m + 1));
        match c {
            Val::Opaque(_) => self.push(Val::Opaque(d)),
            _ => malformed(format!("items added to a value that is not a list, dict or set at byte {}", self.pos)),
        }
    }

    fn storage(&self, pid: &Val) -> Result<Val, GuardError> {
        let Val::Tuple(t, _) = pid else { return malformed("a persistent id that is not a tuple") };
        let (Some(Val::Str(kind)), Some(Val::Global(cls)), Some(Val::Str(key)), Some(Val::Int(numel))) =
            (t.first(), t.get(1), t.get(2), t.get(4))
        else {
            return malformed("a persistent id that is not ('storage', class, key, location, size)");
        };
        if &**kind != "storage" || !cls.ends_with("Storage") {
            return malformed(format!("a persistent id of kind `{kind}` (only tensor storages are read)"));
        }
        let numel =
            u64::try_from(*numel).map_err(|_| GuardError::Malformed(format!("storage {key} has a negative size")))?;
        let bytes = numel.checked_mul(elem_size(cls));
        let (have, what) = match &self.bound {
            StorageBound::Records(r) => match r.get(&**key) {
                Some(&n) => (n, format!("its record data/{key} holds")),
                None => return malformed(format!("storage {key} has no data/{key} record in the zip")),
            },
            StorageBound::File(n) => (*n, "the whole file holds".to_string()),
        };
        match bytes {
            Some(b) if b <= have => Ok(Val::Storage(numel)),
            _ => refused(format!(
                "storage {key} claims {numel} elements of {} bytes but {what} {have} bytes",
                elem_size(cls)
            )),
        }
    }

    fn reduce(&mut self, f: Val, args: Val) -> Result<Val, GuardError> {
        let Val::Global(g) = f else {
            return malformed(format!("a call of something that is not an allowed global at byte {}", self.pos));
        };
        if g.starts_with("torch._utils._rebuild_tensor") {
            let Val::Tuple(a, _) = &args else { return malformed("tensor rebuild without an argument tuple") };
            let ints = |v: Option<&Val>| -> Option<Vec<i64>> {
                match v? {
                    Val::Tuple(t, _) => t.iter().map(|x| if let Val::Int(i) = x { Some(*i) } else { None }).collect(),
                    _ => None,
                }
            };
            let (Some(Val::Storage(numel)), Some(Val::Int(offset)), Some(size), Some(stride)) =
                (a.first(), a.get(1), ints(a.get(2)), ints(a.get(3)))
            else {
                return malformed("tensor rebuild arguments are not (storage, offset, size, stride, ...)");
            };
            if size.len() != stride.len() || *offset < 0 || size.iter().chain(&stride).any(|&v| v < 0) {
                return malformed("tensor with a negative or mismatched size / stride");
            }
            // Highest element the view touches, checked for overflow.
            let end = if size.contains(&0) {
                Some(0)
            } else {
                size.iter().zip(&stride).try_fold(*offset as u64 + 1, |acc, (&n, &s)| {
                    acc.checked_add((n as u64 - 1).checked_mul(s as u64)?)
                })
            };
            match end {
                Some(e) if e <= *numel => {}
                _ => {
                    return refused(format!(
                        "a tensor of size {size:?} (stride {stride:?}, offset {offset}) reaches past its storage of {numel} elements"
                    ));
                }
            }
        }
        Ok(Val::Opaque(args.depth() + 1))
    }

    /// Scans one pickle up to its STOP; returns the bytes it took.
    fn run(&mut self) -> Result<usize, GuardError> {
        loop {
            let at = self.pos;
            let Some(&op) = self.data.get(self.pos) else {
                return malformed("the pickle ends before its STOP opcode (truncated?)");
            };
            self.pos += 1;
            match op {
                b'.' => return Ok(self.pos),
                0x80 => {
                    let p = self.uint(1)?;
                    if p > 5 {
                        return malformed(format!("pickle protocol {p} is unknown"));
                    }
                }
                0x95 => {
                    let n = self.uint(8)?;
                    if n > (self.data.len() - self.pos) as u64 {
                        return malformed(format!("a frame claims {n} bytes, more than the pickle holds"));
                    }
                }
                b'(' => {
                    if self.marks.len() >= MAX_DEPTH {
                        return refused(format!("MARKs nested more than {MAX_DEPTH} deep (a pickle bomb?)"));
                    }
                    self.marks.push(self.stack.len());
                }
                b'0' => drop(self.pop()?),
                b'1' => drop(self.pop_mark()?),
                b'2' => {
                    let v = self.pop()?;
                    self.push(v.clone())?;
                    self.push(v)?;
                }
                b'N' | 0x88 | 0x89 | b'F' | b'G' => {
                    match op {
                        b'F' => drop(self.line()?),
                        b'G' => drop(self.take(8)?),
                        _ => {}
                    }
                    self.push(Val::Opaque(0))?;
                }
                b'I' | b'L' => {
                    let s = self.line()?.trim_end_matches('L');
                    let v = s.parse::<i64>().map(Val::Int).unwrap_or(Val::Opaque(0));
                    self.push(v)?;
                }
                b'J' => {
                    let v = self.uint(4)? as u32 as i32 as i64;
                    self.push(Val::Int(v))?;
                }
                b'K' | b'M' => {
                    let v = self.uint(if op == b'K' { 1 } else { 2 })? as i64;
                    self.push(Val::Int(v))?;
                }
                0x8a | 0x8b => {
                    let n = self.uint(if op == 0x8a { 1 } else { 4 })?;
                    let b = self.take(n)?;
                    let v = if b.len() <= 8 {
                        let mut x = b.iter().rev().fold(0i64, |a, &c| (a << 8) | c as i64);
                        if !b.is_empty() && b.len() < 8 && b[b.len() - 1] & 0x80 != 0 {
                            x -= 1i64 << (8 * b.len());
                        }
                        Val::Int(x)
                    } else {
                        Val::Opaque(0)
                    };
                    self.push(v)?;
                }
                b'X' | 0x8c | 0x8d | b'V' | b'S' | b'T' | b'U' => {
                    let s: &str = match op {
                        b'V' | b'S' => self.line()?,
                        _ => {
                            let n = self.uint(match op {
                                0x8c | b'U' => 1,
                                0x8d => 8,
                                _ => 4,
                            })?;
                            std::str::from_utf8(self.take(n)?).unwrap_or("")
                        }
                    };
                    let v = Val::Str(s.trim_matches(|c| op == b'S' && (c == '\'' || c == '"')).into());
                    self.push(v)?;
                }
                b'B' | b'C' | 0x8e | 0x96 => {
                    let n = self.uint(match op {
                        b'C' => 1,
                        b'B' => 4,
                        _ => 8,
                    })?;
                    self.take(n)?;
                    self.push(Val::Opaque(0))?;
                }
                b')' => self.push(Self::tuple(vec![]))?,
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Self::tuple(items))?;
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = (0..n).map(|_| self.pop()).collect::<Result<Vec<_>, _>>()?;
                    items.reverse();
                    self.push(Self::tuple(items))?;
                }
                b']' | b'}' | 0x8f => self.push(Val::Opaque(1))?,
                b'l' | b'd' | 0x91 => {
                    let items = self.pop_mark()?;
                    self.push(Self::opaque(&items))?;
                }
                b'a' => {
                    let v = self.pop()?;
                    self.fold_into(vec![v])?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.fold_into(vec![k, v])?;
                }
                b'e' | b'u' | 0x90 => {
                    let items = self.pop_mark()?;
                    self.fold_into(items)?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.global(module, name)?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Val::Str(m), Val::Str(n)) = (module, name) else {
                        return malformed(format!("STACK_GLOBAL of non-strings at byte {at}"));
                    };
                    self.global(&m, &n)?;
                }
                b'i' | b'o' => {
                    return refused(format!(
                        "it uses the {} opcode (class instantiation), which torch.save never writes",
                        if op == b'i' { "INST" } else { "OBJ" }
                    ));
                }
                0x82..=0x84 => {
                    return refused(
                        "it uses the pickle extension registry (EXT opcodes), which torch.save never writes",
                    );
                }
                0x97 | 0x98 => return refused("it uses out-of-band buffers, which torch.save never writes"),
                b'P' => return refused("it uses a text persistent id (PERSID), which torch.save never writes"),
                b'Q' => {
                    let pid = self.pop()?;
                    let s = self.storage(&pid)?;
                    self.push(s)?;
                }
                b'R' => {
                    let args = self.pop()?;
                    let f = self.pop()?;
                    let v = self.reduce(f, args)?;
                    self.push(v)?;
                }
                0x81 => {
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    let v = self.reduce(cls, args)?;
                    self.push(v)?;
                }
                0x92 => {
                    let kw = self.pop()?;
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    let v = self.reduce(cls, args)?;
                    self.push(Val::Opaque(v.depth().max(kw.depth() + 1)))?;
                }
                b'b' => {
                    let state = self.pop()?;
                    let obj = self.pop()?;
                    self.push(Val::Opaque(obj.depth().max(state.depth() + 1)))?;
                }
                b'p' => {
                    let i = self.line()?.parse::<u64>().map_err(|_| GuardError::Malformed("bad PUT index".into()))?;
                    self.put(i)?;
                }
                b'q' | b'r' => {
                    let i = self.uint(if op == b'q' { 1 } else { 4 })?;
                    self.put(i)?;
                }
                0x94 => {
                    let i = self.memo.len() as u64;
                    self.put(i)?;
                }
                b'g' => {
                    let i = self.line()?.parse::<u64>().map_err(|_| GuardError::Malformed("bad GET index".into()))?;
                    self.get(i)?;
                }
                b'h' | b'j' => {
                    let i = self.uint(if op == b'h' { 1 } else { 4 })?;
                    self.get(i)?;
                }
                _ => return malformed(format!("unknown pickle opcode 0x{op:02x} at byte {at}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pickle with no storages (no zip around it), scanned as the state_dict of a legacy file.
    fn scan(p: &[u8]) -> Result<usize, GuardError> {
        Scan::new(p, StorageBound::File(p.len() as u64)).run()
    }

    fn refused_msg(r: Result<usize, GuardError>) -> String {
        match r {
            Err(GuardError::Refused(m)) => m,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn os_system_is_refused_by_name() {
        // The classic exploit: cos\nsystem\n(S'echo pwned'\ntR.
        let p = b"cos\nsystem\n(S'echo pwned'\ntR.";
        let m = refused_msg(scan(p));
        assert!(m.contains("`os.system`"), "{m}");
        // Protocol 4's STACK_GLOBAL spelling of builtins.eval.
        let mut p = vec![0x80, 4, 0x8c, 8];
        p.extend(b"builtins");
        p.extend([0x8c, 4]);
        p.extend(b"eval");
        p.extend([0x93, b'.']);
        let m = refused_msg(scan(&p));
        assert!(m.contains("`builtins.eval`"), "{m}");
        // INST names its class inline: refused without looking it up.
        assert!(refused_msg(scan(b"(ios\nsystem\n.")).contains("INST"));
    }

    #[test]
    fn deep_nesting_fails_fast() {
        let marks = vec![b'('; 100_000];
        let m = refused_msg(scan(&marks));
        assert!(m.contains(&format!("MARKs nested more than {MAX_DEPTH}")), "{m}");
        // 100k nested lists: ]]]...]aaa...a.
        let mut p = vec![b']'; 100_000];
        p.extend(vec![b'a'; 99_999]);
        p.push(b'.');
        let m = refused_msg(scan(&p));
        assert!(m.contains(&format!("nested more than {MAX_DEPTH} deep")), "{m}");
        // A flat stack of 200k empty lists.
        let mut p = vec![b']'; 200_000];
        p.push(b'.');
        let m = refused_msg(scan(&p));
        assert!(m.contains(&format!("more than {MAX_STACK} values")), "{m}");
        // 900 levels is fine (well-formed, under the limit).
        let mut p = vec![b']'; 900];
        p.extend(vec![b'a'; 899]);
        p.push(b'.');
        assert_eq!(scan(&p), Ok(p.len()));
    }

    #[test]
    fn huge_memo_index_fails() {
        // ] LONG_BINPUT 0xFFFFFFFF .
        let m = refused_msg(scan(b"]r\xff\xff\xff\xff."));
        assert!(m.contains("memo index 4294967295"), "{m}");
        let m = refused_msg(scan(b"j\x00\x00\x00\x10."));
        assert!(m.contains("memo index 268435456"), "{m}");
        // A memo read of an index never stored.
        assert!(matches!(scan(b"h\x01."), Err(GuardError::Malformed(m)) if m.contains("before it is stored")));
    }

    /// A torch.save-shaped pickle: {"w": _rebuild_tensor_v2(storage(numel), 0, (n,), (1,), False, OrderedDict())}.
    fn state_dict(numel: u64, n: i64) -> Vec<u8> {
        let mut p = vec![0x80, 2, b'}', b'X', 1, 0, 0, 0, b'w'];
        p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n(");
        p.extend(b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpu");
        p.push(0x8a);
        p.push(8);
        p.extend(numel.to_le_bytes());
        p.extend(b"tQK\x00");
        p.push(0x8a);
        p.push(8);
        p.extend(n.to_le_bytes());
        p.extend(b"\x85K\x01\x85\x89ccollections\nOrderedDict\n)RtRs.");
        p
    }

    #[test]
    fn storage_claims_are_checked_before_allocating() {
        let records: HashMap<&str, u64> = [("0", 40u64)].into_iter().collect();
        let run = |p: &[u8]| Scan::new(p, StorageBound::Records(&records)).run();
        // 10 floats in a 40-byte record: fine.
        let ok = state_dict(10, 10);
        assert_eq!(run(&ok), Ok(ok.len()));
        // A storage claiming 10^12 elements: refused from the header alone.
        let m = refused_msg(run(&state_dict(1_000_000_000_000, 10)));
        assert!(m.contains("claims 1000000000000 elements") && m.contains("40 bytes"), "{m}");
        // A storage that fits but a view that reaches past it.
        let m = refused_msg(run(&state_dict(10, 11)));
        assert!(m.contains("reaches past its storage of 10 elements"), "{m}");
        // A string claiming 4 GiB in a short pickle.
        assert!(
            matches!(scan(b"X\xff\xff\xff\xffabc"), Err(GuardError::Malformed(m)) if m.contains("claims 4294967295 bytes"))
        );
    }
}
