//! Mailbox commands: SELECT/EXAMINE, CREATE, STATUS, LIST, LSUB.

use super::*;

/// RFC 9051 6.3.9 LIST wildcards: `*` matches anything, `%` anything but the delimiter.
/// INBOX matches case-insensitively.
pub(super) fn pattern_matches(pattern: &str, name: &str) -> bool {
    let mut p: Vec<char> = pattern.chars().collect();
    if name
        .get(..5)
        .is_some_and(|h| h.eq_ignore_ascii_case("INBOX"))
        && p.len() >= 5
    {
        let head: String = p[..5].iter().collect();
        if head.eq_ignore_ascii_case("INBOX") {
            p.splice(..5, "INBOX".chars());
        }
    }
    let n: Vec<char> = name.chars().collect();
    // dp[j]: pattern prefix matches name prefix of length j.
    let mut dp = vec![false; n.len() + 1];
    dp[0] = true;
    for &pc in &p {
        let mut next = vec![false; n.len() + 1];
        match pc {
            '*' | '%' => {
                for j in 0..=n.len() {
                    next[j] = dp[j] || (j > 0 && next[j - 1] && (pc == '*' || n[j - 1] != '/'));
                }
            }
            c => {
                for j in 1..=n.len() {
                    next[j] = dp[j - 1] && n[j - 1] == c;
                }
            }
        }
        dp = next;
    }
    dp[n.len()]
}

