//! Mailbox commands with arguments beyond a name: SELECT/EXAMINE with RFC 7162
//! CONDSTORE and QRESYNC, CREATE with RFC 6154 USE, LIST (RFC 5258 LIST-EXTENDED,
//! RFC 5819 LIST-STATUS, RFC 6154 SPECIAL-USE), STATUS items (RFC 7889 APPENDLIMIT,
//! RFC 9208 §4.1.4 DELETED-STORAGE), SETQUOTA (RFC 9208 §4.1.3) and APPEND (RFC 3502
//! MULTIAPPEND, RFC 3516 `literal8`, RFC 4469 CATENATE).

use super::{Parser, Result};
use crate::command::*;
use crate::sequence::SequenceSet;

impl Parser<'_, '_> {
    pub(super) fn select(&mut self, read_only: bool) -> Result<CommandBody> {
        let mailbox = self.arg(Self::mailbox)?;
        let mut condstore = false;
        let mut qresync = None;
        if !self.eof() {
            self.sp()?;
            let params = self.paren_list(1, |p| {
                let w = p.word()?;
                match w.as_str() {
                    "CONDSTORE" => Ok((true, None)),
                    "QRESYNC" => {
                        p.sp()?;
                        Ok((false, Some(p.qresync()?)))
                    }
                    _ => Err(p.syntax("unknown SELECT parameter")),
                }
            })?;
            for (c, q) in params {
                condstore |= c;
                if let Some(q) = q {
                    if qresync.is_some() {
                        return Err(self.syntax("QRESYNC given twice"));
                    }
                    qresync = Some(q);
                }
            }
        }
        self.end()?;
        Ok(CommandBody::Select {
            mailbox,
            read_only,
            condstore,
            qresync,
        })
    }

    fn qresync(&mut self) -> Result<QResync> {
        self.byte(b'(', "expected '('")?;
        let uidvalidity = self.nz_number()?;
        let modseq = self.arg(Self::modseq)?;
        let mut known_uids = None;
        let mut seq_match = None;
        if self.peek() == Some(b' ') {
            self.pos += 1;
            if self.peek() != Some(b'(') {
                known_uids = Some(self.known_set()?);
                if self.peek() == Some(b' ') {
                    self.pos += 1;
                }
            }
            if self.peek() == Some(b'(') {
                self.pos += 1;
                let seqs = self.known_set()?;
                let uids = self.arg(Self::known_set)?;
                self.byte(b')', "expected ')'")?;
                seq_match = Some((seqs, uids));
            }
        }
        self.byte(b')', "expected ')'")?;
        Ok(QResync {
            uidvalidity,
            modseq,
            known_uids,
            seq_match,
        })
    }

    /// A sequence set without `*` or `$` (RFC 7162 known-uids and seq-match-data).
    fn known_set(&mut self) -> Result<SequenceSet> {
        let set = self.sequence_set()?;
        if set == SequenceSet::Saved || set.uses_largest() {
            return Err(self.syntax("'*' and '$' are not allowed here"));
        }
        Ok(set)
    }

    pub(super) fn create(&mut self) -> Result<CommandBody> {
        let mailbox = self.arg(Self::mailbox)?;
        let mut special_use = Vec::new();
        if !self.eof() {
            self.sp()?;
            let uses = self.paren_list(1, |p| {
                if !p.keyword("USE") {
                    return Err(p.syntax("unknown CREATE parameter"));
                }
                p.sp()?;
                p.paren_list(0, |p| {
                    p.byte(b'\\', "expected a special-use attribute")?;
                    let a = p.atom()?;
                    Ok(format!("\\{}", String::from_utf8_lossy(a)))
                })
            })?;
            special_use = uses.into_iter().flatten().collect();
        }
        self.end()?;
        Ok(CommandBody::Create {
            mailbox,
            special_use,
        })
    }

    pub(super) fn list(&mut self) -> Result<CommandBody> {
        let mut cmd = ListCommand::default();
        self.sp()?;
        if self.peek() == Some(b'(') {
            cmd.extended = true;
            let opts = self.paren_list(0, Self::word)?;
            for o in &opts {
                match o.as_str() {
                    "SUBSCRIBED" => cmd.select_subscribed = true,
                    "REMOTE" => cmd.select_remote = true,
                    "RECURSIVEMATCH" => cmd.select_recursive_match = true,
                    "SPECIAL-USE" => cmd.select_special_use = true,
                    _ => return Err(self.syntax("unknown LIST selection option")),
                }
            }
            // RFC 5258 §3.1: RECURSIVEMATCH needs another option it modifies.
            if cmd.select_recursive_match && !cmd.select_subscribed && !cmd.select_special_use {
                return Err(self.syntax("RECURSIVEMATCH needs another selection option"));
            }
            self.sp()?;
        }
        cmd.reference = self.reference()?;
        self.sp()?;
        if self.peek() == Some(b'(') {
            cmd.extended = true;
            cmd.patterns = self.paren_list(1, Self::list_mailbox)?;
        } else {
            cmd.patterns = vec![self.list_mailbox()?];
        }
        if !self.eof() {
            self.sp()?;
            if !self.keyword("RETURN") {
                return Err(self.syntax("expected RETURN"));
            }
            cmd.extended = true;
            self.sp()?;
            self.paren_list(0, |p| {
                let w = p.word()?;
                match w.as_str() {
                    "SUBSCRIBED" => cmd.return_subscribed = true,
                    "CHILDREN" => cmd.return_children = true,
                    "SPECIAL-USE" => cmd.return_special_use = true,
                    "STATUS" => {
                        p.sp()?;
                        cmd.return_status = Some(p.paren_list(1, Self::status_item)?);
                    }
                    _ => return Err(p.syntax("unknown LIST return option")),
                }
                Ok(())
            })?;
        }
        self.end()?;
        Ok(CommandBody::List(cmd))
    }

