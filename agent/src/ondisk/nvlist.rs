//! Decoder for XDR-packed nvlists, the encoding ZFS uses for the vdev label config.
//!
//! The input comes from any disk that shows up at boot, so the decoder treats it as hostile:
//! every count is checked against the bytes that remain before anything is allocated (so
//! allocation is bounded by a small multiple of the input size), nesting depth is capped,
//! and every failure is an error value, never a panic.

use serde::ser::{SerializeMap, SerializeSeq};
#[cfg(test)]
use serde::{Deserialize, Deserializer};
use serde::{Serialize, Serializer};
use thiserror::Error;

/// Deepest nvlist nesting accepted. Real labels nest about five levels
/// (config → vdev_tree → mirror → replacing → disk → stats).
pub const MAX_DEPTH: usize = 24;
/// Largest packed nvlist accepted (the label's nvlist area is 112 KiB).
pub const MAX_PACKED: usize = 1 << 20;
/// Most memory one decoded nvlist may take (estimated by `heap_bytes`): a 112 KiB label of
/// empty strings would otherwise decode to several times its size.
pub const MAX_DECODED: usize = 512 << 10;
/// What one pair costs in memory besides its name and payload.
const PAIR_COST: usize = 64;

const NV_ENCODE_XDR: u8 = 1;
/// An embedded nvlist occupies at least version + flags + the 8-byte terminator.
const MIN_NVLIST_XDR: usize = 16;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum NvError {
    #[error("packed nvlist is {0} bytes, larger than the {MAX_PACKED}-byte limit")]
    TooLarge(usize),
    #[error("nvlist encoding {0} is not XDR")]
    NotXdr(u8),
    #[error("nvlist truncated at byte {0}")]
    Truncated(usize),
    #[error("nvlist nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("nvlist would take more than {MAX_DECODED} bytes of memory")]
    TooBig,
    #[error("nvpair at byte {at}: element count {nelem} does not fit in the remaining data")]
    BadCount { at: usize, nelem: u32 },
    #[error("nvpair at byte {at}: name or string is not UTF-8")]
    BadString { at: usize },
    #[error("nvpair '{name}': type {ty} with {nelem} elements is malformed")]
    BadShape { name: String, ty: u32, nelem: u32 },
    #[error("nvpair '{name}': encoded size {declared} but {actual} bytes were used")]
    SizeMismatch { name: String, declared: u32, actual: usize },
}

/// One decoded value. Arrays keep their element type so that a value can be printed
/// exactly as `zdb` prints it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// DATA_TYPE_BOOLEAN: a flag whose presence is the value (features_for_read uses it).
    Flag,
    Bool(bool),
    Byte(u8),
    I8(i8),
    U8(u8),
    I16(i16),
    U16(u16),
    I32(i32),
    U32(u32),
    I64(i64),
    U64(u64),
    HrTime(i64),
    Double(f64),
    Str(String),
    Bytes(Vec<u8>),
    BoolArray(Vec<bool>),
    I8Array(Vec<i8>),
    U8Array(Vec<u8>),
    I16Array(Vec<i16>),
    U16Array(Vec<u16>),
    I32Array(Vec<i32>),
    U32Array(Vec<u32>),
    I64Array(Vec<i64>),
    U64Array(Vec<u64>),
    StrArray(Vec<String>),
    List(NvList),
    ListArray(Vec<NvList>),
    /// A type this decoder does not know; skipped using the pair's encoded size.
    Unknown(u32),
}

/// An nvlist keeps pairs in on-disk order (names are unique in ZFS configs, but order
/// matters when comparing with `zdb` output).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NvList {
    pub pairs: Vec<(String, Value)>,
}

