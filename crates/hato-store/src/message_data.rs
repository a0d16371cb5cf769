//! [`MessageData`]: the octets of a message handed to the store, in memory or partly in a spool
//! file, so that a large message is streamed into the store instead of being held in memory.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use crate::{Result, StoreError};

/// How much of a spool file is read at a time.
const CHUNK: usize = 256 * 1024;

/// A message: `head`, then the first `spooled` octets of a spool file, then `tail`.
///
/// The SMTP server keeps a large message in a spool file as it arrives and adds its own header
/// lines in front (`head`); the store copies the pieces straight into the blob, so the message
/// is never whole in memory. Small messages are one `Vec` (`MessageData::from`).
#[derive(Debug, Clone, Default)]
pub struct MessageData {
    head: Vec<u8>,
    spool: Option<(Arc<File>, u64)>,
    tail: Vec<u8>,
}

impl MessageData {
    /// `head`, the first `len` octets of `file`, then `tail`. The file is read with positioned
    /// reads (it may be read more than once, from any thread).
    pub fn spooled(
        head: Vec<u8>,
        file: impl Into<Arc<File>>,
        len: u64,
        tail: Vec<u8>,
    ) -> MessageData {
        MessageData {
            head,
            spool: Some((file.into(), len)),
            tail,
        }
    }

    /// The size in octets.
    pub fn len(&self) -> u64 {
        self.head.len() as u64 + self.spool.as_ref().map_or(0, |s| s.1) + self.tail.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The whole message when it is one piece in memory.
    pub fn as_slice(&self) -> Option<&[u8]> {
        match (&self.spool, self.head.is_empty(), self.tail.is_empty()) {
            (None, _, true) => Some(&self.head),
            (None, true, false) => Some(&self.tail),
            _ => None,
        }
    }

    /// The first octets (at most `max`), e.g. to read the header section.
    pub fn prefix(&self, max: usize) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.for_each_chunk(|c| {
            let room = max - out.len();
            out.extend_from_slice(&c[..c.len().min(room)]);
            Ok(out.len() < max)
        })?;
        Ok(out)
    }

    /// Calls `f` with the message in order, in pieces; `f` returns whether it wants more.
    pub fn for_each_chunk(&self, mut f: impl FnMut(&[u8]) -> Result<bool>) -> Result<()> {
        if !self.head.is_empty() && !f(&self.head)? {
            return Ok(());
        }
        if let Some((file, len)) = &self.spool {
            let mut buf = vec![0u8; CHUNK.min(usize::try_from(*len).unwrap_or(CHUNK))];
            let mut at = 0u64;
            while at < *len {
                let want = usize::try_from(len - at).unwrap_or(CHUNK).min(CHUNK);
                let n = file.read_at(&mut buf[..want], at).map_err(|e| {
                    StoreError::Backend(format!("reading the message's spool file: {e}"))
                })?;
                if n == 0 {
                    return Err(StoreError::Backend(format!(
                        "the message's spool file ends at {at} of {len} octets"
                    )));
                }
                if !f(&buf[..n])? {
                    return Ok(());
                }
                at += n as u64;
            }
        }
        if !self.tail.is_empty() {
            f(&self.tail)?;
        }
        Ok(())
    }

    /// The whole message in memory (tests, small messages).
    pub fn to_vec(&self) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(usize::try_from(self.len()).unwrap_or(0));
        self.for_each_chunk(|c| {
            out.extend_from_slice(c);
            Ok(true)
        })?;
        Ok(out)
    }
}

impl From<Vec<u8>> for MessageData {
    fn from(data: Vec<u8>) -> MessageData {
        MessageData {
            head: data,
            spool: None,
            tail: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn spooled(head: &[u8], file: &[u8], len: u64, tail: &[u8]) -> MessageData {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(file).unwrap();
        MessageData::spooled(head.to_vec(), f, len, tail.to_vec())
    }

    #[test]
    fn pieces_in_order() {
        let big: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
        let m = spooled(b"Received: x\r\n", &big, big.len() as u64, b"end\r\n");
        assert_eq!(m.len(), 13 + 600_000 + 5);
        assert_eq!(m.as_slice(), None);
        assert_eq!(
            m.to_vec().unwrap(),
            [&b"Received: x\r\n"[..], &big, b"end\r\n"].concat()
        );
        assert_eq!(m.prefix(15).unwrap(), b"Received: x\r\n\0\x01");
        // Only the first `len` octets of the file belong to the message.
        let m = spooled(b"", b"abcdef", 3, b"");
        assert_eq!(m.to_vec().unwrap(), b"abc");
        let m = MessageData::from(b"plain".to_vec());
        assert_eq!((m.as_slice(), m.len()), (Some(&b"plain"[..]), 5));
    }

    #[test]
    fn a_short_spool_file_is_an_error() {
        let m = spooled(b"h", b"abc", 10, b"");
        let e = m.to_vec().unwrap_err().to_string();
        assert!(e.contains("spool file ends at 3 of 10"), "{e}");
    }
}