    /// `setquota = "SETQUOTA" SP quota-root-name SP setquota-list`;
    /// `setquota-list = "(" [setquota-resource *(SP setquota-resource)] ")"`;
    /// `setquota-resource = resource-name SP resource-limit` (RFC 9208 formal syntax).
    pub(super) fn setquota(&mut self) -> Result<CommandBody> {
        let root = self.arg(Self::astring_utf8)?;
        self.sp()?;
        let limits = self.paren_list(0, |p| {
            let resource = p.word()?;
            p.sp()?;
            let limit = p.number64()?;
            Ok(QuotaLimit { resource, limit })
        })?;
        self.end()?;
        Ok(CommandBody::SetQuota { root, limits })
    }

    pub(super) fn status_item(&mut self) -> Result<StatusItem> {
        let w = self.word()?;
        Ok(match w.as_str() {
            "MESSAGES" => StatusItem::Messages,
            "RECENT" => StatusItem::Recent,
            "UIDNEXT" => StatusItem::UidNext,
            "UIDVALIDITY" => StatusItem::UidValidity,
            "UNSEEN" => StatusItem::Unseen,
            "DELETED" => StatusItem::Deleted,
            "DELETED-STORAGE" => StatusItem::DeletedStorage,
            "SIZE" => StatusItem::Size,
            "HIGHESTMODSEQ" => StatusItem::HighestModSeq,
            "APPENDLIMIT" => StatusItem::AppendLimit,
            _ => return Err(self.syntax("unknown STATUS item")),
        })
    }

    pub(super) fn append(&mut self) -> Result<CommandBody> {
        let mailbox = self.arg(Self::mailbox)?;
        let mut messages = Vec::new();
        while !self.eof() {
            self.sp()?;
            let mut flags = Vec::new();
            let mut date = None;
            if self.peek() == Some(b'(') {
                flags = self.flag_list()?;
                self.sp()?;
            }
            if self.peek() == Some(b'"') {
                date = Some(self.date_time()?);
                self.sp()?;
            }
            if matches!(self.peek(), Some(b'C' | b'c')) {
                let parts = self.catenate()?;
                // Nothing of the command is the message: an empty range keeps the places of
                // the other messages in step.
                if let Some(at) = &mut self.append_at {
                    at.push(self.pos..self.pos);
                }
                messages.push(AppendMessage {
                    flags,
                    date,
                    data: Vec::new(),
                    binary: false,
                    taken: None,
                    catenate: Some(parts),
                });
                continue;
            }
            let binary = self.peek() == Some(b'~');
            let data = self.literal_raw(binary)?;
            let data = match &mut self.append_at {
                Some(at) => {
                    let start = self.pos - data.len();
                    at.push(start..self.pos);
                    Vec::new()
                }
                None => data.to_vec(),
            };
            messages.push(AppendMessage {
                flags,
                date,
                data,
                binary,
                taken: self.literals.last_taken,
                catenate: None,
            });
        }
        if messages.is_empty() {
            return Err(self.syntax("APPEND needs a message"));
        }
        Ok(CommandBody::Append { mailbox, messages })
    }

    /// `"CATENATE" SP "(" cat-part *(SP cat-part) ")"` with `cat-part = "TEXT" SP literal /
    /// "URL" SP astring` (RFC 4469 §5; a TEXT part may be a `literal8`, RFC 3516).
    fn catenate(&mut self) -> Result<Vec<CatenatePart>> {
        if self.word()? != "CATENATE" {
            return Err(self.syntax("expected a message literal or CATENATE"));
        }
        self.sp()?;
        self.paren_list(1, |p| match p.word()?.as_str() {
            "TEXT" => {
                p.sp()?;
                let data = p.literal_raw(p.peek() == Some(b'~'))?;
                // The framer never lets the driver take a CATENATE literal.
                if p.literals.last_taken.is_some() {
                    return Err(p.syntax("CATENATE TEXT literal too long"));
                }
                Ok(CatenatePart::Text(data.to_vec()))
            }
            "URL" => {
                p.sp()?;
                let url = p.astring()?;
                let url = String::from_utf8(url).map_err(|_| p.syntax("URL is not UTF-8"))?;
                Ok(CatenatePart::Url(url))
            }
            _ => Err(p.syntax("expected TEXT or URL")),
        })
    }
}