impl Value {
    /// Memory held by the value itself (nested lists count their own pairs).
    fn payload_bytes(&self) -> usize {
        match self {
            Value::Str(v) => v.len(),
            Value::Bytes(v) | Value::U8Array(v) => v.len(),
            Value::BoolArray(v) => v.len(),
            Value::I8Array(v) => v.len(),
            Value::I16Array(v) => v.len() * 2,
            Value::U16Array(v) => v.len() * 2,
            Value::I32Array(v) => v.len() * 4,
            Value::U32Array(v) => v.len() * 4,
            Value::I64Array(v) => v.len() * 8,
            Value::U64Array(v) => v.len() * 8,
            Value::StrArray(v) => v.iter().map(|s| s.len() + 24).sum(),
            Value::ListArray(v) => v.len() * 24,
            _ => 0,
        }
    }
}

impl NvList {
    /// Estimated memory the decoded list holds, the way the decoder counts it.
    pub fn heap_bytes(&self) -> usize {
        self.pairs
            .iter()
            .map(|(n, v)| {
                PAIR_COST
                    + n.len()
                    + v.payload_bytes()
                    + match v {
                        Value::List(l) => l.heap_bytes(),
                        Value::ListArray(ls) => ls.iter().map(NvList::heap_bytes).sum(),
                        _ => 0,
                    }
            })
            .sum()
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Any unsigned or signed integer as u64 (ZFS stores most numbers as uint64).
    pub fn u64(&self, name: &str) -> Option<u64> {
        match self.get(name)? {
            Value::U64(v) => Some(*v),
            Value::U32(v) => Some(u64::from(*v)),
            Value::U16(v) => Some(u64::from(*v)),
            Value::U8(v) | Value::Byte(v) => Some(u64::from(*v)),
            Value::I64(v) | Value::HrTime(v) => u64::try_from(*v).ok(),
            Value::I32(v) => u64::try_from(*v).ok(),
            Value::Bool(b) => Some(u64::from(*b)),
            _ => None,
        }
    }

    pub fn str(&self, name: &str) -> Option<&str> {
        match self.get(name)? {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn list(&self, name: &str) -> Option<&NvList> {
        match self.get(name)? {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    pub fn lists(&self, name: &str) -> &[NvList] {
        match self.get(name) {
            Some(Value::ListArray(l)) => l,
            _ => &[],
        }
    }

    pub fn u64s(&self, name: &str) -> &[u64] {
        match self.get(name) {
            Some(Value::U64Array(l)) => l,
            _ => &[],
        }
    }

    /// Names of the pairs (used for feature lists, whose values are flags).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.pairs.iter().map(|(n, _)| n.as_str())
    }
}

/// Decode a packed nvlist: the 4-byte stream header (encoding, endianness, reserved)
/// followed by the XDR body. Trailing bytes after the list terminator are ignored, as the
/// label's nvlist area is zero-padded.
pub fn unpack(buf: &[u8]) -> Result<NvList, NvError> {
    if buf.len() > MAX_PACKED {
        return Err(NvError::TooLarge(buf.len()));
    }
    if buf.len() < 4 {
        return Err(NvError::Truncated(buf.len()));
    }
    if buf[0] != NV_ENCODE_XDR {
        return Err(NvError::NotXdr(buf[0]));
    }
    let mut r = Reader { buf, pos: 4, spent: 0 };
    r.nvlist(0)
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Estimated memory of what was decoded so far.
    spent: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], NvError> {
        if n > self.remaining() {
            return Err(NvError::Truncated(self.pos));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u32(&mut self) -> Result<u32, NvError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, NvError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// XDR opaque data: `len` bytes padded to a multiple of four.
    fn opaque(&mut self, len: usize) -> Result<&'a [u8], NvError> {
        let padded = len.checked_add(3).ok_or(NvError::Truncated(self.pos))? & !3;
        let b = self.take(padded)?;
        Ok(&b[..len])
    }

    fn string(&mut self) -> Result<String, NvError> {
        let at = self.pos;
        let len = self.u32()? as usize;
        let b = self.opaque(len)?;
        std::str::from_utf8(b).map(str::to_owned).map_err(|_| NvError::BadString { at })
    }

    /// Check that `nelem` elements of at least `min_each` encoded bytes can still follow,
    /// before allocating room for them.
    fn check_count(&self, at: usize, nelem: u32, min_each: usize) -> Result<usize, NvError> {
        let n = nelem as usize;
        match n.checked_mul(min_each) {
            Some(bytes) if bytes <= self.remaining() => Ok(n),
            _ => Err(NvError::BadCount { at, nelem }),
        }
    }

    /// An XDR counted array (count word, then elements); the count must equal nelem.
    fn array<T>(
        &mut self,
        name: &str,
        ty: u32,
        nelem: u32,
        width: usize,
        mut each: impl FnMut(&mut Self) -> Result<T, NvError>,
    ) -> Result<Vec<T>, NvError> {
        let at = self.pos;
        let count = self.u32()?;
        if count != nelem {
            return Err(NvError::BadShape { name: name.to_owned(), ty, nelem });
        }
        let n = self.check_count(at, nelem, width)?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(each(self)?);
        }
        Ok(v)
    }

    fn nvlist(&mut self, depth: usize) -> Result<NvList, NvError> {
        if depth > MAX_DEPTH {
            return Err(NvError::TooDeep);
        }
        let _version = self.u32()?;
        let _flags = self.u32()?;
        let mut list = NvList::default();
        loop {
            let start = self.pos;
            let encoded = self.u32()?;
            let decoded = self.u32()?;
            if decoded == 0 {
                return Ok(list);
            }
            let (name, value) = self.pair(depth, start, encoded)?;
            self.spent += PAIR_COST + name.len() + value.payload_bytes();
            if self.spent > MAX_DECODED {
                return Err(NvError::TooBig);
            }
            let used = self.pos - start;
            if used != encoded as usize {
                return Err(NvError::SizeMismatch { name, declared: encoded, actual: used });
            }
            list.pairs.push((name, value));
        }
    }

    fn pair(&mut self, depth: usize, start: usize, encoded: u32) -> Result<(String, Value), NvError> {
        let name = self.string()?;
        let ty = self.u32()?;
        let nelem = self.u32()?;
        let at = self.pos;
        let scalar = |name: &str| -> Result<(), NvError> {
            match nelem {
                1 => Ok(()),
                _ => Err(NvError::BadShape { name: name.to_owned(), ty, nelem }),
            }
        };
        let v = match ty {
            1 => {
                if nelem != 0 {
                    return Err(NvError::BadShape { name, ty, nelem });
                }
                Value::Flag
            }
            2 | 3 | 4 | 5 | 6 | 21 | 22 | 23 => {
                scalar(&name)?;
                let w = self.u32()?;
                match ty {
                    2 => Value::Byte(w as u8),
                    3 => Value::I16(w as i32 as i16),
                    4 => Value::U16(w as u16),
                    5 => Value::I32(w as i32),
                    6 => Value::U32(w),
                    21 => Value::Bool(w != 0),
                    22 => Value::I8(w as i32 as i8),
                    _ => Value::U8(w as u8),
                }
            }
            7 | 8 | 18 | 27 => {
                scalar(&name)?;
                let w = self.u64()?;
                match ty {
                    7 => Value::I64(w as i64),
                    8 => Value::U64(w),
                    18 => Value::HrTime(w as i64),
                    _ => Value::Double(f64::from_bits(w)),
                }
            }
            9 => {
                scalar(&name)?;
                Value::Str(self.string()?)
            }
            10 => {
                let n = self.check_count(at, nelem, 1)?;
                Value::Bytes(self.opaque(n)?.to_vec())
            }
            11 => Value::I16Array(self.array(&name, ty, nelem, 4, |r| Ok(r.u32()? as i32 as i16))?),
            12 => Value::U16Array(self.array(&name, ty, nelem, 4, |r| Ok(r.u32()? as u16))?),
            13 => Value::I32Array(self.array(&name, ty, nelem, 4, |r| Ok(r.u32()? as i32))?),
            14 => Value::U32Array(self.array(&name, ty, nelem, 4, |r| r.u32())?),
            15 => Value::I64Array(self.array(&name, ty, nelem, 8, |r| Ok(r.u64()? as i64))?),
            16 => Value::U64Array(self.array(&name, ty, nelem, 8, |r| r.u64())?),
            24 => Value::BoolArray(self.array(&name, ty, nelem, 4, |r| Ok(r.u32()? != 0))?),
            25 => Value::I8Array(self.array(&name, ty, nelem, 4, |r| Ok(r.u32()? as i32 as i8))?),
            26 => Value::U8Array(self.array(&name, ty, nelem, 4, |r| Ok(r.u32()? as u8))?),
            17 => {
                // Strings follow one after another; nelem comes from the pair header.
                let n = self.check_count(at, nelem, 4)?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.string()?);
                }
                Value::StrArray(v)
            }
            19 => {
                scalar(&name)?;
                Value::List(self.nvlist(depth + 1)?)
            }
            20 => {
                let n = self.check_count(at, nelem, MIN_NVLIST_XDR)?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.nvlist(depth + 1)?);
                }
                Value::ListArray(v)
            }
            _ => {
                // Unknown type: trust the encoded size to skip it, bounded by the buffer.
                let end = start
                    .checked_add(encoded as usize)
                    .filter(|e| *e >= self.pos && *e <= self.buf.len())
                    .ok_or(NvError::Truncated(self.pos))?;
                self.pos = end;
                Value::Unknown(ty)
            }
        };
        Ok((name, v))
    }
}

