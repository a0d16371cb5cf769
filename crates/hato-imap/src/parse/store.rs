//! STORE (RFC 9051 §6.4.6, RFC 7162 UNCHANGEDSINCE), COPY and MOVE (RFC 6851).

use super::{Parser, Result};
use crate::command::*;

impl Parser<'_, '_> {
    pub(super) fn store(&mut self, uid: bool) -> Result<CommandBody> {
        let set = self.arg(Self::sequence_set)?;
        self.sp()?;
        let mut unchanged_since = None;
        if self.peek() == Some(b'(') {
            self.paren_list(1, |p| {
                if !p.keyword("UNCHANGEDSINCE") {
                    return Err(p.syntax("unknown STORE modifier"));
                }
                p.sp()?;
                unchanged_since = Some(p.number64()?);
                Ok(())
            })?;
            self.sp()?;
        }
        let op = match self.peek() {
            Some(b'+') => {
                self.pos += 1;
                StoreOp::Add
            }
            Some(b'-') => {
                self.pos += 1;
                StoreOp::Remove
            }
            _ => StoreOp::Replace,
        };
        let silent = if self.keyword("FLAGS.SILENT") {
            true
        } else if self.keyword("FLAGS") {
            false
        } else {
            return Err(self.syntax("expected FLAGS"));
        };
        self.sp()?;
        let flags = if self.peek() == Some(b'(') {
            self.flag_list()?
        } else {
            let mut flags = vec![self.flag()?];
            while !self.eof() {
                flags.push(self.arg(Self::flag)?);
            }
            flags
        };
        self.end()?;
        Ok(CommandBody::Store(StoreCommand {
            uid,
            set,
            unchanged_since,
            op,
            silent,
            flags,
        }))
    }

    pub(super) fn copy_move(&mut self, uid: bool, is_move: bool) -> Result<CommandBody> {
        let set = self.arg(Self::sequence_set)?;
        let mailbox = self.arg(Self::mailbox)?;
        self.end()?;
        Ok(if is_move {
            CommandBody::Move { uid, set, mailbox }
        } else {
            CommandBody::Copy { uid, set, mailbox }
        })
    }
}
