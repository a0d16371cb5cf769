//! SEARCH: compiled by hato-imap, run in two phases over the store's metadata and messages.

use super::*;

impl Conn<'_> {
    pub(super) async fn search(
        &mut self,
        tag: &str,
        sc: &SearchCommand,
        enabled: Enabled,
    ) -> Outcome {
        let Some(sel) = self.selected.as_mut() else {
            return bad("No mailbox selected");
        };
        let save = sc
            .returns
            .as_ref()
            .is_some_and(|r| r.contains(&hato_imap::command::SearchReturn::Save));
        let mut search = match Search::new(sc, &sel.view, enabled, hato_wire::date::unix_now()) {
            Ok(s) => s,
            Err(e) => {
                if save {
                    sel.view.save_result(NumberSet::new());
                }
                return error_outcome(e.response(tag));
            }
        };
        if let Err(outcome) = self.run_search(tag, &mut search, enabled).await {
            if save && let Some(sel) = self.selected.as_mut() {
                sel.view.save_result(NumberSet::new());
            }
            return outcome;
        }
        let Some(sel) = self.selected.as_mut() else {
            return bad("No mailbox selected");
        };
        Outcome::ok(search.finish(tag, &mut sel.view))
    }

    /// Both phases of a compiled search over the selected mailbox; the hits are in `search`.
    pub(super) async fn run_search(
        &mut self,
        tag: &str,
        search: &mut Search,
        enabled: Enabled,
    ) -> Result<(), Outcome> {
        let Some(sel) = self.selected.as_mut() else {
            return Err(bad("No mailbox selected"));
        };
        let headers_only = search.program().needs_headers_only();
        // Flags, UIDs and MODSEQ are in the view: the store's message list (sizes, dates) is
        // read only when a key uses them or messages must be loaded (batches by size).
        let with_entries = search.program().reads_size_or_date()
            || search.program().needs_content()
            || headers_only;
        let entries: Option<HashMap<u32, MessageEntry>> = if with_entries {
            match self.store.messages(sel.id).await {
                Ok(v) => Some(v.into_iter().map(|e| (e.uid, e)).collect()),
                Err(e) => return Err(store_no(&e)),
            }
        } else {
            None
        };
        let list: Vec<(u32, u32)> = sel.view.messages().collect();
        // Pass 1: metadata decides most messages; the rest are read below in batches (one store
        // round trip per batch, not per message).
        let mut pending: Vec<(u32, u32, Vec<hato_imap::flag::Flag>)> = Vec::new();
        for (seq, uid) in list {
            let (size, internal_date) = match &entries {
                Some(entries) => match entries.get(&uid) {
                    Some(e) => (e.size, e.internal_date),
                    None => continue,
                },
                None => (0, 0),
            };
            let Some(modseq) = sel.view.modseq(uid) else {
                continue;
            };
            let flags = sel.view.flags(uid, enabled).unwrap_or_default();
            let meta = hato_imap::MessageMeta {
                seq,
                uid,
                flags: &flags,
                modseq,
                size,
                internal_date,
                recent: sel.view.is_recent(uid),
            };
            if search.check(&meta) != hato_imap::Verdict::NeedsMessage {
                continue;
            }
            let Some(entries) = &entries else {
                continue;
            };
            let Some(entry) = entries.get(&uid) else {
                continue;
            };
            if !headers_only && search.over_budget(entry.size) {
                return Err(error_outcome(hato_imap::SearchError::Limit.response(tag)));
            }
            pending.push((seq, uid, flags));
        }
        // Header keys only: messages whose fields are cached are decided without reading them.
        let cached = search.program().header_keys_only();
        if cached {
            let cache = &self.svc.header_cache;
            let mut misses = Vec::with_capacity(pending.len());
            for (seq, uid, flags) in pending {
                let Some(entry) = entries.as_ref().and_then(|m| m.get(&uid)) else {
                    continue;
                };
                match cache.get(entry.blob) {
                    Some(fields) => {
                        let meta = hato_imap::MessageMeta {
                            seq,
                            uid,
                            flags: &flags,
                            modseq: sel.view.modseq(uid).unwrap_or(entry.modseq),
                            size: entry.size,
                            internal_date: entry.internal_date,
                            recent: sel.view.is_recent(uid),
                        };
                        search.check_fields(&meta, &fields);
                    }
                    None => misses.push((seq, uid, flags)),
                }
            }
            pending = misses;
        }
        // Pass 2: batches bounded in count and bytes.
        const BATCH_MESSAGES: usize = 256;
        const BATCH_BYTES: u64 = 8 * 1024 * 1024;
        let mut start = 0;
        while start < pending.len() {
            let mut end = start;
            let mut bytes = 0u64;
            while end < pending.len()
                && end - start < BATCH_MESSAGES
                && (end == start || bytes < BATCH_BYTES)
            {
                bytes += entries
                    .as_ref()
                    .and_then(|m| m.get(&pending[end].1))
                    .map_or(0, |e| e.size);
                end += 1;
            }
            let uids: Vec<u32> = pending[start..end].iter().map(|p| p.1).collect();
            let loaded = match self.store.messages_data(sel.id, &uids).await {
                Ok(d) => d,
                Err(e) => return Err(store_no(&e)),
            };
            let by_uid: HashMap<u32, Vec<u8>> = loaded.into_iter().collect();
            for (seq, uid, flags) in &pending[start..end] {
                let (Some(data), Some(entry)) =
                    (by_uid.get(uid), entries.as_ref().and_then(|m| m.get(uid)))
                else {
                    continue;
                };
                let meta = hato_imap::MessageMeta {
                    seq: *seq,
                    uid: *uid,
                    flags,
                    modseq: sel.view.modseq(*uid).unwrap_or(entry.modseq),
                    size: entry.size,
                    internal_date: entry.internal_date,
                    recent: sel.view.is_recent(*uid),
                };
                let raw = if headers_only {
                    &data[..header_end(data)]
                } else {
                    &data[..]
                };
                if cached {
                    let fields: Arc<[(String, String)]> =
                        hato_imap::search::header_fields(raw).into();
                    self.svc.header_cache.insert(entry.blob, fields.clone());
                    search.check_fields(&meta, &fields);
                    continue;
                }
                if let Err(e) = search.check_message(&meta, raw) {
                    return Err(error_outcome(e.response(tag)));
                }
            }
            start = end;
        }
        Ok(())
    }

    /// SORT / UID SORT (RFC 5256; ESORT RFC 5267 §3): the search, then the hits' keys, sorted.
    pub(super) async fn sort(&mut self, tag: &str, sc: &SortCommand, enabled: Enabled) -> Outcome {
        let with_header = hato_imap::sort::needs_header(&sc.criteria);
        let mut msgs = match self
            .sort_messages(tag, &sc.search_command(), with_header, enabled)
            .await
        {
            Ok(m) => m,
            Err(outcome) => return outcome,
        };
        hato_imap::sort::sort(&sc.criteria, &mut msgs);
        Outcome::ok(vec![hato_imap::sort::sort_response(
            tag,
            sc.uid,
            sc.returns.as_deref(),
            &msgs,
        )])
    }

    /// THREAD / UID THREAD (RFC 5256): the search, then the hits' headers, threaded.
    pub(super) async fn thread(
        &mut self,
        tag: &str,
        tc: &ThreadCommand,
        enabled: Enabled,
    ) -> Outcome {
        match self
            .sort_messages(tag, &tc.search_command(), true, enabled)
            .await
        {
            Ok(msgs) => Outcome::ok(vec![hato_imap::thread::response(
                tc.algorithm,
                tc.uid,
                &msgs,
            )]),
            Err(outcome) => outcome,
        }
    }

    /// The messages a SORT or THREAD search selects, with their keys (header keys only when
    /// `with_header`), in sequence order.
    pub(super) async fn sort_messages(
        &mut self,
        tag: &str,
        sc: &SearchCommand,
        with_header: bool,
        enabled: Enabled,
    ) -> Result<Vec<SortMessage>, Outcome> {
        let Some(sel) = self.selected.as_ref() else {
            return Err(bad("No mailbox selected"));
        };
        let mut search = Search::new(sc, &sel.view, enabled, hato_wire::date::unix_now())
            .map_err(|e| error_outcome(e.response(tag)))?;
        self.run_search(tag, &mut search, enabled).await?;
        let Some(sel) = self.selected.as_ref() else {
            return Err(bad("No mailbox selected"));
        };
        let mut hits: Vec<(u32, u32)> = search.hits().iter().map(|h| (h.seq, h.uid)).collect();
        hits.sort_unstable();
        hits.dedup();
        let entries: HashMap<u32, MessageEntry> = match self.store.messages(sel.id).await {
            Ok(v) => v.into_iter().map(|e| (e.uid, e)).collect(),
            Err(e) => return Err(store_no(&e)),
        };
        let mut out = Vec::with_capacity(hits.len());
        if !with_header {
            for (seq, uid) in hits {
                if let Some(e) = entries.get(&uid) {
                    out.push(SortMessage::from_meta(seq, uid, e.internal_date, e.size));
                }
            }
            return Ok(out);
        }
        // Keys from the cache; the other messages' header blocks are read below.
        let cache = &self.svc.header_cache;
        let mut misses = Vec::new();
        for (seq, uid) in hits {
            let Some(e) = entries.get(&uid) else {
                continue;
            };
            match cache.get_sort_keys(e.blob) {
                Some(keys) => out.push(keys.at(seq, uid, e.internal_date, e.size)),
                None => misses.push((seq, uid)),
            }
        }
        let hits = misses;
        // Header blocks, in batches bounded in count and bytes.
        const BATCH_MESSAGES: usize = 256;
        const BATCH_BYTES: u64 = 8 * 1024 * 1024;
        let mut start = 0;
        while start < hits.len() {
            let mut end = start;
            let mut bytes = 0u64;
            while end < hits.len()
                && end - start < BATCH_MESSAGES
                && (end == start || bytes < BATCH_BYTES)
            {
                bytes += entries.get(&hits[end].1).map_or(0, |e| e.size);
                end += 1;
            }
            let uids: Vec<u32> = hits[start..end].iter().map(|h| h.1).collect();
            let loaded = match self.store.messages_data(sel.id, &uids).await {
                Ok(d) => d,
                Err(e) => return Err(store_no(&e)),
            };
            let by_uid: HashMap<u32, Vec<u8>> = loaded.into_iter().collect();
            for &(seq, uid) in &hits[start..end] {
                // A message expunged meanwhile is left out.
                let (Some(data), Some(e)) = (by_uid.get(&uid), entries.get(&uid)) else {
                    continue;
                };
                let header = &data[..header_end(data)];
                let keys = Arc::new(SortMessage::new(0, 0, 0, 0, header));
                out.push(keys.at(seq, uid, e.internal_date, e.size));
                self.svc.header_cache.insert_sort_keys(e.blob, keys);
            }
            start = end;
        }
        out.sort_unstable_by_key(|m| m.seq);
        Ok(out)
    }
}
