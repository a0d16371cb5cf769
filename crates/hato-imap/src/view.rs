//! The selected mailbox as one session sees it, sans-IO ([`SelectedView`]).
//!
//! A view holds what this session has told its client: the message sequence numbers
//! (RFC 9051 §2.3.1.2) with their UIDs, each message's flags and MODSEQ as last reported,
//! and what the store reported since that the client has not been told yet. The driver
//! feeds store changes in ([`SelectedView::update`], from `Store::changes_since` or a fresh
//! snapshot) whenever it likes; the view decides *when* they may be reported
//! ([`SelectedView::flush`]), following RFC 9051 §7.5.1 / §5.5 and RFC 3501 §7.4.1:
//!
//! * `EXPUNGE` (and `VANISHED` with QRESYNC, RFC 7162 §3.2.10) never while responding to
//!   FETCH, STORE or SEARCH ([`Moment::NoExpunge`]), and never when no command is in
//!   progress (the driver only flushes while a command or IDLE is running). UID FETCH,
//!   UID STORE and UID SEARCH are different commands and may carry them.
//! * Until the client has been told about an expunge, the message keeps its sequence
//!   number, so every number the client uses still means what it thinks
//!   ([`SelectedView::is_expunged`] tells the driver to answer `NO [EXPUNGEISSUED]` or
//!   skip it). New messages are appended at the end, so `EXISTS` may be sent at any moment.
//! * Flag changes by other sessions become `FETCH (FLAGS ...)` — with `UID` when QRESYNC is
//!   enabled (RFC 7162 §3.2.4) and `MODSEQ` with CONDSTORE (§3.1.4).
//! * Several `EXPUNGE`s are sent in descending sequence order, so each number is valid when
//!   the client reads it; with QRESYNC one `VANISHED` lists the UIDs.
//! * CONDSTORE: [`SelectedView::highest_modseq`] never passes an expunge the client has not
//!   been told about (RFC 7162 §3.1.2.1 / §3.2.10).
//! * CONDSTORE enabled by a command while the mailbox is selected (`FETCH ... MODSEQ`,
//!   `SEARCH MODSEQ`, `STORE (UNCHANGEDSINCE ...)`, RFC 7162 §3.1): the next flush sends
//!   `OK [HIGHESTMODSEQ n]` once, as SELECT would have.
//!
//! # Keywords (RFC 9051 §7.3.5, RFC 3501 §7.2.6)
//!
//! The client learns which flags the mailbox uses from `FLAGS`; a keyword must be in it
//! before a `FETCH FLAGS` uses it. The view keeps every keyword it has seen on a message
//! (ASCII-case-insensitive, never shrinking) and how many of them the client was told:
//! [`SelectedView::flags_responses`] at SELECT, and whenever the set grows (a STORE of this
//! or another session, APPEND, COPY) `FLAGS` and `OK [PERMANENTFLAGS]` again, before the
//! FETCH that uses it: at the start of [`SelectedView::flush`], or returned by
//! [`SelectedView::record_sent_flags`] for the driver's own STORE/FETCH responses.
//!
//! # `\Recent` (IMAP4rev1 only)
//!
//! RFC 3501 §2.3.2 makes a message recent in exactly one session: the first to be notified
//! about it. That is shared state, kept by the store (one watermark per mailbox, claimed by
//! read-write sessions); the view only holds the UIDs that are recent for *this* session
//! ([`SelectedView::add_recent`]): the driver adds what its claims returned (SELECT, and
//! whenever UIDNEXT grew), or for a read-only session (EXAMINE) the unclaimed UIDs without
//! taking them. The set may hold UIDs the client does not know yet (claimed before their
//! EXISTS) or that were expunged; `RECENT` counts only messages the client knows. IMAP4rev2
//! dropped `\Recent`: clients that enabled it get no `RECENT` responses and no `\Recent` flag.
//!
//! # The saved search result (`$`, RFC 5182)
//!
//! Saved as UIDs, so expunges cannot shift it; a sequence-number command using `$` gets
//! the sequence numbers of the saved UIDs still in the view. Before any `SAVE` it is empty.

use std::collections::HashSet;