/// Render a list the way `zdb -l` prints a label config, line for line, so decoded
/// labels can be compared with what OpenZFS itself printed for the same device.
pub fn zdb_dump(list: &NvList, indent: usize) -> String {
    let mut out = String::new();
    dump_into(&mut out, list, indent);
    out
}

fn dump_into(out: &mut String, list: &NvList, ind: usize) {
    use std::fmt::Write;
    let pad = " ".repeat(ind);
    fn each<T>(out: &mut String, pad: &str, name: &str, v: &[T], f: impl Fn(&T) -> String) {
        for (i, e) in v.iter().enumerate() {
            let _ = writeln!(out, "{pad}{name}[{i}]: {}", f(e));
        }
    }
    for (name, v) in &list.pairs {
        let one = |s: String| format!("{pad}{name}: {s}\n");
        match v {
            Value::Flag => {
                let _ = writeln!(out, "{pad}{name}");
            }
            Value::Bool(b) => out.push_str(&one(b.to_string())),
            Value::Byte(x) | Value::U8(x) => out.push_str(&one(x.to_string())),
            Value::I8(x) => out.push_str(&one(x.to_string())),
            Value::I16(x) => out.push_str(&one(x.to_string())),
            Value::U16(x) => out.push_str(&one(x.to_string())),
            Value::I32(x) => out.push_str(&one(x.to_string())),
            Value::U32(x) => out.push_str(&one(x.to_string())),
            Value::I64(x) => out.push_str(&one(x.to_string())),
            Value::U64(x) => out.push_str(&one(x.to_string())),
            Value::HrTime(x) => out.push_str(&one(format!("0x{:x}", *x as u64))),
            Value::Double(x) => out.push_str(&one(format!("{x:.6}"))),
            Value::Str(s) => out.push_str(&one(format!("'{s}'"))),
            Value::Bytes(a) | Value::U8Array(a) => each(out, &pad, name, a, |e| e.to_string()),
            Value::BoolArray(a) => each(out, &pad, name, a, |e| e.to_string()),
            Value::I8Array(a) => each(out, &pad, name, a, |e| e.to_string()),
            Value::I16Array(a) => each(out, &pad, name, a, |e| e.to_string()),
            Value::U16Array(a) => each(out, &pad, name, a, |e| e.to_string()),
            Value::I32Array(a) => each(out, &pad, name, a, |e| e.to_string()),
            Value::U32Array(a) => each(out, &pad, name, a, |e| e.to_string()),
            Value::I64Array(a) => each(out, &pad, name, a, |e| e.to_string()),
            Value::U64Array(a) => each(out, &pad, name, a, |e| e.to_string()),
            Value::StrArray(a) => each(out, &pad, name, a, |e| format!("'{e}'")),
            Value::List(l) => {
                let _ = writeln!(out, "{pad}{name}:");
                dump_into(out, l, ind + 4);
            }
            Value::ListArray(ls) => {
                for (i, l) in ls.iter().enumerate() {
                    let _ = writeln!(out, "{pad}{name}[{i}]:");
                    dump_into(out, l, ind + 4);
                }
            }
            Value::Unknown(t) => {
                let _ = writeln!(out, "bad config type {t} for {name}");
            }
        }
    }
}

