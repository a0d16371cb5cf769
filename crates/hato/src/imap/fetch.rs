//! FETCH: responses built one message at a time and streamed to the client in chunks.

use super::*;

/// Untagged responses written straight to the client, in chunks (large FETCHes).
pub(super) struct Sink<'s, S> {
    pub(super) io: &'s mut S,
    pub(super) opts: hato_imap::EncodeOptions,
    pub(super) buf: Vec<u8>,
    pub(super) timeout: Duration,
}

impl<S: AsyncWrite + Unpin> Sink<'_, S> {
    const CHUNK: usize = 256 * 1024;

    pub(super) async fn push(&mut self, r: &Response) -> anyhow::Result<()> {
        r.encode(&mut self.buf, self.opts);
        if self.buf.len() >= Self::CHUNK {
            self.flush().await?;
        }
        Ok(())
    }

    pub(super) async fn flush(&mut self) -> anyhow::Result<()> {
        write_with_timeout(self.io, &self.buf, self.timeout).await?;
        self.buf.clear();
        Ok(())
    }
}

impl Conn<'_> {
    /// FETCH: the message responses go to `sink` as they are built (one message's data in
    /// memory at a time); the outcome carries only what precedes them (VANISHED) or errors.
    pub(super) async fn fetch<S: AsyncWrite + Unpin>(
        &mut self,
        f: &FetchCommand,
        enabled: Enabled,
        sink: &mut Sink<'_, S>,
    ) -> anyhow::Result<Outcome> {
        let pairs = match self.resolve(f.uid, &f.set) {
            Ok(p) => p,
            Err(o) => return Ok(o),
        };
        let Some(sel) = self.selected.as_mut() else {
            return Ok(bad("No mailbox selected"));
        };
        let mut items = f.items.clone();
        if f.uid && !items.contains(&FetchAttr::Uid) {
            items.insert(0, FetchAttr::Uid);
        }
        if f.changed_since.is_some() && !items.contains(&FetchAttr::ModSeq) {
            items.push(FetchAttr::ModSeq);
        }
        let mut untagged = Vec::new();
        if f.vanished
            && let Some(since) = f.changed_since
        {
            match self.store.changes_since(sel.id, since).await {
                Ok(Some(c)) => {
                    let limit = f.set.resolve(sel.view.uidnext().max(1));
                    let gone = NumberSet::from_numbers(
                        c.vanished
                            .into_iter()
                            .filter(|u| limit.as_ref().is_some_and(|s| s.contains(*u))),
                    );
                    if !gone.is_empty() {
                        untagged.push(Response::Data(Data::Vanished {
                            earlier: true,
                            uids: gone,
                        }));
                    }
                }
                Ok(None) => {}
                Err(e) => return Ok(store_no(&e)),
            }
        }
        let pairs: Vec<(u32, u32)> = match f.changed_since {
            Some(since) => pairs
                .into_iter()
                .filter(|(_, uid)| sel.view.modseq(*uid).is_some_and(|m| m > since))
                .collect(),
            None => pairs,
        };
        if pairs.is_empty() {
            return Ok(Outcome::ok(untagged));
        }
        // VANISHED (EARLIER) goes before the FETCH responses.
        for r in std::mem::take(&mut untagged) {
            sink.push(&r).await?;
        }
        // FLAGS, UID and MODSEQ come from the view: `FETCH 1:* (FLAGS)` reads nothing.
        let view_only = items
            .iter()
            .all(|a| matches!(a, FetchAttr::Flags | FetchAttr::Uid | FetchAttr::ModSeq));
        let entries: HashMap<u32, MessageEntry> = if view_only {
            HashMap::new()
        } else if pairs.len() <= 16 {
            let mut m = HashMap::new();
            for (_, uid) in &pairs {
                match self.store.message(sel.id, *uid).await {
                    Ok(Some(e)) => {
                        m.insert(*uid, e);
                    }
                    Ok(None) => {}
                    Err(e) => return Ok(store_no(&e)),
                }
            }
            m
        } else {
            match self.store.messages(sel.id).await {
                Ok(v) => v.into_iter().map(|e| (e.uid, e)).collect(),
                Err(e) => return Ok(store_no(&e)),
            }
        };
        // Non-PEEK body fetches set \Seen (RFC 9051 6.4.5), on a read-write mailbox only.
        let mut seen_set: HashMap<u32, (Vec<String>, u64)> = HashMap::new();
        if !sel.read_only && items.iter().any(FetchAttr::sets_seen) {
            let unseen: Vec<u32> = pairs
                .iter()
                .map(|p| p.1)
                .filter(|uid| {
                    entries
                        .get(uid)
                        .is_some_and(|e| !e.flags.iter().any(|f| f == "\\Seen"))
                })
                .collect();
            if !unseen.is_empty() {
                match self
                    .store
                    .set_flags(sel.id, &unseen, FlagOp::Add, &["\\Seen".to_string()], None)
                    .await
                {
                    Ok(r) => {
                        for u in r.updated {
                            seen_set.insert(u.uid, (u.flags, u.modseq));
                        }
                    }
                    Err(e) => return Ok(store_no(&e)),
                }
            }
        }
        let needs_data = items.iter().any(|a| {
            !matches!(
                a,
                FetchAttr::Flags
                    | FetchAttr::Uid
                    | FetchAttr::InternalDate
                    | FetchAttr::Rfc822Size
                    | FetchAttr::ModSeq
            )
        });
        let utf8 = enabled.utf8();
        for (seq, uid) in pairs {
            let entry = entries.get(&uid);
            if entry.is_none() && !view_only {
                // Expunged by another session meanwhile: nothing to show.
                continue;
            }
            let Some(modseq) = sel.view.modseq(uid).or(entry.map(|e| e.modseq)) else {
                continue;
            };
            let (mut flags, mut modseq) =
                (sel.view.flags(uid, enabled).unwrap_or_default(), modseq);
            let mut with_flags = items.contains(&FetchAttr::Flags);
            if let Some((f, m)) = seen_set.get(&uid) {
                let mut fl = flags_in(f);
                if flags.contains(&Flag::Recent) {
                    fl.push(Flag::Recent);
                }
                flags = fl;
                modseq = *m;
                // RFC 9051 6.4.5: the changed flags are reported.
                with_flags = true;
            }
            let data = if needs_data {
                match self.store.message_data(sel.id, uid).await {
                    Ok(Some(d)) => Some(d),
                    Ok(None) => continue,
                    Err(e) => return Ok(store_no(&e)),
                }
            } else {
                None
            };
            let parsed = data.as_deref().map(ParsedMessage::parse);
            let mut values = Vec::with_capacity(items.len() + 1);
            for attr in &items {
                let v = match attr {
                    FetchAttr::Flags => continue,
                    FetchAttr::Uid => FetchValue::Uid(uid),
                    FetchAttr::InternalDate => match entry
                        .and_then(|e| hato_imap::datetime::DateTime::from_unix(e.internal_date, 0))
                    {
                        Some(d) => FetchValue::InternalDate(d),
                        None => continue,
                    },
                    FetchAttr::Rfc822Size => match entry {
                        Some(e) => FetchValue::Rfc822Size(e.size),
                        None => continue,
                    },
                    FetchAttr::ModSeq => FetchValue::ModSeq(modseq),
                    other => match parsed.as_ref().and_then(|p| p.fetch_item(other, utf8)) {
                        Some(Ok(v)) => v,
                        Some(Err(_)) => {
                            return Ok(Outcome::no(
                                Some(Code::UnknownCte),
                                "Cannot decode the part",
                            ));
                        }
                        None => continue,
                    },
                };
                values.push(v);
            }
            if with_flags {
                // FLAGS right after UID, where clients look for it.
                let at = usize::from(
                    values
                        .first()
                        .is_some_and(|v| matches!(v, FetchValue::Uid(_))),
                );
                values.insert(at, FetchValue::Flags(flags.clone()));
                let announce = sel.view.record_sent_flags(
                    uid,
                    flags.into_iter().filter(|f| *f != Flag::Recent).collect(),
                    modseq,
                );
                // FLAGS first when the message has a keyword the client was not told about.
                for r in &announce {
                    sink.push(r).await?;
                }
            }
            sink.push(&Response::Data(Data::Fetch { seq, items: values }))
                .await?;
        }
        Ok(Outcome::ok(untagged))
    }
}