use crate::command::CommandBody;
use crate::flag::Flag;
use crate::response::{Code, Data, FetchValue, Response, StatusKind};
use crate::sequence::{NumberSet, SequenceSet};
use crate::session::Enabled;

/// One message as the store reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewMessage {
    pub uid: u32,
    /// Without `\Recent` (the view adds it).
    pub flags: Vec<Flag>,
    pub modseq: u64,
}

/// The whole mailbox, read in one consistent snapshot (SELECT, or polling when changes are
/// unknown, e.g. after a lagged change notification).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub highest_modseq: u64,
    /// Ascending UID.
    pub messages: Vec<ViewMessage>,
}

/// What changed after a MODSEQ (the store's `Changes`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub highest_modseq: u64,
    pub uidnext: u32,
    /// New messages and messages whose flags changed, ascending UID.
    pub changed: Vec<ViewMessage>,
    /// Expunged UIDs (may include UIDs this view never saw).
    pub vanished: Vec<u32>,
}

/// Input for [`SelectedView::update`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Update {
    Changes(Changes),
    Snapshot(Snapshot),
}

/// Errors of [`SelectedView`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    /// The mailbox was deleted and recreated (new UIDVALIDITY): the session must end
    /// (`* BYE`) or deselect; its numbers mean nothing any more.
    #[error("UIDVALIDITY changed")]
    UidValidityChanged,
    /// A sequence number beyond the number of messages (RFC 9051 §6.4: `BAD`).
    #[error("Invalid message sequence number")]
    InvalidSequence,
}

/// When untagged responses are being sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Moment {
    /// While responding to FETCH, STORE or SEARCH (not their UID forms): no
    /// EXPUNGE/VANISHED.
    NoExpunge,
    /// During any other command (NOOP, CHECK, IDLE, EXPUNGE, UID commands, ...).
    Any,
}

impl Moment {
    /// The moment for responses sent during (or at the end of) this command.
    pub fn during(command: &CommandBody) -> Moment {
        match command {
            CommandBody::Fetch(f) if !f.uid => Moment::NoExpunge,
            CommandBody::Store(s) if !s.uid => Moment::NoExpunge,
            CommandBody::Search(s) if !s.uid => Moment::NoExpunge,
            CommandBody::Sort(s) if !s.uid => Moment::NoExpunge,
            CommandBody::Thread(t) if !t.uid => Moment::NoExpunge,
            _ => Moment::Any,
        }
    }
}

#[derive(Clone, Debug)]
struct Entry {
    uid: u32,
    flags: Vec<Flag>,
    modseq: u64,
    /// Expunged in the store, not yet reported: keeps its sequence number until then.
    expunged: bool,
    /// Flags or MODSEQ changed and not yet reported.
    dirty: bool,
}

/// Per-session state of the selected mailbox (see the module documentation).
#[derive(Clone, Debug)]
pub struct SelectedView {
    uidvalidity: u32,
    uidnext: u32,
    /// What the client knows, in sequence order (ascending UID).
    entries: Vec<Entry>,
    /// New messages not yet announced with EXISTS, ascending UID.
    pending_new: Vec<ViewMessage>,
    /// UIDs that are `\Recent` for this session (see the module documentation).
    recent: NumberSet,
    /// `add_recent` marked messages the client already knows: send `RECENT` at the next flush.
    recent_unannounced: bool,
    /// The store's HIGHESTMODSEQ as last applied (pass it to the next `changes_since`).
    synced_modseq: u64,
    /// The HIGHESTMODSEQ the client may be told.
    reported_modseq: u64,
    saved: NumberSet,
    /// Every keyword seen on a message, in the order seen (see the module documentation).
    keywords: Vec<String>,
    /// `keywords`, ASCII-lowercased.
    keyword_set: HashSet<String>,
    /// How many of `keywords` the client was told about in `FLAGS`.
    keywords_announced: usize,
    /// The mailbox is read-only (EXAMINE): PERMANENTFLAGS is empty.
    read_only: bool,
    /// The client was told HIGHESTMODSEQ (RFC 7162 §3.1).
    modseq_announced: bool,
}

