//! Dequantization of ggml's block formats to `f32`, following ggml's reference C code
//! (`ggml-quants.c`); large tensors in parallel chunks on the rayon pool.
//!
//! Over 800 lines as one cohesive thing: one decoder per block format, and below them a test of
//! each (about half the file) against values from the format definition and the `gguf` package.

use half::{bf16, f16};
use rayon::prelude::*;

use super::GgmlType;
use super::types::{QK_K, SUPPORTED_TYPES};

/// Tensors with more elements than this are dequantized on the rayon pool.
const PARALLEL_THRESHOLD: usize = 1 << 16;

/// Elements handed to one rayon task when dequantizing in parallel (a multiple of every block).
const PARALLEL_CHUNK: usize = 1 << 14;

/// Why [`dequantize`] refused a buffer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DequantizeError {
    /// The type has no dequantizer here.
    #[error("ggml type {} is not supported (supported: {SUPPORTED_TYPES})", .0.describe())]
    Unsupported(GgmlType),
    /// `n_elements` is not a whole number of the type's blocks.
    #[error("{n_elements} elements are not a whole number of {kind} blocks of {block}")]
    PartialBlock {
        kind: GgmlType,
        n_elements: usize,
        block: usize,
    },
    /// The input or output buffer has the wrong length.
    #[error(
        "{kind}: {n_elements} elements need {expected_bytes} input bytes and {n_elements} outputs, got {bytes} bytes and {outputs} outputs"
    )]
    Length {
        kind: GgmlType,
        n_elements: usize,
        expected_bytes: usize,
        bytes: usize,
        outputs: usize,
    },
}

// ---------------------------------------------------------------------------------------------
// Dequantization (ggml-quants.c reference semantics).
// ---------------------------------------------------------------------------------------------

/// Dequantizes `n_elements` values of ggml type `kind` from `bytes` into `out`.
///
/// `bytes` must hold exactly the blocks for `n_elements` (a multiple of the type's block size)
/// and `out` exactly `n_elements` slots. Large buffers are split into block ranges and
/// dequantized on the rayon pool.
pub fn dequantize(
    kind: GgmlType,
    bytes: &[u8],
    n_elements: usize,
    out: &mut [f32],
) -> Result<(), DequantizeError> {
    if !kind.can_dequantize() {
        return Err(DequantizeError::Unsupported(kind));
    }
    let (block, block_bytes) = kind
        .block_layout()
        .ok_or(DequantizeError::Unsupported(kind))?;
    if !n_elements.is_multiple_of(block) {
        return Err(DequantizeError::PartialBlock {
            kind,
            n_elements,
            block,
        });
    }
    let expected_bytes = n_elements / block * block_bytes;
    if bytes.len() != expected_bytes || out.len() != n_elements {
        return Err(DequantizeError::Length {
            kind,
            n_elements,
            expected_bytes,
            bytes: bytes.len(),
            outputs: out.len(),
        });
    }
    if n_elements > PARALLEL_THRESHOLD {
        // PARALLEL_CHUNK is a multiple of every block size (1, 32 and 256).
        let chunk_bytes = PARALLEL_CHUNK / block * block_bytes;
        out.par_chunks_mut(PARALLEL_CHUNK)
            .zip(bytes.par_chunks(chunk_bytes))
            .for_each(|(o, b)| dequantize_serial(kind, b, o));
    } else {
        dequantize_serial(kind, bytes, out);
    }
    Ok(())
}