// JSON form: an nvlist becomes an object, arrays become arrays, flags become `true`.
impl Serialize for NvList {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.pairs.len()))?;
        for (k, v) in &self.pairs {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

fn seq<S: Serializer, T: Serialize>(s: S, v: &[T]) -> Result<S::Ok, S::Error> {
    let mut q = s.serialize_seq(Some(v.len()))?;
    for e in v {
        q.serialize_element(e)?;
    }
    q.end()
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Flag => s.serialize_bool(true),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Byte(v) | Value::U8(v) => s.serialize_u8(*v),
            Value::I8(v) => s.serialize_i8(*v),
            Value::I16(v) => s.serialize_i16(*v),
            Value::U16(v) => s.serialize_u16(*v),
            Value::I32(v) => s.serialize_i32(*v),
            Value::U32(v) => s.serialize_u32(*v),
            Value::I64(v) | Value::HrTime(v) => s.serialize_i64(*v),
            Value::U64(v) => s.serialize_u64(*v),
            Value::Double(v) => s.serialize_f64(*v),
            Value::Str(v) => s.serialize_str(v),
            Value::Bytes(v) | Value::U8Array(v) => seq(s, v),
            Value::BoolArray(v) => seq(s, v),
            Value::I8Array(v) => seq(s, v),
            Value::I16Array(v) => seq(s, v),
            Value::U16Array(v) => seq(s, v),
            Value::I32Array(v) => seq(s, v),
            Value::U32Array(v) => seq(s, v),
            Value::I64Array(v) => seq(s, v),
            Value::U64Array(v) => seq(s, v),
            Value::StrArray(v) => seq(s, v),
            Value::List(l) => l.serialize(s),
            Value::ListArray(v) => seq(s, v),
            Value::Unknown(t) => s.serialize_str(&format!("<unknown nvpair type {t}>")),
        }
    }
}