impl SelectedView {
    /// The view right after SELECT/EXAMINE of a mailbox in this state.
    pub fn new(snapshot: Snapshot) -> SelectedView {
        let mut entries: Vec<Entry> = Vec::with_capacity(snapshot.messages.len());
        for m in snapshot.messages {
            // Defensive: keep the order strictly ascending whatever the input.
            if entries.last().is_some_and(|e| e.uid >= m.uid) {
                continue;
            }
            entries.push(Entry {
                uid: m.uid,
                flags: m.flags,
                modseq: m.modseq,
                expunged: false,
                dirty: false,
            });
        }
        let uidnext = snapshot
            .uidnext
            .max(entries.last().map_or(1, |e| e.uid.saturating_add(1)));
        let mut view = SelectedView {
            uidvalidity: snapshot.uidvalidity,
            uidnext,
            entries,
            pending_new: Vec::new(),
            recent: NumberSet::new(),
            recent_unannounced: false,
            synced_modseq: snapshot.highest_modseq,
            reported_modseq: snapshot.highest_modseq,
            saved: NumberSet::new(),
            keywords: Vec::new(),
            keyword_set: HashSet::new(),
            keywords_announced: 0,
            read_only: false,
            modseq_announced: false,
        };
        for i in 0..view.entries.len() {
            let flags = std::mem::take(&mut view.entries[i].flags);
            view.note_keywords(&flags);
            view.entries[i].flags = flags;
        }
        view
    }

    /// Marks the mailbox read-only (EXAMINE): `PERMANENTFLAGS ()` from then on.
    pub fn set_read_only(&mut self, read_only: bool) {
        self.read_only = read_only;
    }

    /// `FLAGS` (the system flags and every keyword the view has seen) and
    /// `OK [PERMANENTFLAGS]` (the same and `\*`, or nothing when read-only): the first
    /// responses of SELECT/EXAMINE (RFC 9051 §6.3.2), and what announces new keywords
    /// later (§7.3.5). Afterwards the client knows every keyword.
    pub fn flags_responses(&mut self) -> Vec<Response> {
        self.keywords_announced = self.keywords.len();
        let mut flags = vec![
            Flag::Answered,
            Flag::Flagged,
            Flag::Deleted,
            Flag::Seen,
            Flag::Draft,
        ];
        flags.extend(self.keywords.iter().map(|k| Flag::Keyword(k.clone())));
        let (permanent, text) = if self.read_only {
            (Vec::new(), "Read-only mailbox")
        } else {
            (flags.clone(), "Flags permitted")
        };
        vec![
            Response::Data(Data::Flags(flags)),
            ok_code(
                Code::PermanentFlags {
                    flags: permanent,
                    any: !self.read_only,
                },
                text,
            ),
        ]
    }

    /// The keywords the client was told about (in `FLAGS`) or will be at the next flush.
    pub fn keywords(&self) -> &[String] {
        &self.keywords
    }

    /// Adds the keywords among `flags` that the view has not seen yet.
    fn note_keywords(&mut self, flags: &[Flag]) {
        for f in flags {
            if let Flag::Keyword(k) = f {
                let lower = k.to_ascii_lowercase();
                if !self.keyword_set.contains(&lower) {
                    self.keyword_set.insert(lower);
                    self.keywords.push(k.clone());
                }
            }
        }
    }

    /// `FLAGS`/`PERMANENTFLAGS` if a keyword was seen that the client was not told about.
    fn keyword_announcement(&mut self) -> Vec<Response> {
        if self.keywords_announced < self.keywords.len() {
            self.flags_responses()
        } else {
            Vec::new()
        }
    }