/// Dequantizes whole blocks; lengths are already validated.
fn dequantize_serial(kind: GgmlType, bytes: &[u8], out: &mut [f32]) {
    use GgmlType::*;
    match kind {
        F32 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        F16 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = f16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        BF16 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = bf16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        F64 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(8)) {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                *o = f64::from_le_bytes(a) as f32;
            }
        }
        Q4_0 => blocks(bytes, out, 18, 32, block_q4_0),
        Q4_1 => blocks(bytes, out, 20, 32, block_q4_1),
        Q5_0 => blocks(bytes, out, 22, 32, block_q5_0),
        Q5_1 => blocks(bytes, out, 24, 32, block_q5_1),
        Q8_0 => blocks(bytes, out, 34, 32, block_q8_0),
        Q2_K => blocks(bytes, out, 84, QK_K, block_q2_k),
        Q3_K => blocks(bytes, out, 110, QK_K, block_q3_k),
        Q4_K => blocks(bytes, out, 144, QK_K, block_q4_k),
        Q5_K => blocks(bytes, out, 176, QK_K, block_q5_k),
        Q6_K => blocks(bytes, out, 210, QK_K, block_q6_k),
        Q8_K => blocks(bytes, out, 292, QK_K, block_q8_k),
        // `dequantize` rejects everything else before getting here.
        _ => out.fill(f32::NAN),
    }
}

/// Runs `f` over each `(block bytes, block outputs)` pair.
fn blocks(
    bytes: &[u8],
    out: &mut [f32],
    block_bytes: usize,
    block: usize,
    f: fn(&[u8], &mut [f32]),
) {
    for (b, o) in bytes
        .chunks_exact(block_bytes)
        .zip(out.chunks_exact_mut(block))
    {
        f(b, o);
    }
}

/// A little-endian `f16` at `b[at..at + 2]`, widened.
fn half_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// Q4_0: `d: f16`, 16 bytes of nibbles; `x = (q - 8) * d`, low nibbles are elements 0..16,
/// high nibbles 16..32.
fn block_q4_0(b: &[u8], y: &mut [f32]) {
    let d = half_at(b, 0);
    let qs = &b[2..18];
    for j in 0..16 {
        y[j] = (i32::from(qs[j] & 0x0F) - 8) as f32 * d;
        y[j + 16] = (i32::from(qs[j] >> 4) - 8) as f32 * d;
    }
}

/// Q4_1: `d: f16`, `m: f16`, 16 bytes of nibbles; `x = q * d + m`.
fn block_q4_1(b: &[u8], y: &mut [f32]) {
    let d = half_at(b, 0);
    let m = half_at(b, 2);
    let qs = &b[4..20];
    for j in 0..16 {
        y[j] = f32::from(qs[j] & 0x0F) * d + m;
        y[j + 16] = f32::from(qs[j] >> 4) * d + m;
    }
}

/// Q5_0: `d: f16`, `qh: u32` (fifth bits), 16 bytes of nibbles; `x = (q - 16) * d`.
fn block_q5_0(b: &[u8], y: &mut [f32]) {
    let d = half_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let qs = &b[6..22];
    for j in 0..16 {
        let h0 = ((qh >> j) & 1) << 4;
        let h1 = ((qh >> (j + 16)) & 1) << 4;
        y[j] = ((u32::from(qs[j] & 0x0F) | h0) as i32 - 16) as f32 * d;
        y[j + 16] = ((u32::from(qs[j] >> 4) | h1) as i32 - 16) as f32 * d;
    }
}

/// Q5_1: `d: f16`, `m: f16`, `qh: u32`, 16 bytes of nibbles; `x = q * d + m`.
fn block_q5_1(b: &[u8], y: &mut [f32]) {
    let d = half_at(b, 0);
    let m = half_at(b, 2);
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let qs = &b[8..24];
    for j in 0..16 {
        let h0 = ((qh >> j) & 1) << 4;
        let h1 = ((qh >> (j + 16)) & 1) << 4;
        y[j] = (u32::from(qs[j] & 0x0F) | h0) as f32 * d + m;
        y[j + 16] = (u32::from(qs[j] >> 4) | h1) as f32 * d + m;
    }
}

/// Q8_0: `d: f16`, 32 × `i8`; `x = q * d`.
fn block_q8_0(b: &[u8], y: &mut [f32]) {
    let d = half_at(b, 0);
    for (o, &q) in y.iter_mut().zip(&b[2..34]) {
        *o = f32::from(q as i8) * d;
    }
}

