//! Byte searches over whole files, eight bytes at a time: the binaries are
//! built for size (`opt-level = "s"`), which does not vectorize the plain
//! loops, and these run over every byte of a config file that may be 30 MB.

/// 0x01 in every byte of a word.
const LOW_BITS: u64 = 0x0101_0101_0101_0101;

/// Whether a byte of `word` is `byte` (the classic zero-byte test on `word ^ byte…`).
pub(crate) fn has_byte(word: u64, byte: u8) -> bool {
    let x = word ^ (LOW_BITS * u64::from(byte));
    x.wrapping_sub(LOW_BITS) & !x & (LOW_BITS << 7) != 0
}

/// `word` with every ASCII letter's case bit set (`F` reads as `f`), for
/// [`has_byte`] searches that ignore ASCII case.
pub(crate) fn fold_case_bits(word: u64) -> u64 {
    word | (LOW_BITS * 0x20)
}

/// How many `\n` there are in `text`.
pub(crate) fn count_newlines(text: &[u8]) -> usize {
    let mut chunks = text.chunks_exact(8);
    let mut count = 0;
    for chunk in chunks.by_ref() {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let x = word ^ (LOW_BITS * u64::from(b'\n'));
        // Exactly the zero bytes of x, without the borrow of the classic test.
        let low7 = LOW_BITS * 0x7f;
        let zero = !(((x & low7) + low7) | x | low7);
        count += zero.count_ones() as usize;
    }
    count + chunks.remainder().iter().filter(|&&b| b == b'\n').count()
}

/// Bytes `a` and `b` begin with alike.
pub(crate) fn common_prefix_len(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut at = 0;
    while at + 8 <= n && a[at..at + 8] == b[at..at + 8] {
        at += 8;
    }
    at + a[at..n]
        .iter()
        .zip(&b[at..n])
        .take_while(|(x, y)| x == y)
        .count()
}

/// Bytes `a` and `b` end with alike.
pub(crate) fn common_suffix_len(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let (a, b) = (&a[a.len() - n..], &b[b.len() - n..]);
    let mut same = 0;
    while same + 8 <= n && a[n - same - 8..n - same] == b[n - same - 8..n - same] {
        same += 8;
    }
    same + a[..n - same]
        .iter()
        .rev()
        .zip(b[..n - same].iter().rev())
        .take_while(|(x, y)| x == y)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_common_ends_agree_with_the_plain_loops() {
        let texts: [&[u8]; 6] = [
            b"",
            b"\n",
            b"a\nb\nc",
            b"exten => 1,1,NoOp()\n same => n,Hangup()\n\n",
            b"0123456789abcdef\n0123456789abcdef\n0123",
            b"0123456789abcdef\n0123456789abcdeX\n0123",
        ];
        for a in texts {
            let plain = a.iter().filter(|&&b| b == b'\n').count();
            assert_eq!(count_newlines(a), plain, "{a:?}");
            for b in texts {
                let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
                let suffix = a
                    .iter()
                    .rev()
                    .zip(b.iter().rev())
                    .take_while(|(x, y)| x == y)
                    .count();
                assert_eq!(common_prefix_len(a, b), prefix, "{a:?} {b:?}");
                assert_eq!(common_suffix_len(a, b), suffix, "{a:?} {b:?}");
            }
        }
    }
}