    /// The untagged responses of a successful SELECT/EXAMINE that depend on the mailbox
    /// (RFC 9051 §6.3.2; RFC 3501 RECENT and UNSEEN for IMAP4rev1 clients; RFC 7162
    /// HIGHESTMODSEQ with CONDSTORE). FLAGS and PERMANENTFLAGS come before them, from
    /// [`SelectedView::flags_responses`]. Call it after [`SelectedView::add_recent`] of the
    /// selection's recent UIDs.
    pub fn select_responses(&mut self, enabled: Enabled) -> Vec<Response> {
        self.recent_unannounced = false;
        let mut out = vec![Response::Data(Data::Exists(self.exists()))];
        if !enabled.imap4rev2 {
            out.push(Response::Data(Data::Recent(self.recent_count())));
            if let Some(seq) = self.first_unseen() {
                out.push(ok_code(Code::Unseen(seq), "First unseen"));
            }
        }
        out.push(ok_code(Code::UidValidity(self.uidvalidity), "UIDs valid"));
        out.push(ok_code(Code::UidNext(self.uidnext), "Predicted next UID"));
        if enabled.condstore || enabled.qresync {
            out.push(ok_code(
                Code::HighestModSeq(self.highest_modseq()),
                "Highest",
            ));
            self.modseq_announced = true;
        }
        out
    }

    pub fn uidvalidity(&self) -> u32 {
        self.uidvalidity
    }

    pub fn uidnext(&self) -> u32 {
        self.uidnext
    }

    /// The number of messages the client knows about (its last EXISTS minus reported
    /// expunges).
    pub fn exists(&self) -> u32 {
        self.entries.len() as u32
    }

    /// HIGHESTMODSEQ as the client may be told it (CONDSTORE).
    pub fn highest_modseq(&self) -> u64 {
        self.reported_modseq
    }

    /// The store MODSEQ this view has applied: ask the store for changes since this.
    pub fn synced_modseq(&self) -> u64 {
        self.synced_modseq
    }

    /// Whether anything is waiting to be reported.
    pub fn has_pending(&self) -> bool {
        !self.pending_new.is_empty() || self.entries.iter().any(|e| e.expunged || e.dirty)
    }

    /// The UID of a sequence number the client knows.
    pub fn uid(&self, seq: u32) -> Option<u32> {
        let i = (seq as usize).checked_sub(1)?;
        self.entries.get(i).map(|e| e.uid)
    }

    /// The sequence number of a UID, if the client knows the message.
    pub fn seq(&self, uid: u32) -> Option<u32> {
        self.index(uid).map(|i| i as u32 + 1)
    }

    fn index(&self, uid: u32) -> Option<usize> {
        self.entries.binary_search_by_key(&uid, |e| e.uid).ok()
    }

    /// The message was expunged by another session and the client has not been told yet
    /// (FETCH of it: RFC 9051 §7.5.1 allows `NO [EXPUNGEISSUED]` or omitting it).
    pub fn is_expunged(&self, uid: u32) -> bool {
        self.index(uid).is_some_and(|i| self.entries[i].expunged)
    }

    /// The flags the client should see for a message (with `\Recent` for IMAP4rev1
    /// clients), as the view knows them now.
    pub fn flags(&self, uid: u32, enabled: Enabled) -> Option<Vec<Flag>> {
        let e = &self.entries[self.index(uid)?];
        Some(self.flags_out(e, enabled))
    }

    pub fn modseq(&self, uid: u32) -> Option<u64> {
        self.index(uid).map(|i| self.entries[i].modseq)
    }

    fn flags_out(&self, e: &Entry, enabled: Enabled) -> Vec<Flag> {
        let mut flags = e.flags.clone();
        flags.retain(|f| *f != Flag::Recent);
        if !enabled.imap4rev2 && self.is_recent(e.uid) {
            flags.push(Flag::Recent);
        }
        flags
    }

    /// Makes the UIDs `from..to_exclusive` `\Recent` for this session (a range the store's
    /// claim returned, or the unclaimed range a read-only session may show). Nothing is sent:
    /// if the client already knows one of these messages, the next
    /// [`SelectedView::flush`] sends `RECENT` (new messages are announced with it anyway).
    pub fn add_recent(&mut self, from: u32, to_exclusive: u32) {
        let from = from.max(1);
        if from >= to_exclusive {
            return;
        }
        let last = to_exclusive - 1;
        let known = self.entries.partition_point(|e| e.uid < from)
            < self.entries.partition_point(|e| e.uid <= last);
        self.recent_unannounced |= known;
        self.recent.insert_range(from, last);
    }

