//! Helpers for the property tests of the framer, the parser and the session.

use proptest::prelude::*;

/// Cuts `input` into pieces of the given sizes, each clamped to 1..=what is left; what the
/// sizes do not cover comes as one last piece. The reads a driver might see.
pub fn cut<'a>(input: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut pieces = Vec::new();
    let mut rest = input;
    let mut sizes = sizes.iter();
    while !rest.is_empty() {
        let n = sizes
            .next()
            .copied()
            .unwrap_or(rest.len())
            .clamp(1, rest.len());
        let (piece, tail) = rest.split_at(n);
        pieces.push(piece);
        rest = tail;
    }
    pieces
}

/// A piece of random input: one of `fixed` (each as likely as either of the others), a
/// string matching the regex `printable`, or up to `noise - 1` arbitrary bytes.
pub fn piece(
    fixed: &'static [&'static [u8]],
    printable: &'static str,
    noise: usize,
) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        fixed.len() as u32 => proptest::sample::select(fixed).prop_map(<[u8]>::to_vec),
        1 => printable.prop_map(String::into_bytes),
        1 => proptest::collection::vec(any::<u8>(), 0..noise),
    ]
}
