//! A minimal GGUF v3 writer: typed metadata and tensors of any ggml type id, laid out as
//! [`super::GgufFile`] reads them. The studio reads models in GGUF and writes none; this makes
//! the small files the tests read, well-formed or deliberately broken, so the unit tests and
//! `tests/bad_input.rs` share one writer.

/// A metadata value.
pub enum MetaValue<'a> {
    U32(u32),
    F32(f32),
    Bool(bool),
    Str(&'a str),
    Strs(Vec<&'a str>),
    I32s(Vec<i32>),
}

/// A tensor: its name, ggml dims (fastest-varying first), ggml type id and raw data.
pub struct TensorEntry<'a> {
    pub name: &'a str,
    pub dims: Vec<u64>,
    pub kind: u32,
    pub data: Vec<u8>,
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend((s.len() as u64).to_le_bytes());
    buf.extend(s.as_bytes());
}

/// The bytes of a GGUF v3 file with alignment 32 and no trailing padding.
pub fn gguf_bytes(kvs: &[(&str, MetaValue<'_>)], tensors: &[TensorEntry<'_>]) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend((tensors.len() as u64).to_le_bytes());
    b.extend((kvs.len() as u64).to_le_bytes());
    for (key, value) in kvs {
        put_str(&mut b, key);
        match value {
            MetaValue::U32(v) => {
                b.extend(4u32.to_le_bytes());
                b.extend(v.to_le_bytes());
            }
            MetaValue::F32(v) => {
                b.extend(6u32.to_le_bytes());
                b.extend(v.to_le_bytes());
            }
            MetaValue::Bool(v) => {
                b.extend(7u32.to_le_bytes());
                b.push(u8::from(*v));
            }
            MetaValue::Str(s) => {
                b.extend(8u32.to_le_bytes());
                put_str(&mut b, s);
            }
            MetaValue::Strs(items) => {
                b.extend(9u32.to_le_bytes());
                b.extend(8u32.to_le_bytes());
                b.extend((items.len() as u64).to_le_bytes());
                for s in items {
                    put_str(&mut b, s);
                }
            }
            MetaValue::I32s(items) => {
                b.extend(9u32.to_le_bytes());
                b.extend(5u32.to_le_bytes());
                b.extend((items.len() as u64).to_le_bytes());
                for v in items {
                    b.extend(v.to_le_bytes());
                }
            }
        }
    }
    let mut offset = 0u64;
    let mut offsets = Vec::new();
    for t in tensors {
        put_str(&mut b, t.name);
        b.extend((t.dims.len() as u32).to_le_bytes());
        for d in &t.dims {
            b.extend(d.to_le_bytes());
        }
        b.extend(t.kind.to_le_bytes());
        b.extend(offset.to_le_bytes());
        offsets.push(offset);
        offset = (offset + t.data.len() as u64).div_ceil(32) * 32;
    }
    b.resize(b.len().div_ceil(32) * 32, 0);
    let data_start = b.len();
    for (t, off) in tensors.iter().zip(offsets) {
        b.resize(data_start + off as usize, 0);
        b.extend(&t.data);
    }
    b
}

/// Little-endian bytes of f32 values (a type-0 tensor's data).
pub fn f32_data(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