/// Read back from the JSON form (tests of the report contract). JSON does not keep the nvpair
/// types, so numbers come back as U64/I64/Double and flags as `true`: the JSON written
/// again is the same.
#[cfg(test)]
impl<'de> Deserialize<'de> for NvList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        from_json(v, 0).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
fn from_json(v: serde_json::Value, depth: usize) -> Result<NvList, String> {
    let serde_json::Value::Object(m) = v else { return Err("an nvlist is a JSON object".into()) };
    if depth > MAX_DEPTH {
        return Err("nvlist nested too deeply".into());
    }
    let pairs = m.into_iter().map(|(k, v)| Ok((k, value_from_json(v, depth)?))).collect::<Result<_, String>>()?;
    Ok(NvList { pairs })
}

#[cfg(test)]
fn value_from_json(v: serde_json::Value, depth: usize) -> Result<Value, String> {
    use serde_json::Value as J;
    Ok(match v {
        J::Bool(b) => Value::Bool(b),
        J::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Value::U64(u),
            (None, Some(i)) => Value::I64(i),
            _ => Value::Double(n.as_f64().unwrap_or_default()),
        },
        J::String(s) => Value::Str(s),
        J::Object(_) => Value::List(from_json(v, depth + 1)?),
        J::Array(a) if a.iter().all(|e| e.is_object()) => {
            Value::ListArray(a.into_iter().map(|e| from_json(e, depth + 1)).collect::<Result<_, _>>()?)
        }
        J::Array(a) if !a.is_empty() && a.iter().all(|e| e.is_string()) => {
            Value::StrArray(a.into_iter().filter_map(|e| e.as_str().map(str::to_string)).collect())
        }
        J::Array(a) if !a.is_empty() && a.iter().all(|e| e.is_boolean()) => {
            Value::BoolArray(a.iter().filter_map(|e| e.as_bool()).collect())
        }
        J::Array(a) if a.iter().all(|e| e.is_u64()) => Value::U64Array(a.iter().filter_map(|e| e.as_u64()).collect()),
        J::Array(a) if a.iter().all(|e| e.is_i64()) => Value::I64Array(a.iter().filter_map(|e| e.as_i64()).collect()),
        J::Array(_) => return Err("an nvlist array mixes types".into()),
        J::Null => return Err("null in an nvlist".into()),
    })
}