/// Scale and min `j` (0..8) of a Q4_K/Q5_K super-block from its 12 packed bytes of 6-bit
/// values (ggml's `get_scale_min_k4`).
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Q2_K: `scales[16]` (low nibble scale, high nibble min), `qs[64]` (2-bit), `d`, `dmin`.
fn block_q2_k(b: &[u8], y: &mut [f32]) {
    let scales = &b[0..16];
    let d = half_at(b, 80);
    let dmin = half_at(b, 82);
    let mut is = 0;
    let mut o = 0;
    for n in 0..2 {
        let q = &b[16 + 32 * n..16 + 32 * (n + 1)];
        for shift in [0u32, 2, 4, 6] {
            for half in 0..2 {
                let sc = scales[is];
                is += 1;
                let dl = d * f32::from(sc & 0x0F);
                let ml = dmin * f32::from(sc >> 4);
                for l in 0..16 {
                    y[o] = dl * f32::from((q[l + 16 * half] >> shift) & 3) - ml;
                    o += 1;
                }
            }
        }
    }
}

/// Q3_K: `hmask[32]` (third bits), `qs[64]` (low 2 bits), `scales[12]` (16 × 6-bit, offset
/// by 32), `d`. A clear hmask bit subtracts 4.
fn block_q3_k(b: &[u8], y: &mut [f32]) {
    let hm = &b[0..32];
    let s = &b[96..108];
    let d = half_at(b, 108);
    let mut sc = [0i32; 16];
    for k in 0..4 {
        sc[k] = i32::from((s[k] & 0x0F) | ((s[8 + k] & 3) << 4)) - 32;
        sc[4 + k] = i32::from((s[4 + k] & 0x0F) | (((s[8 + k] >> 2) & 3) << 4)) - 32;
        sc[8 + k] = i32::from((s[k] >> 4) | (((s[8 + k] >> 4) & 3) << 4)) - 32;
        sc[12 + k] = i32::from((s[4 + k] >> 4) | (((s[8 + k] >> 6) & 3) << 4)) - 32;
    }
    let mut is = 0;
    let mut o = 0;
    let mut m: u8 = 1;
    for n in 0..2 {
        let q = &b[32 + 32 * n..32 + 32 * (n + 1)];
        for shift in [0u32, 2, 4, 6] {
            for half in 0..2 {
                let dl = d * sc[is] as f32;
                is += 1;
                for l in 0..16 {
                    let idx = l + 16 * half;
                    let low = i32::from((q[idx] >> shift) & 3);
                    let high = if hm[idx] & m != 0 { 0 } else { 4 };
                    y[o] = dl * (low - high) as f32;
                    o += 1;
                }
            }
            m = m.wrapping_shl(1);
        }
    }
}

/// Q4_K: `d`, `dmin`, `scales[12]` (8 × 6-bit scale/min pairs), `qs[128]` nibbles; each
/// 64-element group uses low nibbles with one scale/min pair, then high nibbles with the next.
fn block_q4_k(b: &[u8], y: &mut [f32]) {
    let d = half_at(b, 0);
    let dmin = half_at(b, 2);
    let scales = &b[4..16];
    let qs = &b[16..144];
    for g in 0..4 {
        let (sc1, m1) = scale_min_k4(2 * g, scales);
        let (sc2, m2) = scale_min_k4(2 * g + 1, scales);
        let (d1, m1) = (d * f32::from(sc1), dmin * f32::from(m1));
        let (d2, m2) = (d * f32::from(sc2), dmin * f32::from(m2));
        let q = &qs[32 * g..32 * (g + 1)];
        let y = &mut y[64 * g..64 * (g + 1)];
        for l in 0..32 {
            y[l] = d1 * f32::from(q[l] & 0x0F) - m1;
            y[l + 32] = d2 * f32::from(q[l] >> 4) - m2;
        }
    }
}

