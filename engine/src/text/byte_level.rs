//! GPT-2's byte-level alphabet: every byte is written as one printable character in a
//! byte-level BPE vocabulary (`Ġ` for a space). Used to build the tiny reasoner's vocabulary and
//! to read a token's raw bytes back.

use std::sync::OnceLock;

/// The character standing for each byte, indexed by byte.
pub fn byte_chars() -> Vec<char> {
    let printable =
        |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut extra = 0u32;
    (0u32..256)
        .map(|b| {
            if printable(b) {
                char::from_u32(b).unwrap_or('?')
            } else {
                extra += 1;
                char::from_u32(255 + extra).unwrap_or('?')
            }
        })
        .collect()
}

/// The byte a character of the alphabet stands for; `None` for a character outside it.
pub fn byte_of(c: char) -> Option<u8> {
    static TABLE: OnceLock<std::collections::HashMap<char, u8>> = OnceLock::new();
    TABLE
        .get_or_init(|| {
            byte_chars()
                .into_iter()
                .enumerate()
                .map(|(b, c)| (c, b as u8))
                .collect()
        })
        .get(&c)
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alphabet_is_a_bijection_with_gpt2_anchors() {
        let chars = byte_chars();
        let mut sorted = chars.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 256);
        // GPT-2: space is U+0120 (Ġ), newline U+010A (Ċ), printable ASCII stands for itself.
        assert_eq!(chars[b' ' as usize], '\u{120}');
        assert_eq!(chars[b'\n' as usize], '\u{10a}');
        assert_eq!(chars[b'A' as usize], 'A');
        assert_eq!(byte_of('\u{120}'), Some(b' '));
        assert_eq!(byte_of(chars[0xE2]), Some(0xE2));
        assert_eq!(byte_of('\u{4e00}'), None);
    }
}