/// Test and fuzz support: an XDR encoder for the subset of types above, so that unit
/// tests can build small lists by hand. (Real fixtures come from real pools.)
pub mod encode {
    use super::{NvList, Value};

    fn u32(out: &mut Vec<u8>, v: u32) {
        out.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(out: &mut Vec<u8>, v: u64) {
        out.extend_from_slice(&v.to_be_bytes());
    }
    fn opaque(out: &mut Vec<u8>, b: &[u8]) {
        out.extend_from_slice(b);
        while out.len() % 4 != 0 {
            out.push(0);
        }
    }
    fn string(out: &mut Vec<u8>, s: &str) {
        u32(out, s.len() as u32);
        opaque(out, s.as_bytes());
    }

    pub fn pack(list: &NvList) -> Vec<u8> {
        let mut out = vec![1, 1, 0, 0];
        body(&mut out, list);
        out
    }

    fn body(out: &mut Vec<u8>, list: &NvList) {
        u32(out, 0);
        u32(out, 1);
        for (name, v) in &list.pairs {
            let start = out.len();
            u32(out, 0); // encoded size, patched below
            u32(out, 1); // decoded size: any non-zero value
            string(out, name);
            let (ty, nelem) = match v {
                Value::Flag => (1, 0),
                Value::Bool(_) => (21, 1),
                Value::U32(_) => (6, 1),
                Value::U64(_) => (8, 1),
                Value::Str(_) => (9, 1),
                Value::Bytes(b) => (10, b.len() as u32),
                Value::U64Array(a) => (16, a.len() as u32),
                Value::StrArray(a) => (17, a.len() as u32),
                Value::List(_) => (19, 1),
                Value::ListArray(a) => (20, a.len() as u32),
                other => panic!("encoder does not support {other:?}"),
            };
            u32(out, ty);
            u32(out, nelem);
            match v {
                Value::Flag => {}
                Value::Bool(b) => u32(out, u32::from(*b)),
                Value::U32(x) => u32(out, *x),
                Value::U64(x) => u64(out, *x),
                Value::Str(s) => string(out, s),
                Value::Bytes(b) => opaque(out, b),
                Value::U64Array(a) => {
                    u32(out, a.len() as u32);
                    a.iter().for_each(|x| u64(out, *x));
                }
                Value::StrArray(a) => a.iter().for_each(|s| string(out, s)),
                Value::List(l) => body(out, l),
                Value::ListArray(a) => a.iter().for_each(|l| body(out, l)),
                _ => unreachable!(),
            }
            let size = (out.len() - start) as u32;
            out[start..start + 4].copy_from_slice(&size.to_be_bytes());
        }
        u32(out, 0);
        u32(out, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::encode::pack;
    use super::*;

    fn sample() -> NvList {
        let child = NvList { pairs: vec![("type".into(), Value::Str("disk".into())), ("guid".into(), Value::U64(42))] };
        NvList {
            pairs: vec![
                ("name".into(), Value::Str("rpool".into())),
                ("txg".into(), Value::U64(u64::MAX)),
                ("flag".into(), Value::Flag),
                ("ok".into(), Value::Bool(true)),
                ("holes".into(), Value::U64Array(vec![1, 3])),
                ("strs".into(), Value::StrArray(vec!["a".into(), "".into(), "abcde".into()])),
                ("blob".into(), Value::Bytes(vec![1, 2, 3, 4, 5])),
                ("vdev_tree".into(), Value::List(child.clone())),
                ("children".into(), Value::ListArray(vec![child.clone(), child])),
            ],
        }
    }

    #[test]
    fn round_trip() {
        let l = sample();
        let packed = pack(&l);
        assert_eq!(unpack(&packed).unwrap(), l);
        // Zero padding after the terminator, as in a label, is ignored.
        let mut padded = packed.clone();
        padded.resize(packed.len() + 4096, 0);
        assert_eq!(unpack(&padded).unwrap(), l);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let packed = pack(&sample());
        for n in 0..packed.len() {
            assert!(unpack(&packed[..n]).is_err(), "prefix of {n} bytes decoded");
        }
    }

    #[test]
    fn huge_counts_are_rejected_before_allocation() {
        let l = NvList { pairs: vec![("a".into(), Value::U64Array(vec![7]))] };
        let mut p = pack(&l);
        // pair layout: hdr(4) version(4) flags(4) enc(4) dec(4) name(4+4) type(4) nelem(4) count(4)
        let nelem_at = 4 + 8 + 8 + 8 + 4;
        p[nelem_at..nelem_at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        p[nelem_at + 4..nelem_at + 8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(unpack(&p), Err(NvError::BadCount { .. })));
    }

    #[test]
    fn deep_nesting_is_capped() {
        let mut l = NvList::default();
        for _ in 0..(MAX_DEPTH + 2) {
            l = NvList { pairs: vec![("n".into(), Value::List(l))] };
        }
        assert_eq!(unpack(&pack(&l)), Err(NvError::TooDeep));
    }

    #[test]
    fn encoded_size_must_match() {
        let l = NvList { pairs: vec![("a".into(), Value::U64(1))] };
        let mut p = pack(&l);
        p[12..16].copy_from_slice(&99u32.to_be_bytes());
        assert!(matches!(unpack(&p), Err(NvError::SizeMismatch { .. })));
    }

    #[test]
    fn a_label_of_empty_pairs_cannot_take_more_than_its_budget() {
        // 112 KiB of tiny pairs: decoded, each costs more than its bytes on disk.
        let many = NvList { pairs: (0..4000).map(|i| (format!("{i}"), Value::Str(String::new()))).collect() };
        let packed = pack(&many);
        assert!(packed.len() <= 112 * 1024, "{}", packed.len());
        let decoded = unpack(&packed).map(|l| l.heap_bytes());
        assert!(matches!(decoded, Err(NvError::TooBig)) || decoded.unwrap() <= MAX_DECODED);
        let more = NvList { pairs: (0..9000).map(|i| (format!("{i}"), Value::Str(String::new()))).collect() };
        assert_eq!(unpack(&pack(&more)), Err(NvError::TooBig));
        assert!(sample().heap_bytes() < 4096);
    }

    #[test]
    fn bad_utf8_and_non_xdr() {
        let l = NvList { pairs: vec![("ab".into(), Value::U64(1))] };
        let mut p = pack(&l);
        p[24] = 0xff;
        assert!(matches!(unpack(&p), Err(NvError::BadString { .. })));
        let mut q = pack(&l);
        q[0] = 0;
        assert_eq!(unpack(&q), Err(NvError::NotXdr(0)));
    }
}