impl Conn<'_> {
    pub(super) async fn mailbox(&self, name: &str) -> Result<Option<Mailbox>, StoreError> {
        self.store.mailbox_by_name(self.account_id(), name).await
    }

    // ---- SELECT / EXAMINE ------------------------------------------------------------------

    pub(super) async fn select(
        &mut self,
        name: &str,
        read_only: bool,
        qresync: Option<&hato_imap::command::QResync>,
        enabled: Enabled,
    ) -> Outcome {
        let mut untagged = Vec::new();
        if self.selected.take().is_some() && enabled.qresync {
            // RFC 7162 3.2.11.
            untagged.push(untagged_ok(Code::Closed, "Previous mailbox closed"));
        }
        let mb = match self.mailbox(name).await {
            Ok(Some(mb)) => mb,
            Ok(None) => return Outcome::no(Some(Code::NonExistent), "No such mailbox"),
            Err(e) => return store_no(&e),
        };
        let loaded = async {
            let status = self
                .store
                .mailbox_status(mb.id)
                .await?
                .ok_or_else(|| StoreError::NotFound(name.to_string()))?;
            let messages = self.store.messages(mb.id).await?;
            Ok::<_, StoreError>((status, messages))
        }
        .await;
        let (status, messages) = match loaded {
            Ok(x) => x,
            Err(e) => return store_no(&e),
        };
        let mut view = SelectedView::new(Snapshot {
            uidvalidity: status.uidvalidity,
            uidnext: status.uidnext,
            highest_modseq: status.highest_modseq,
            messages: messages.iter().map(view_message).collect(),
        });
        // Messages listed after the status snapshot are already in the view; catch up on
        // anything else.
        let (mut recent_uid, mut uidnext) = (status.recent_uid, status.uidnext);
        if let Ok(Some(c)) = self.store.changes_since(mb.id, status.highest_modseq).await {
            (recent_uid, uidnext) = (c.recent_uid, c.uidnext);
            let _ = view.update(Update::Changes(to_view_changes(c)));
            view.flush(Moment::Any, enabled);
        }
        let mut sel = Selected {
            id: mb.id,
            view,
            read_only,
            recent: if enabled.imap4rev2 {
                RecentMode::Off
            } else if read_only {
                RecentMode::Peek
            } else {
                RecentMode::Claim
            },
            recent_to: 0,
        };
        // SELECT takes the unclaimed messages as \Recent; EXAMINE shows them (RFC 3501 6.3.1/2).
        sel.take_recent(self.store.as_ref(), recent_uid, uidnext)
            .await;
        let view = &mut sel.view;
        view.set_read_only(read_only);
        untagged.extend(view.flags_responses());
        untagged.extend(view.select_responses(enabled));
        if let Some(q) = qresync
            && q.uidvalidity == view.uidvalidity()
        {
            match self.store.changes_since(mb.id, q.modseq).await {
                Ok(Some(c)) => {
                    let known = q.known_uids.as_ref().and_then(|k| k.resolve(u32::MAX));
                    let changes = to_view_changes(c);
                    untagged.extend(view.resync_responses(&changes, known.as_ref(), enabled));
                }
                Ok(None) => {}
                Err(e) => return store_no(&e),
            }
        }
        self.selected = Some(sel);
        Outcome {
            untagged,
            kind: StatusKind::Ok,
            code: Some(if read_only {
                Code::ReadOnly
            } else {
                Code::ReadWrite
            }),
            text: String::new(),
        }
    }

    // ---- mailboxes -------------------------------------------------------------------------

    pub(super) async fn create(&mut self, name: &str, special_use: &[String]) -> Outcome {
        if special_use.len() > 1 {
            return Outcome::no(Some(Code::UseAttr), "One special-use attribute at most");
        }
        let name = name.strip_suffix('/').unwrap_or(name);
        let su = special_use.first().map(String::as_str);
        match self.store.create_mailbox(self.account_id(), name, su).await {
            Ok(_) => Outcome::ok(Vec::new()),
            Err(StoreError::Invalid(m)) if su.is_some() => Outcome::no(Some(Code::UseAttr), &m),
            Err(e) => store_no(&e),
        }
    }

    pub(super) async fn status(
        &self,
        mb: &Mailbox,
        items: &[StatusItem],
    ) -> Result<Response, StoreError> {
        let st = self
            .store
            .mailbox_status(mb.id)
            .await?
            .ok_or_else(|| StoreError::NotFound(mb.name.clone()))?;
        let items = items
            .iter()
            .map(|i| match i {
                StatusItem::Messages => StatusValue::Messages(st.messages),
                StatusItem::Recent => StatusValue::Recent(st.recent),
                StatusItem::UidNext => StatusValue::UidNext(st.uidnext),
                StatusItem::UidValidity => StatusValue::UidValidity(st.uidvalidity),
                StatusItem::Unseen => StatusValue::Unseen(st.unseen),
                StatusItem::Deleted => StatusValue::Deleted(st.deleted),
                StatusItem::Size => StatusValue::Size(st.size),
                StatusItem::DeletedStorage => StatusValue::DeletedStorage(st.deleted_size),
                StatusItem::HighestModSeq => StatusValue::HighestModSeq(st.highest_modseq),
                StatusItem::AppendLimit => StatusValue::AppendLimit(Some(self.append_limit)),
            })
            .collect();
        Ok(Response::Data(Data::Status {
            mailbox: mb.name.clone(),
            items,
        }))
    }

    pub(super) async fn list(&self, l: &ListCommand) -> Outcome {
        let account = self.account_id();
        if l.patterns.len() == 1 && l.patterns[0].is_empty() && !l.select_subscribed {
            // RFC 9051 6.3.9: the hierarchy delimiter and root.
            return Outcome::ok(vec![Response::Data(Data::List(ListItem {
                attributes: vec!["\\Noselect".into()],
                delimiter: Some('/'),
                name: String::new(),
                ..Default::default()
            }))]);
        }
        let (mailboxes, subs) = match (
            self.store.mailboxes(account).await,
            self.store.subscriptions(account).await,
        ) {
            (Ok(m), Ok(s)) => (m, s),
            (Err(e), _) | (_, Err(e)) => return store_no(&e),
        };
        let patterns: Vec<String> = l
            .patterns
            .iter()
            .map(|p| format!("{}{}", l.reference, p))
            .collect();
        let matches = |name: &str| patterns.iter().any(|p| pattern_matches(p, name));
        let has_children = |name: &str| {
            let prefix = format!("{name}/");
            mailboxes.iter().any(|m| m.name.starts_with(&prefix))
        };
        let subscribed = |name: &str| subs.iter().any(|s| s == name);
        let mut out = Vec::new();
        let show_subscribed = l.return_subscribed || l.select_subscribed;
        let mut names: Vec<(String, Option<&Mailbox>)> = Vec::new();
        if l.select_subscribed {
            for s in &subs {
                names.push((s.clone(), mailboxes.iter().find(|m| &m.name == s)));
            }
            if l.select_recursive_match {
                for m in &mailboxes {
                    if !subscribed(&m.name) {
                        names.push((m.name.clone(), Some(m)));
                    }
                }
                names.sort_by(|a, b| a.0.cmp(&b.0));
            }
        } else {
            for m in &mailboxes {
                names.push((m.name.clone(), Some(m)));
            }
        }
        for (name, mb) in names {
            if !matches(&name) {
                continue;
            }
            let mut item = ListItem {
                delimiter: Some('/'),
                name: name.clone(),
                ..Default::default()
            };
            let is_sub = subscribed(&name);
            if l.select_subscribed && !is_sub {
                // RECURSIVEMATCH (RFC 5258 3.5): a parent is there for a subscribed
                // descendant the patterns do not return themselves.
                let prefix = format!("{name}/");
                if !subs.iter().any(|s| s.starts_with(&prefix) && !matches(s)) {
                    continue;
                }
                item.child_info_subscribed = true;
            }
            if l.select_special_use && mb.is_none_or(|m| m.special_use.is_none()) {
                continue;
            }
            match mb {
                None => item.attributes.push("\\NonExistent".into()),
                Some(m) => {
                    item.attributes.push(if has_children(&name) {
                        "\\HasChildren".into()
                    } else {
                        "\\HasNoChildren".into()
                    });
                    if let Some(su) = &m.special_use {
                        item.attributes.push(su.clone());
                    }
                }
            }
            if show_subscribed && is_sub {
                item.attributes.push("\\Subscribed".into());
            }
            out.push(Response::Data(Data::List(item)));
            if let (Some(items), Some(m)) = (&l.return_status, mb) {
                match self.status(m, items).await {
                    Ok(r) => out.push(r),
                    Err(e) => warn!(error = %e, "LIST STATUS"),
                }
            }
        }
        Outcome::ok(out)
    }

    pub(super) async fn lsub(&self, reference: &str, pattern: &str) -> Outcome {
        let account = self.account_id();
        let (mailboxes, subs) = match (
            self.store.mailboxes(account).await,
            self.store.subscriptions(account).await,
        ) {
            (Ok(m), Ok(s)) => (m, s),
            (Err(e), _) | (_, Err(e)) => return store_no(&e),
        };
        let pattern = format!("{reference}{pattern}");
        let mut names: Vec<(String, bool)> = Vec::new();
        for s in &subs {
            if pattern_matches(&pattern, s) {
                let exists = mailboxes.iter().any(|m| &m.name == s);
                names.push((s.clone(), !exists));
                continue;
            }
            // RFC 3501 6.3.9: with `%`, a subscribed `foo/bar` shows its unsubscribed parent
            // `foo` when the pattern matches it, flagged \Noselect.
            let mut at = 0;
            while let Some(i) = s[at..].find('/') {
                let parent = &s[..at + i];
                at += i + 1;
                if pattern_matches(&pattern, parent)
                    && !subs.iter().any(|x| x == parent)
                    && !names.iter().any(|(n, _)| n == parent)
                {
                    names.push((parent.to_string(), true));
                }
            }
        }
        let out = names
            .into_iter()
            .map(|(name, noselect)| {
                Response::Data(Data::Lsub(ListItem {
                    attributes: if noselect {
                        vec!["\\Noselect".into()]
                    } else {
                        Vec::new()
                    },
                    delimiter: Some('/'),
                    name,
                    ..Default::default()
                }))
            })
            .collect();
        Outcome::ok(out)
    }

    // ---- APPEND ----------------------------------------------------------------------------
}

#[cfg(test)]
mod tests {
    use super::pattern_matches;

    #[test]
    fn list_patterns() {
        assert!(pattern_matches("*", "INBOX"));
        assert!(pattern_matches("*", "a/b"));
        assert!(pattern_matches("%", "Sent"));
        assert!(!pattern_matches("%", "a/b"));
        assert!(pattern_matches("a/%", "a/b"));
        assert!(pattern_matches("inbox", "INBOX"));
        assert!(!pattern_matches("Sent", "Sent/x"));
        assert!(pattern_matches("S*t", "Sent"));
    }
}