/// Q5_K: like Q4_K plus `qh[32]` holding each element's fifth bit.
fn block_q5_k(b: &[u8], y: &mut [f32]) {
    let d = half_at(b, 0);
    let dmin = half_at(b, 2);
    let scales = &b[4..16];
    let qh = &b[16..48];
    let qs = &b[48..176];
    for g in 0..4 {
        let (sc1, m1) = scale_min_k4(2 * g, scales);
        let (sc2, m2) = scale_min_k4(2 * g + 1, scales);
        let (d1, m1) = (d * f32::from(sc1), dmin * f32::from(m1));
        let (d2, m2) = (d * f32::from(sc2), dmin * f32::from(m2));
        let u1 = 1u8 << (2 * g);
        let u2 = 2u8 << (2 * g);
        let q = &qs[32 * g..32 * (g + 1)];
        let y = &mut y[64 * g..64 * (g + 1)];
        for l in 0..32 {
            let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
            let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
            y[l] = d1 * f32::from((q[l] & 0x0F) + h1) - m1;
            y[l + 32] = d2 * f32::from((q[l] >> 4) + h2) - m2;
        }
    }
}

/// Q6_K: `ql[128]` (low 4 bits), `qh[64]` (high 2 bits), `scales[16]` (`i8`), `d`;
/// `x = d * scale * (q - 32)`.
fn block_q6_k(b: &[u8], y: &mut [f32]) {
    let ql_all = &b[0..128];
    let qh_all = &b[128..192];
    let sc_all = &b[192..208];
    let d = half_at(b, 208);
    for n in 0..2 {
        let ql = &ql_all[64 * n..64 * (n + 1)];
        let qh = &qh_all[32 * n..32 * (n + 1)];
        let sc = &sc_all[8 * n..8 * (n + 1)];
        let y = &mut y[128 * n..128 * (n + 1)];
        for l in 0..32 {
            let is = l / 16;
            let q1 = i32::from((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) - 32;
            let q2 = i32::from((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
            let q3 = i32::from((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            let q4 = i32::from((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            let s = |k: usize| f32::from(sc[k] as i8);
            y[l] = d * s(is) * q1 as f32;
            y[l + 32] = d * s(is + 2) * q2 as f32;
            y[l + 64] = d * s(is + 4) * q3 as f32;
            y[l + 96] = d * s(is + 6) * q4 as f32;
        }
    }
}

/// Q8_K: `d: f32`, 256 × `i8`, then 16 `i16` block sums (unused here); `x = q * d`.
fn block_q8_k(b: &[u8], y: &mut [f32]) {
    let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    for (o, &q) in y.iter_mut().zip(&b[4..260]) {
        *o = f32::from(q as i8) * d;
    }
}

#[cfg(test)]
// Reference values are printed by Python at full f64 precision; they are exact in f32.
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::excessive_precision)]
pub(super) mod tests {
    use super::*;

    // -----------------------------------------------------------------------------------------
    // Dequantization: hand-built blocks, expected values computed from the format definition.
    // -----------------------------------------------------------------------------------------

    pub(in crate::formats::gguf) fn f16_bytes(v: f32) -> [u8; 2] {
        f16::from_f32(v).to_le_bytes()
    }

    fn deq(kind: GgmlType, bytes: &[u8], n: usize) -> Vec<f32> {
        let mut out = vec![0f32; n];
        dequantize(kind, bytes, n, &mut out).unwrap();
        out
    }

    #[test]
    fn float_types() {
        let vals = [1.0f32, -2.5, 0.15625, 65504.0];
        let f32_bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(deq(GgmlType::F32, &f32_bytes, 4), vals);
        let f16b: Vec<u8> = vals.iter().flat_map(|&v| f16_bytes(v)).collect();
        assert_eq!(deq(GgmlType::F16, &f16b, 4), vals);
        // bf16 is the high half of an f32.
        let bf16b: Vec<u8> = vals[..3]
            .iter()
            .flat_map(|v| [v.to_le_bytes()[2], v.to_le_bytes()[3]])
            .collect();
        assert_eq!(deq(GgmlType::BF16, &bf16b, 3), &vals[..3]);
        let f64b: Vec<u8> = vals
            .iter()
            .flat_map(|&v| f64::from(v).to_le_bytes())
            .collect();
        assert_eq!(deq(GgmlType::F64, &f64b, 4), vals);
    }

    #[test]
    fn q4_0_block() {
        // d = 0.5; byte j holds element j in its low nibble and element j + 16 in its high one.
        let mut b = f16_bytes(0.5).to_vec();
        b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let y = deq(GgmlType::Q4_0, &b, 32);
        for j in 0..16 {
            assert_eq!(y[j], (j as f32 - 8.0) * 0.5);
            assert_eq!(y[j + 16], ((15 - j) as f32 - 8.0) * 0.5);
        }
    }

    #[test]
    fn q4_1_block() {
        let mut b = f16_bytes(0.25).to_vec();
        b.extend(f16_bytes(-1.0));
        b.extend((0..16u8).map(|j| j | ((j ^ 5) << 4)));
        let y = deq(GgmlType::Q4_1, &b, 32);
        for j in 0..16 {
            assert_eq!(y[j], j as f32 * 0.25 - 1.0);
            assert_eq!(y[j + 16], (j ^ 5) as f32 * 0.25 - 1.0);
        }
    }

    #[test]
    fn q5_0_block() {
        let qh: u32 = 0xA5A5_0F0F;
        let mut b = f16_bytes(1.0).to_vec();
        b.extend(qh.to_le_bytes());
        b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let y = deq(GgmlType::Q5_0, &b, 32);
        for j in 0..16 {
            let hi0 = (qh >> j) & 1;
            let hi1 = (qh >> (j + 16)) & 1;
            assert_eq!(y[j], (j as f32 + 16.0 * hi0 as f32) - 16.0);
            assert_eq!(y[j + 16], ((15 - j) as f32 + 16.0 * hi1 as f32) - 16.0);
        }
    }

    #[test]
    fn q8_0_block() {
        let mut b = f16_bytes(0.125).to_vec();
        b.extend((0..32i32).map(|j| (j - 16) as i8 as u8));
        let y = deq(GgmlType::Q8_0, &b, 32);
        for j in 0..32 {
            assert_eq!(y[j], (j as f32 - 16.0) * 0.125);
        }
    }

    #[test]
    fn q8_k_block() {
        let mut b = 0.75f32.to_le_bytes().to_vec();
        b.extend((0..256i32).map(|j| (j - 128) as i8 as u8));
        b.extend([0u8; 32]);
        let y = deq(GgmlType::Q8_K, &b, 256);
        for j in 0..256 {
            assert_eq!(y[j], (j as f32 - 128.0) * 0.75);
        }
    }

    /// Packs eight 6-bit (scale, min) pairs the way ggml's k-quants (Q4_K, Q5_K) store them:
    /// pairs 0..4 in the low 6 bits of bytes 0..4 (scales) and 4..8 (mins); pairs 4..8 split
    /// into a low nibble in bytes 8..12 (scale low, min high) and their top two bits in the
    /// spare bits 6..8 of bytes 0..4 (scales) and 4..8 (mins).
    fn pack_k4_scales(sc: [u8; 8], mn: [u8; 8]) -> [u8; 12] {
        let mut p = [0u8; 12];
        for j in 0..4 {
            p[j] = sc[j] | ((sc[j + 4] >> 4) << 6);
            p[j + 4] = mn[j] | ((mn[j + 4] >> 4) << 6);
            p[j + 8] = (sc[j + 4] & 0x0F) | ((mn[j + 4] & 0x0F) << 4);
        }
        p
    }

    #[test]
    fn q4_k_block() {
        let sc = [1u8, 5, 10, 63, 33, 17, 2, 48];
        let mn = [0u8, 3, 7, 62, 41, 9, 60, 1];
        let (d, dmin) = (0.5f32, 0.25f32);
        let qs: Vec<u8> = (0..128u32).map(|i| ((i * 7 + 3) & 0xFF) as u8).collect();
        let mut b = f16_bytes(d).to_vec();
        b.extend(f16_bytes(dmin));
        b.extend(pack_k4_scales(sc, mn));
        b.extend(&qs);
        let y = deq(GgmlType::Q4_K, &b, 256);
        for e in 0..256 {
            // 64-element groups: first 32 from low nibbles (sub-block 2g), next 32 from the
            // high nibbles of the same 32 bytes (sub-block 2g + 1).
            let (g, r) = (e / 64, e % 64);
            let (sub, q) = if r < 32 {
                (2 * g, qs[32 * g + r] & 0x0F)
            } else {
                (2 * g + 1, qs[32 * g + r - 32] >> 4)
            };
            let expected = d * f32::from(sc[sub]) * f32::from(q) - dmin * f32::from(mn[sub]);
            assert!(
                (y[e] - expected).abs() < 1e-6,
                "element {e}: {} vs {expected}",
                y[e]
            );
        }
    }

    #[test]
    fn q6_k_block() {
        let scales: [i8; 16] = [-3, 5, 7, -1, 2, 100, -128, 9, 1, 2, 3, 4, -5, -6, 7, 8];
        let d = 0.5f32;
        let q6: Vec<u8> = (0..256u32).map(|e| ((e * 37 + 11) % 64) as u8).collect();
        let (mut ql, mut qh) = ([0u8; 128], [0u8; 64]);
        // Each 128-element half: element 32k + l keeps its low 4 bits in byte l (k = 0, 2) or
        // l + 32 (k = 1, 3) of the half's 64 `ql` bytes (low nibble for k < 2), and its top two
        // bits at bits 2k..2k+2 of `qh` byte l.
        for n in 0..2 {
            for l in 0..32 {
                for k in 0..4 {
                    let v = q6[128 * n + 32 * k + l];
                    let byte = 64 * n + l + if k % 2 == 1 { 32 } else { 0 };
                    ql[byte] |= if k < 2 { v & 0x0F } else { (v & 0x0F) << 4 };
                    qh[32 * n + l] |= (v >> 4) << (2 * k);
                }
            }
        }
        let mut b = ql.to_vec();
        b.extend(qh);
        b.extend(scales.iter().map(|&s| s as u8));
        b.extend(f16_bytes(d));
        let y = deq(GgmlType::Q6_K, &b, 256);
        for e in 0..256 {
            // Scales cover 16 consecutive elements.
            let expected = d * f32::from(scales[e / 16]) * (f32::from(q6[e]) - 32.0);
            assert_eq!(y[e], expected, "element {e}");
        }
    }

    /// Deterministic bytes (a 64-bit LCG); the same generator produced the reference values.
    fn lcg_bytes(seed: u64, n: usize) -> Vec<u8> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 33) & 0xFF) as u8
            })
            .collect()
    }

    /// Two pseudo-random blocks of `kind`, with the super-block scales (`d`, `dmin`) set to
    /// 0.0123·(k+1) and 0.0045·(k+1) so that they are finite.
    fn random_blocks(kind: GgmlType, seed: u64) -> Vec<u8> {
        let (_, block_bytes) = kind.block_layout().unwrap();
        let f16_fields: &[usize] = match kind {
            GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => &[0],
            GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
            GgmlType::Q2_K => &[80, 82],
            GgmlType::Q3_K => &[108],
            GgmlType::Q6_K => &[208],
            _ => unreachable!(),
        };
        let mut out = Vec::new();
        for k in 0..2u64 {
            let mut b = lcg_bytes(seed * 1000 + k, block_bytes);
            for (i, &off) in f16_fields.iter().enumerate() {
                let v = if i == 0 { 0.0123 } else { 0.0045 } * (k + 1) as f32;
                b[off..off + 2].copy_from_slice(&f16_bytes(v));
            }
            out.extend(b);
        }
        out
    }

    /// Reference values from gguf-py 0.19.0 (`gguf.quants.dequantize`, a numpy port of
    /// ggml-quants.c) applied to the same `random_blocks` bytes (script: LCG above, f16 scales
    /// written with numpy.float16): (type, seed, sum, sum of |x|, [(index, value)]).
    #[allow(clippy::type_complexity)]
    const GGUF_PY_REFERENCE: &[(GgmlType, u64, f64, f64, &[(usize, f64)])] = &[
        (
            GgmlType::Q4_0,
            1,
            0.873199462890625,
            5.177703857421875,
            &[
                (0, -0.07379150390625),
                (1, 0.07379150390625),
                (15, 0.07379150390625),
                (16, -0.02459716796875),
                (17, 0.07379150390625),
                (31, -0.012298583984375),
                (32, 0.12298583984375),
                (63, 0.0),
            ],
        ),
        (
            GgmlType::Q4_1,
            2,
            10.676849365234375,
            10.676849365234375,
            &[
                (0, 0.1766815185546875),
                (1, 0.1889801025390625),
                (15, 0.0290985107421875),
                (16, 0.0536956787109375),
                (17, 0.0659942626953125),
                (31, 0.1766815185546875),
                (32, 0.279571533203125),
                (63, 0.377960205078125),
            ],
        ),
        (
            GgmlType::Q5_0,
            3,
            -0.66412353515625,
            8.8057861328125,
            &[
                (0, 0.012298583984375),
                (1, 0.0491943359375),
                (15, 0.0),
                (16, 0.159881591796875),
                (17, 0.135284423828125),
                (31, -0.036895751953125),
                (32, 0.07379150390625),
                (63, 0.0491943359375),
            ],
        ),
        (
            GgmlType::Q5_1,
            4,
            21.0445556640625,
            21.0445556640625,
            &[
                (0, 0.3242645263671875),
                (1, 0.2135772705078125),
                (15, 0.0782928466796875),
                (16, 0.3488616943359375),
                (17, 0.0782928466796875),
                (31, 0.2504730224609375),
                (32, 0.476348876953125),
                (63, 0.476348876953125),
            ],
        ),
        (
            GgmlType::Q8_0,
            5,
            -0.12298583984375,
            85.794921875,
            &[
                (0, -1.119171142578125),
                (1, -0.51654052734375),
                (15, 0.59033203125),
                (16, 1.54962158203125),
                (17, 1.561920166015625),
                (31, 0.98388671875),
                (32, 2.38592529296875),
                (63, 1.20526123046875),
            ],
        ),
        (
            GgmlType::Q2_K,
            6,
            81.41867065429688,
            100.25442504882812,
            &[
                (0, 0.0578765869140625),
                (1, 0.0578765869140625),
                (15, -0.0405120849609375),
                (16, 0.099273681640625),
                (17, 0.099273681640625),
                (31, 0.23455810546875),
                (32, -0.0675201416015625),
                (63, -0.0225067138671875),
                (64, -0.0045013427734375),
                (100, -0.063018798828125),
                (127, -0.045013427734375),
                (128, 0.5039215087890625),
                (200, 0.1340789794921875),
                (255, 0.0623779296875),
                (256, 0.64788818359375),
                (300, 0.048553466796875),
                (511, 0.084564208984375),
            ],
        ),
        (
            GgmlType::Q3_K,
            7,
            -78.19439697265625,
            375.549560546875,
            &[
                (0, -0.2459716796875),
                (1, -0.2459716796875),
                (15, -0.98388671875),
                (16, 0.3443603515625),
                (17, 1.0330810546875),
                (31, -0.3443603515625),
                (32, -0.356658935546875),
                (63, -0.0),
                (64, -1.3282470703125),
                (100, -1.1806640625),
                (127, -0.098388671875),
                (128, 0.0),
                (200, 0.110687255859375),
                (255, 0.31976318359375),
                (256, -0.36895751953125),
                (300, -0.61492919921875),
                (511, 0.295166015625),
            ],
        ),
        (
            GgmlType::Q4_K,
            8,
            2544.0025329589844,
            2553.8726806640625,
            &[
                (0, 5.30029296875),
                (1, 3.45550537109375),
                (15, 6.5301513671875),
                (16, 5.30029296875),
                (17, 0.380859375),
                (31, 5.91522216796875),
                (32, 7.0560150146484375),
                (63, 4.4733123779296875),
                (64, 5.7824249267578125),
                (100, 0.6451568603515625),
                (127, 3.6214141845703125),
                (128, 0.9936981201171875),
                (200, 9.133590698242188),
                (255, 2.932373046875),
                (256, 7.0849609375),
                (300, 0.68389892578125),
                (511, 21.22430419921875),
            ],
        ),
        (
            GgmlType::Q5_K,
            9,
            4828.287658691406,
            4834.294036865234,
            &[
                (0, 7.5365447998046875),
                (1, 10.119247436523438),
                (15, 9.258346557617188),
                (16, 12.271499633789062),
                (17, 0.6493377685546875),
                (31, 5.8147430419921875),
                (32, 0.9205474853515625),
                (63, 0.0350494384765625),
                (64, 1.45782470703125),
                (100, 5.313873291015625),
                (127, 1.993255615234375),
                (128, 10.27679443359375),
                (200, 0.4769134521484375),
                (255, 13.948043823242188),
                (256, 4.621063232421875),
                (300, -0.504150390625),
                (511, 18.80413818359375),
            ],
        ),
        (
            GgmlType::Q6_K,
            10,
            -44.20111083984375,
            8348.131225585938,
            &[
                (0, -5.53436279296875),
                (1, 3.32061767578125),
                (15, 2.58270263671875),
                (16, -28.594207763671875),
                (17, -0.922393798828125),
                (31, 16.60308837890625),
                (32, -23.133636474609375),
                (63, -38.568359375),
                (64, -11.179412841796875),
                (100, -21.03057861328125),
                (127, -3.6895751953125),
                (128, -11.622161865234375),
                (200, -25.70404052734375),
                (255, 5.1162109375),
                (256, -1.0330810546875),
                (300, -22.727783203125),
                (511, -27.1552734375),
            ],
        ),
    ];

    #[test]
    fn matches_gguf_py_on_random_blocks() {
        for &(kind, seed, sum, abs_sum, picks) in GGUF_PY_REFERENCE {
            let bytes = random_blocks(kind, seed);
            let n = 2 * kind.block_layout().unwrap().0;
            let y = deq(kind, &bytes, n);
            let got_sum: f64 = y.iter().map(|&v| f64::from(v)).sum();
            let got_abs: f64 = y.iter().map(|&v| f64::from(v).abs()).sum();
            let tol = 1e-5 * abs_sum.max(1.0);
            assert!(
                (got_sum - sum).abs() < tol,
                "{kind}: sum {got_sum} vs {sum}"
            );
            assert!(
                (got_abs - abs_sum).abs() < tol,
                "{kind}: |sum| {got_abs} vs {abs_sum}"
            );
            for &(i, v) in picks {
                assert!(
                    (f64::from(y[i]) - v).abs() < 1e-5,
                    "{kind}[{i}]: {} vs {v}",
                    y[i]
                );
            }
        }
    }

    #[test]
    fn parallel_path_equals_serial() {
        // More than PARALLEL_THRESHOLD elements, with a tail chunk shorter than the others.
        let kind = GgmlType::Q4_K;
        let n_blocks = PARALLEL_THRESHOLD / QK_K * 2 + 3;
        let mut bytes = Vec::new();
        for i in 0..n_blocks / 2 + 1 {
            bytes.extend(random_blocks(kind, 100 + i as u64));
        }
        bytes.truncate(n_blocks * 144);
        let n = n_blocks * QK_K;
        let par = deq(kind, &bytes, n);
        let mut ser = vec![0f32; n];
        dequantize_serial(kind, &bytes, &mut ser);
        assert_eq!(par, ser);
    }

    #[test]
    fn dequantize_rejects_bad_input() {
        let mut out = vec![0f32; 32];
        assert_eq!(
            dequantize(GgmlType::IQ2_XXS, &[0; 66], 256, &mut [0f32; 256]),
            Err(DequantizeError::Unsupported(GgmlType::IQ2_XXS))
        );
        assert!(matches!(
            dequantize(GgmlType::Q8_0, &[0; 34], 31, &mut out[..31]),
            Err(DequantizeError::PartialBlock { .. })
        ));
        assert!(matches!(
            dequantize(GgmlType::Q8_0, &[0; 33], 32, &mut out),
            Err(DequantizeError::Length { .. })
        ));
        let msg = DequantizeError::Unsupported(GgmlType::Unknown(99)).to_string();
        assert!(msg.contains("unknown (ggml type 99)"), "{msg}");
    }
}
