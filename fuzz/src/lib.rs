//! Helpers shared by the fuzz targets: how the first bytes of an input choose the
//! configuration and how the rest is cut into the pieces a driver would read.

/// Takes the first `n` bytes of `data` as parameters (zero-filled when the input is
/// shorter), returning them and the rest.
pub fn header<const N: usize>(data: &[u8]) -> ([u8; N], &[u8]) {
    let mut h = [0u8; N];
    let n = N.min(data.len());
    h[..n].copy_from_slice(&data[..n]);
    (h, &data[n..])
}

/// Cuts `data` into the reads a driver would see. `how`:
/// - 0: everything at once;
/// - 1: byte by byte;
/// - otherwise: pieces of pseudo-random length 1..=`how` (a small xorshift generator
///   seeded with `how`, so a crash reproduces from the input alone).
pub fn chunks(data: &[u8], how: u8) -> Vec<&[u8]> {
    match how {
        0 => vec![data],
        1 => data.chunks(1).collect(),
        max => {
            let mut state = u32::from(max) | 0x9e37_0000;
            let mut out = Vec::new();
            let mut rest = data;
            while !rest.is_empty() {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let n = (state % u32::from(max)) as usize + 1;
                let (a, b) = rest.split_at(n.min(rest.len()));
                out.push(a);
                rest = b;
            }
            out
        }
    }
}

/// A stream of decisions (bits) for driver answers, taken from header bytes; repeats.
pub struct Decisions {
    bits: u64,
    pos: u32,
}

impl Decisions {
    pub fn new(bytes: &[u8]) -> Decisions {
        let mut bits = 0u64;
        for (i, &b) in bytes.iter().take(8).enumerate() {
            bits |= u64::from(b) << (8 * i);
        }
        Decisions { bits, pos: 0 }
    }

    /// The next decision.
    pub fn decide(&mut self) -> bool {
        let b = self.bits >> (self.pos % 64) & 1 == 1;
        self.pos = self.pos.wrapping_add(1);
        b
    }
}

/// Checks that `out` is a sequence of well-formed SMTP replies (RFC 5321 §4.2): every
/// line is three digits, a space or hyphen, text without CR/LF, CRLF; the lines of a
/// multi-line reply share one code, and the output does not stop inside a reply.
pub fn assert_smtp_replies(out: &[u8]) {
    let mut rest = out;
    let mut open: Option<[u8; 3]> = None;
    while !rest.is_empty() {
        let end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .unwrap_or_else(|| panic!("reply not CRLF-terminated: {:?}", lossy(rest)));
        let line = &rest[..end];
        rest = &rest[end + 2..];
        assert!(line.len() >= 4, "short reply line {:?}", lossy(line));
        assert!(
            line[..3].iter().all(u8::is_ascii_digit) && (b'2'..=b'5').contains(&line[0]),
            "bad reply code {:?}",
            lossy(line)
        );
        assert!(
            matches!(line[3], b' ' | b'-'),
            "bad reply separator {:?}",
            lossy(line)
        );
        assert!(
            !line.contains(&b'\r') && !line.contains(&b'\n'),
            "CR/LF inside a reply line {:?}",
            lossy(line)
        );
        let code = [line[0], line[1], line[2]];
        if let Some(c) = open {
            assert_eq!(c, code, "code changes inside a multi-line reply");
        }
        open = (line[3] == b'-').then_some(code);
    }
    assert!(open.is_none(), "output ends inside a multi-line reply");
}

pub fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(300)]).into_owned()
}