    /// `\Recent` for this session (see the module documentation).
    pub fn is_recent(&self, uid: u32) -> bool {
        self.recent.contains(uid)
    }

    /// How many messages the client knows are recent.
    pub fn recent_count(&self) -> u32 {
        self.recent
            .ranges()
            .map(|r| {
                let start = self.entries.partition_point(|e| e.uid < *r.start());
                let end = self.entries.partition_point(|e| e.uid <= *r.end());
                (end - start) as u32
            })
            .sum()
    }

    /// Sequence number of the first message without `\Seen`.
    pub fn first_unseen(&self) -> Option<u32> {
        self.entries
            .iter()
            .position(|e| !e.flags.contains(&Flag::Seen))
            .map(|i| i as u32 + 1)
    }

    /// Every (sequence number, UID) the client knows, ascending.
    pub fn messages(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.entries
            .iter()
            .enumerate()
            .map(|(i, e)| (i as u32 + 1, e.uid))
    }

    // -- sets --------------------------------------------------------------------------

    /// Saves a search result (`SEARCH RETURN (SAVE)`, RFC 5182) as UIDs.
    pub fn save_result(&mut self, uids: NumberSet) {
        self.saved = uids;
    }

    /// The saved result (`$`), as UIDs.
    pub fn saved(&self) -> &NumberSet {
        &self.saved
    }

    /// Resolves a sequence set of message sequence numbers to (sequence number, UID),
    /// ascending. `*` is the last message; in a set using `*`, numbers beyond the last
    /// message stand for it (`7:*` with 5 messages is `5`); otherwise a number beyond the
    /// last message is [`ViewError::InvalidSequence`]. On an empty mailbox `*` names
    /// nothing. `$` names the saved UIDs still present.
    pub fn resolve_seq(&self, set: &SequenceSet) -> Result<Vec<(u32, u32)>, ViewError> {
        let count = self.exists();
        let numbers = match set {
            SequenceSet::Saved => return Ok(self.resolve_uid_set(&self.saved)),
            SequenceSet::Ranges(_) => {
                let uses_star = set.uses_largest();
                if !uses_star && set.max_value().is_some_and(|m| m > count) {
                    return Err(ViewError::InvalidSequence);
                }
                if count == 0 {
                    return if uses_star {
                        Ok(Vec::new())
                    } else {
                        Err(ViewError::InvalidSequence)
                    };
                }
                set.resolve(count).unwrap_or_default()
            }
        };
        let mut out = Vec::new();
        for r in numbers.ranges() {
            let (lo, hi) = (*r.start(), (*r.end()).min(count));
            for seq in lo..=hi {
                out.push((seq, self.entries[seq as usize - 1].uid));
            }
            if *r.end() >= count {
                break;
            }
        }
        Ok(out)
    }

    /// Resolves a UID set to the (sequence number, UID) of the messages the client knows,
    /// ascending. `*` is the largest UID in the view (RFC 9051 §6.4.9: `n:*` always
    /// includes it; nothing on an empty mailbox); UIDs that do not exist are ignored.
    pub fn resolve_uid(&self, set: &SequenceSet) -> Vec<(u32, u32)> {
        match set {
            SequenceSet::Saved => self.resolve_uid_set(&self.saved),
            SequenceSet::Ranges(_) => {
                let largest = self.entries.last().map_or(0, |e| e.uid);
                if largest == 0 {
                    return Vec::new();
                }
                let uids = set.resolve(largest).unwrap_or_default();
                self.resolve_uid_set(&uids)
            }
        }
    }

