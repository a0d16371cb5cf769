//! Message data on disk while it arrives: an SMTP session hands over what it holds once it passes
//! [`SPOOL_AT`] (`hato_smtp::Session::take_data`), the driver appends it to an unnamed file in
//! `<data_dir>/spool`, and the store copies the file into the message's blob at the end
//! ([`hato_store::MessageData`]). Memory per connection stays near `SPOOL_AT` whatever the
//! message size. The files have no name (O_TMPFILE), so nothing is left behind by a crash; a
//! message is acknowledged only once the store has it.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hato_store::MessageData;

/// Message data held in memory before it goes to the spool file.
pub const SPOOL_AT: usize = 256 * 1024;

/// The start of a spooled message kept in memory for the checks that read its header section.
const START_KEPT: usize = 64 * 1024;

/// The directory of spool files, made at start-up.
pub fn dir(data_dir: &Path) -> std::io::Result<PathBuf> {
    let dir = data_dir.join("spool");
    std::fs::create_dir_all(&dir)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(dir)
}

/// One connection's spool: the message under way, if part of it went to disk.
pub struct Spool {
    dir: Arc<Path>,
    current: Option<Current>,
}

struct Current {
    file: Arc<File>,
    len: u64,
    start: Vec<u8>,
}

impl Spool {
    pub fn new(dir: Arc<Path>) -> Spool {
        Spool { dir, current: None }
    }

    /// Appends the message octets at offset `at`; `at == 0` starts a new message (what an
    /// earlier, refused one left is dropped).
    pub async fn write(&mut self, at: u64, bytes: Vec<u8>) -> std::io::Result<()> {
        if at == 0 {
            let dir = self.dir.clone();
            let file = tokio::task::spawn_blocking(move || tempfile::tempfile_in(&*dir))
                .await
                .map_err(std::io::Error::other)??;
            self.current = Some(Current {
                file: Arc::new(file),
                len: 0,
                start: bytes[..bytes.len().min(START_KEPT)].to_vec(),
            });
        }
        let Some(cur) = self.current.as_mut().filter(|c| c.len == at) else {
            self.current = None;
            return Err(std::io::Error::other(format!(
                "spool out of step: octets at {at} of a message not spooled up to there"
            )));
        };
        let file = cur.file.clone();
        let n = bytes.len() as u64;
        let written = tokio::task::spawn_blocking(move || (&*file).write_all(&bytes))
            .await
            .map_err(std::io::Error::other)?;
        if let Err(e) = written {
            self.current = None;
            return Err(e);
        }
        cur.len += n;
        Ok(())
    }

    /// The start of the spooled message (up to 64 KiB: its header section, as a rule).
    pub fn start(&self) -> &[u8] {
        self.current.as_ref().map_or(&[], |c| &c.start)
    }

    /// The whole message: `head` (header lines the server adds), the `offset` octets spooled,
    /// then `tail` (the rest, from memory). The spool is empty afterwards.
    pub fn message(
        &mut self,
        head: Vec<u8>,
        offset: u64,
        tail: Vec<u8>,
    ) -> std::io::Result<MessageData> {
        match self.current.take() {
            Some(c) if c.len == offset => Ok(MessageData::spooled(head, c.file, c.len, tail)),
            c => Err(std::io::Error::other(format!(
                "spool out of step: {} octets spooled, the message says {offset}",
                c.map_or(0, |c| c.len)
            ))),
        }
    }

    /// Drops the message under way (the file goes with its last reference).
    pub fn discard(&mut self) {
        self.current = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spool() -> (tempfile::TempDir, Spool) {
        let d = tempfile::tempdir().unwrap();
        let dir = dir(d.path()).unwrap();
        (d, Spool::new(dir.into()))
    }

    #[tokio::test]
    async fn pieces_make_the_message() {
        let (d, mut s) = spool();
        s.write(0, b"Subject: a\r\n\r\nfirst ".to_vec())
            .await
            .unwrap();
        s.write(20, b"second ".to_vec()).await.unwrap();
        assert!(s.start().starts_with(b"Subject: a\r\n"));
        let m = s
            .message(b"Received: x\r\n".to_vec(), 27, b"end\r\n".to_vec())
            .unwrap();
        assert_eq!(
            m.to_vec().unwrap(),
            b"Received: x\r\nSubject: a\r\n\r\nfirst second end\r\n"
        );
        assert!(s.start().is_empty());
        // Unnamed files: the directory stays empty.
        assert_eq!(
            std::fs::read_dir(d.path().join("spool")).unwrap().count(),
            0
        );
    }

    #[tokio::test]
    async fn out_of_step_is_an_error_never_a_wrong_message() {
        let (_d, mut s) = spool();
        assert!(
            s.write(5, b"x".to_vec()).await.is_err(),
            "no message under way"
        );
        s.write(0, b"abc".to_vec()).await.unwrap();
        assert!(s.write(2, b"x".to_vec()).await.is_err(), "a gap or overlap");
        s.write(0, b"abc".to_vec()).await.unwrap();
        assert!(s.message(Vec::new(), 4, Vec::new()).is_err());
        // A new message (offset 0) replaces what a refused one left.
        s.write(0, b"one".to_vec()).await.unwrap();
        s.write(0, b"two".to_vec()).await.unwrap();
        let m = s.message(Vec::new(), 3, Vec::new()).unwrap();
        assert_eq!(m.to_vec().unwrap(), b"two");
    }
}
