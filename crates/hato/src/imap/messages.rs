//! Message commands that write: APPEND (with QUOTA), EXPUNGE, STORE, COPY and MOVE.

use super::*;

impl Conn<'_> {
    pub(super) async fn append(&mut self, name: &str, messages: Vec<AppendMessage>) -> Outcome {
        let mb = match self.mailbox(name).await {
            Ok(Some(mb)) => mb,
            Ok(None) => return Outcome::no(Some(Code::TryCreate), "No such mailbox"),
            Err(e) => return store_no(&e),
        };
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
