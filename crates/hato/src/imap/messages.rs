//! Message commands that write: APPEND (with QUOTA and CATENATE), EXPUNGE, STORE, COPY
//! and MOVE.

use hato_imap::command::CatenatePart;
use hato_imap::url::ImapUrl;

use super::*;

impl Conn<'_> {
    pub(super) async fn append(&mut self, name: &str, mut messages: Vec<AppendMessage>) -> Outcome {
        let mb = match self.mailbox(name).await {
            Ok(Some(mb)) => mb,
            Ok(None) => return Outcome::no(Some(Code::TryCreate), "No such mailbox"),
            Err(e) => return store_no(&e),
        };
        // CATENATE (RFC 4469): every message is put together before any is stored, so a URL
        // that cannot be resolved appends nothing.
        for m in &mut messages {
            if let Some(parts) = m.catenate.take() {
                match self.catenate(parts).await {
                    Ok(data) => m.data = data,
                    Err(o) => return o,
                }
            }
        }
        let adding: u64 = messages
            .iter()
            .map(|m| m.data.len() as u64 + m.taken.map_or(0, |t| t.1))
            .sum();
        if let Some(o) = self.over_quota(adding).await {
            return o;
        }
        let mut uids = NumberSet::new();
        let mut uidvalidity = mb.uidvalidity;
        let now = hato_wire::date::unix_now();
        for m in messages {
            let date = m.date.map(|d| d.to_unix()).unwrap_or(now);
            let flags = flags_out(&m.flags);
            // A large message: what went to the spool file, then the rest.
            let data = match m.taken {
                None => m.data.into(),
                Some((literal, taken)) => {
                    let spooled = self
                        .spools
                        .iter_mut()
                        .find(|(l, _)| *l == literal)
                        .map(|(_, s)| s.message(Vec::new(), taken, m.data));
                    match spooled {
                        Some(Ok(d)) => d,
                        e => {
                            let e = e.and_then(|r| r.err());
                            error!(error = ?e, "an APPEND message's spool is incomplete");
                            return Outcome::no(
                                Some(Code::ServerBug),
                                "Message lost in transit, try again",
                            );
                        }
                    }
                }
            };
            match self.store.append(mb.id, data, &flags, date).await {
                Ok(a) => {
                    uidvalidity = a.uidvalidity;
                    uids.insert(a.uid);
                }
                Err(e) => return store_no(&e),
            }
        }
        Outcome {
            untagged: Vec::new(),
            kind: StatusKind::Ok,
            code: Some(Code::AppendUid { uidvalidity, uids }),
            text: String::new(),
        }
    }

    /// The message a CATENATE list makes: its TEXT parts and what its URLs name, in order.
    /// `NO [BADURL url]` for a URL that names nothing here, `NO [TOOBIG]` past the
    /// APPENDLIMIT.
    async fn catenate(&self, parts: Vec<CatenatePart>) -> Result<Vec<u8>, Outcome> {
        let mut data = Vec::new();
        for part in parts {
            match part {
                CatenatePart::Text(t) => data.extend_from_slice(&t),
                CatenatePart::Url(url) => match self.url_data(&url).await {
                    Ok(Some(d)) => data.extend_from_slice(&d),
                    Ok(None) => {
                        return Err(Outcome::no(
                            Some(Code::BadUrl(url)),
                            "CATENATE URL cannot be resolved",
                        ));
                    }
                    Err(e) => return Err(store_no(&e)),
                },
            }
            if data.len() as u64 > self.append_limit {
                return Err(Outcome::no(
                    Some(Code::TooBig),
                    "Message exceeds the APPENDLIMIT",
                ));
            }
        }
        Ok(data)
    }

    /// The octets an IMAP URL names (a message of this user, or a section of one, with the
    /// partial applied); `None` when it names nothing.
    async fn url_data(&self, url: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(url) = ImapUrl::parse(url) else {
            return Ok(None);
        };
        let Some(mb) = self.mailbox(&url.mailbox).await? else {
            return Ok(None);
        };
        if url.uidvalidity.is_some_and(|v| v != mb.uidvalidity) {
            return Ok(None);
        }
        let Some(message) = self.store.message_data(mb.id, url.uid).await? else {
            return Ok(None);
        };
        let data = match &url.section {
            None => url.apply_partial(&message).to_vec(),
            Some(section) => match ParsedMessage::parse(&message).section(section) {
                Some(d) => url.apply_partial(&d).to_vec(),
                None => return Ok(None),
            },
        };
        Ok(Some(data))
    }

    /// `NO [OVERQUOTA]` (RFC 9208 §4.3.1) when adding `bytes` would take the account past its
    /// limit. Not atomic with the write that follows: concurrent sessions can overshoot by a
    /// message each, as with Dovecot's quota plugin.
    pub(super) async fn over_quota(&self, bytes: u64) -> Option<Outcome> {
        let limit = self.quota_bytes?;
        match self.store.account_usage(self.account_id()).await {
            Ok(u) if u.bytes.saturating_add(bytes) > limit => Some(Outcome::over_quota()),
            Ok(_) => None,
            Err(e) => Some(store_no(&e)),
        }
    }

    // ---- selected state --------------------------------------------------------------------

    /// (seq, uid) pairs of a set; BAD for sequence numbers beyond EXISTS.
    pub(super) fn resolve(&self, uid: bool, set: &SequenceSet) -> Result<Vec<(u32, u32)>, Outcome> {
        let Some(sel) = &self.selected else {
            return Err(bad("No mailbox selected"));
        };
        if uid {
            Ok(sel.view.resolve_uid(set))
        } else {
            sel.view.resolve_seq(set).map_err(|e| bad(&e.to_string()))
        }
    }

    pub(super) async fn expunge(&mut self, uids: Option<&SequenceSet>) -> Outcome {
        let Some(sel) = &self.selected else {
            return bad("No mailbox selected");
        };
        let r = match uids {
            None => self.store.expunge(sel.id, Expunge::Deleted).await,
            Some(set) => {
                let uids: Vec<u32> = sel.view.resolve_uid(set).iter().map(|p| p.1).collect();
                if uids.is_empty() {
                    return Outcome::ok(Vec::new());
                }
                self.store
                    .expunge(sel.id, Expunge::DeletedAmong(&uids))
                    .await
            }
        };
        match r {
            Ok(_) => Outcome::ok(Vec::new()),
            Err(e) => store_no(&e),
        }
    }

    pub(super) async fn store_flags(&mut self, st: &StoreCommand, enabled: Enabled) -> Outcome {
        let pairs = match self.resolve(st.uid, &st.set) {
            Ok(p) => p,
            Err(o) => return o,
        };
        let Some(sel) = self.selected.as_mut() else {
            return bad("No mailbox selected");
        };
        let uids: Vec<u32> = pairs.iter().map(|p| p.1).collect();
        let op = match st.op {
            StoreOp::Add => FlagOp::Add,
            StoreOp::Remove => FlagOp::Remove,
            StoreOp::Replace => FlagOp::Replace,
        };
        if uids.is_empty() {
            return Outcome::ok(Vec::new());
        }
        let r = match self
            .store
            .set_flags(sel.id, &uids, op, &flags_out(&st.flags), st.unchanged_since)
            .await
        {
            Ok(r) => r,
            Err(e) => return store_no(&e),
        };
        let condstore = enabled.condstore || enabled.qresync;
        let mut untagged = Vec::new();
        for u in &r.updated {
            let Some(seq) = sel.view.seq(u.uid) else {
                continue;
            };
            let mut flags = flags_in(&u.flags);
            // FLAGS first when the message has a keyword the client was not told about.
            let announce = sel.view.record_sent_flags(u.uid, flags.clone(), u.modseq);
            untagged.extend(announce);
            // RFC 7162 3.1.3: with UNCHANGEDSINCE the new MODSEQ is reported even if SILENT.
            if st.silent && !(st.unchanged_since.is_some() && u.changed) {
                continue;
            }
            if !enabled.imap4rev2 && sel.view.is_recent(u.uid) {
                flags.push(Flag::Recent);
            }
            let mut items = Vec::new();
            // RFC 7162 3.2.4: with QRESYNC every FETCH carries the UID.
            if st.uid || enabled.qresync {
                items.push(FetchValue::Uid(u.uid));
            }
            if !st.silent {
                items.push(FetchValue::Flags(flags));
            }
            if condstore {
                items.push(FetchValue::ModSeq(u.modseq));
            }
            untagged.push(Response::Data(Data::Fetch { seq, items }));
        }
        let code = if r.modified.is_empty() {
            None
        } else if st.uid {
            Some(Code::Modified(NumberSet::from_numbers(r.modified)))
        } else {
            Some(Code::Modified(NumberSet::from_numbers(
                r.modified.iter().filter_map(|u| sel.view.seq(*u)),
            )))
        };
        Outcome {
            untagged,
            kind: StatusKind::Ok,
            code,
            text: String::new(),
        }
    }

    pub(super) async fn copy(
        &mut self,
        uid: bool,
        set: &SequenceSet,
        name: &str,
        mv: bool,
    ) -> Outcome {
        let pairs = match self.resolve(uid, set) {
            Ok(p) => p,
            Err(o) => return o,
        };
        let Some(sel) = &self.selected else {
            return bad("No mailbox selected");
        };
        let dest = match self.mailbox(name).await {
            Ok(Some(mb)) => mb,
            Ok(None) => return Outcome::no(Some(Code::TryCreate), "No such mailbox"),
            Err(e) => return store_no(&e),
        };
        let uids: Vec<u32> = pairs.iter().map(|p| p.1).collect();
        if uids.is_empty() {
            return Outcome::ok(Vec::new());
        }
        // A MOVE stays under the account's one quota root; a COPY adds the copies' sizes.
        if !mv && self.quota_bytes.is_some() {
            let adding: u64 = match self.store.messages(sel.id).await {
                Ok(all) => all
                    .iter()
                    .filter(|e| uids.binary_search(&e.uid).is_ok())
                    .map(|e| e.size)
                    .sum(),
                Err(e) => return store_no(&e),
            };
            if let Some(o) = self.over_quota(adding).await {
                return o;
            }
        }
        let r = if mv {
            self.store.move_messages(sel.id, &uids, dest.id).await
        } else {
            self.store.copy(sel.id, &uids, dest.id).await
        };
        let c = match r {
            Ok(c) => c,
            Err(e) => return store_no(&e),
        };
        let code = (!c.uids.is_empty()).then(|| Code::CopyUid {
            uidvalidity: c.uidvalidity,
            source: NumberSet::from_numbers(c.uids.iter().map(|p| p.0)),
            destination: NumberSet::from_numbers(c.uids.iter().map(|p| p.1)),
        });
        if mv {
            // RFC 6851 4.3: COPYUID in an untagged OK before the expunges.
            let untagged = code
                .map(|c| vec![untagged_ok(c, "Moved")])
                .unwrap_or_default();
            Outcome::ok(untagged)
        } else {
            Outcome {
                untagged: Vec::new(),
                kind: StatusKind::Ok,
                code,
                text: String::new(),
            }
        }
    }
}