    fn resolve_uid_set(&self, uids: &NumberSet) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        for r in uids.ranges() {
            let start = self.entries.partition_point(|e| e.uid < *r.start());
            let end = self.entries.partition_point(|e| e.uid <= *r.end());
            for i in start..end {
                out.push((i as u32 + 1, self.entries[i].uid));
            }
        }
        out
    }

    // -- changes -----------------------------------------------------------------------

    /// Takes in what the store reports. Nothing is sent: see [`SelectedView::flush`].
    pub fn update(&mut self, update: Update) -> Result<(), ViewError> {
        match update {
            Update::Changes(c) => {
                self.apply(c);
                Ok(())
            }
            Update::Snapshot(s) => {
                if s.uidvalidity != self.uidvalidity {
                    return Err(ViewError::UidValidityChanged);
                }
                let changes = self.diff(s);
                self.apply(changes);
                Ok(())
            }
        }
    }

    /// The changes that turn the view (as the store last reported it) into `s`.
    fn diff(&self, s: Snapshot) -> Changes {
        let in_snapshot = |uid: u32| s.messages.binary_search_by_key(&uid, |m| m.uid).is_ok();
        let vanished = self
            .entries
            .iter()
            .filter(|e| !e.expunged && !in_snapshot(e.uid))
            .map(|e| e.uid)
            .chain(
                self.pending_new
                    .iter()
                    .filter(|m| !in_snapshot(m.uid))
                    .map(|m| m.uid),
            )
            .collect();
        let changed = s
            .messages
            .into_iter()
            .filter(|m| match self.index(m.uid) {
                Some(i) => {
                    let e = &self.entries[i];
                    e.flags != m.flags || e.modseq != m.modseq
                }
                None => true,
            })
            .collect();
        Changes {
            highest_modseq: s.highest_modseq,
            uidnext: s.uidnext,
            changed,
            vanished,
        }
    }

    fn apply(&mut self, c: Changes) {
        for uid in c.vanished {
            if let Some(i) = self.index(uid) {
                let e = &mut self.entries[i];
                e.expunged = true;
                e.dirty = false;
            } else if let Ok(i) = self.pending_new.binary_search_by_key(&uid, |m| m.uid) {
                self.pending_new.remove(i);
            }
        }
        for m in c.changed {
            self.note_keywords(&m.flags);
            if let Some(i) = self.index(m.uid) {
                let e = &mut self.entries[i];
                if e.expunged {
                    continue;
                }
                if e.flags != m.flags || e.modseq != m.modseq {
                    e.dirty |= e.flags != m.flags || m.modseq > e.modseq;
                    e.flags = m.flags;
                    e.modseq = m.modseq;
                }
                continue;
            }
            match self.pending_new.binary_search_by_key(&m.uid, |p| p.uid) {
                Ok(i) => self.pending_new[i] = m,
                Err(i) => {
                    // New messages only ever come after every known UID (UIDs ascend);
                    // anything else is ignored rather than renumbering the client's view.
                    let last_known = self.entries.last().map_or(0, |e| e.uid);
                    if m.uid > last_known {
                        self.pending_new.insert(i, m);
                    }
                }
            }
        }
        self.uidnext = self.uidnext.max(c.uidnext);
        if let Some(last) = self.pending_new.last() {
            self.uidnext = self.uidnext.max(last.uid.saturating_add(1));
        }
        self.synced_modseq = self.synced_modseq.max(c.highest_modseq);
        self.settle_modseq();
    }

    fn settle_modseq(&mut self) {
        if !self.entries.iter().any(|e| e.expunged) {
            self.reported_modseq = self.reported_modseq.max(self.synced_modseq);
        }
    }

    /// Records that the client is being sent this message's flags (by the driver's own
    /// STORE or FETCH response), so they are not reported again. Returns what must go
    /// before that FETCH: `FLAGS` and `OK [PERMANENTFLAGS]` when the flags carry a keyword
    /// the client was not told about (RFC 9051 §7.3.5), else nothing.
    #[must_use = "the FLAGS announcing new keywords must precede the FETCH"]
    pub fn record_sent_flags(&mut self, uid: u32, flags: Vec<Flag>, modseq: u64) -> Vec<Response> {
        self.note_keywords(&flags);
        if let Some(i) = self.index(uid) {
            let e = &mut self.entries[i];
            if !e.expunged {
                e.flags = flags;
                e.modseq = e.modseq.max(modseq);
                e.dirty = false;
            }
        }
        self.keyword_announcement()
    }

    /// The untagged responses that may be sent now, in order: FLAGS and PERMANENTFLAGS when
    /// keywords were added, EXPUNGE/VANISHED (unless [`Moment::NoExpunge`]), EXISTS (and
    /// RECENT for IMAP4rev1, also when [`SelectedView::add_recent`] marked known messages),
    /// FETCH of changed flags, then `OK [HIGHESTMODSEQ]` if CONDSTORE was enabled since
    /// SELECT. Afterwards the view matches what the client was told.
    pub fn flush(&mut self, moment: Moment, enabled: Enabled) -> Vec<Response> {
        let mut out = self.keyword_announcement();
        if moment == Moment::Any && self.entries.iter().any(|e| e.expunged) {
            if enabled.qresync {
                let uids = NumberSet::from_numbers(
                    self.entries.iter().filter(|e| e.expunged).map(|e| e.uid),
                );
                out.push(Response::Data(Data::Vanished {
                    earlier: false,
                    uids,
                }));
            } else {
                for (i, e) in self.entries.iter().enumerate().rev() {
                    if e.expunged {
                        out.push(Response::Data(Data::Expunge(i as u32 + 1)));
                    }
                }
            }
            self.entries.retain(|e| !e.expunged);
            self.settle_modseq();
        }
        if !self.pending_new.is_empty() {
            for m in std::mem::take(&mut self.pending_new) {
                self.entries.push(Entry {
                    uid: m.uid,
                    flags: m.flags,
                    modseq: m.modseq,
                    expunged: false,
                    dirty: false,
                });
            }
            out.push(Response::Data(Data::Exists(self.exists())));
            self.recent_unannounced = true;
        }
        if std::mem::take(&mut self.recent_unannounced) && !enabled.imap4rev2 {
            out.push(Response::Data(Data::Recent(self.recent_count())));
        }
        let condstore = enabled.condstore || enabled.qresync;
        for i in 0..self.entries.len() {
            let e = &self.entries[i];
            if !e.dirty || e.expunged {
                continue;
            }
            let mut items = vec![FetchValue::Flags(self.flags_out(e, enabled))];
            if enabled.qresync {
                items.insert(0, FetchValue::Uid(e.uid));
            }
            if condstore {
                items.push(FetchValue::ModSeq(e.modseq));
            }
            out.push(Response::Data(Data::Fetch {
                seq: i as u32 + 1,
                items,
            }));
            self.entries[i].dirty = false;
        }
        if condstore && !self.modseq_announced {
            // RFC 7162 §3.1: CONDSTORE was enabled while the mailbox was selected.
            out.push(ok_code(
                Code::HighestModSeq(self.highest_modseq()),
                "Highest",
            ));
            self.modseq_announced = true;
        }
        out
    }

    /// QRESYNC SELECT (RFC 7162 §3.2.5.1) or `UID FETCH ... (CHANGEDSINCE n VANISHED)`
    /// (§3.2.6): `* VANISHED (EARLIER)` for the expunged UIDs (limited to `known_uids` when
    /// given), then `FETCH (UID FLAGS MODSEQ)` for messages of the view that changed. The
    /// changes come from `changes_since(client's modseq)`; they do not alter the view.
    pub fn resync_responses(
        &self,
        changes: &Changes,
        known_uids: Option<&NumberSet>,
        enabled: Enabled,
    ) -> Vec<Response> {
        let mut out = Vec::new();
        let vanished = NumberSet::from_numbers(
            changes
                .vanished
                .iter()
                .copied()
                .filter(|u| known_uids.is_none_or(|k| k.contains(*u)))
                .filter(|u| self.index(*u).is_none()),
        );
        if !vanished.is_empty() {
            out.push(Response::Data(Data::Vanished {
                earlier: true,
                uids: vanished,
            }));
        }
        for m in &changes.changed {
            let Some(i) = self.index(m.uid) else {
                continue;
            };
            let e = &self.entries[i];
            out.push(Response::Data(Data::Fetch {
                seq: i as u32 + 1,
                items: vec![
                    FetchValue::Uid(e.uid),
                    FetchValue::Flags(self.flags_out(e, enabled)),
                    FetchValue::ModSeq(e.modseq),
                ],
            }));
        }
        out
    }
}

fn ok_code(code: Code, text: &str) -> Response {
    Response::untagged(StatusKind::Ok, Some(code), text)
}

#[cfg(test)]
mod tests;
