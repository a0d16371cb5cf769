//! The IMAP driver: runs one connection of an `imap` listener through the sans-IO
//! [`hato_imap::Session`], answering its actions with [`crate::policy::Policy`] (shared AUTH
//! throttling) and the store. The selected mailbox is a [`SelectedView`] kept in step with the
//! store through `changes_since`; after every command untagged updates are flushed as the
//! view's [`Moment`] rules allow. IDLE wakes on [`hato_store::Store::subscribe_changes`] for the
//! selected mailbox (the store also announces writes of other processes, about once a second).
//!
//! `\Recent` (RFC 3501 §2.3.2) is the store's per-mailbox watermark: a read-write session claims
//! the unclaimed UIDs ([`hato_store::Store::claim_recent`]) at SELECT and again whenever a sync
//! shows UIDNEXT beyond what it already considered and something unclaimed, and adds what it got
//! to its view; a read-only session (EXAMINE) shows the unclaimed UIDs as recent without taking
//! them, so a later SELECT still gets them. A session with IMAP4rev2 enabled takes no part.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use hato_imap::command::{
    AppendMessage, CommandBody, FetchAttr, FetchCommand, ListCommand, SearchCommand, StatusItem,
    StoreCommand, StoreOp,
};
use hato_imap::flag::Flag;
use hato_imap::response::{FetchValue, ListItem, StatusValue};
use hato_imap::sequence::{NumberSet, SequenceSet};
use hato_imap::view::{Snapshot, Update, ViewMessage};
use hato_imap::{
    Action, AuthOutcome, Code, Command, Data, Enabled, Moment, Outcome, ParsedMessage, Response,
    Search, SelectedView, Session, StatusKind,
};
use hato_store::{AccountId, Expunge, FlagOp, Mailbox, MailboxId, MessageEntry, Store, StoreError};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::broadcast;
use tracing::{error, info, warn};

use crate::net::{self, ClientStream, Connection, Input, Shutdown, Timeouts, write_with_timeout};
use crate::policy::Policy;

/// RFC 9051 5.4: the autologout timer must be at least 30 minutes once logged in.
const MIN_AUTHENTICATED_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// IDLE's pause before syncing when the store's change channel is gone (shutting down).
const IDLE_POLL: Duration = Duration::from_secs(1);

/// The `imap` service: what its connections need, built once per listener.
pub struct ImapService {
    pub config: Arc<hato_imap::Config>,
    pub policy: Arc<Policy>,
    pub timeouts: Timeouts,
    pub shutdown: Shutdown,
    /// Decoded header fields of messages, shared by all IMAP listeners.
    pub header_cache: Arc<HeaderCache>,
}

#[async_trait::async_trait]
impl net::Service for ImapService {
    fn name(&self) -> &'static str {
        "imap"
    }

    fn busy_reply(&self, why: &str) -> Vec<u8> {
        format!("* BYE [UNAVAILABLE] {why}, try again later\r\n").into_bytes()
    }

    /// Serves one IMAP connection; returns the counts for the disconnect log line.
    async fn serve(&self, conn: Connection) -> anyhow::Result<String> {
        let Connection {
            mut stream,
            peer,
            tls,
        } = conn;
        let mut conn = Conn {
            svc: self,
            store: self.policy.store().clone(),
            ip: peer.ip(),
            account: None,
            selected: None,
            append_limit: self.config.limits.max_append_literal,
            quota_bytes: self.config.quota_bytes,
        };
        let mut session = Session::new(self.config.clone(), tls);
        session.greet();
        while conn.drive(&mut session, &mut stream).await? {
            let facts = stream.start_tls().await?;
            session.tls_established(facts);
        }
        let s = session.stats();
        Ok(format!(
            "commands={} errors={} auth_failures={}",
            s.commands, s.errors, s.auth_failures
        ))
    }
}

/// Decoded, case-folded header fields per message blob (blobs never change and ids are never
/// reused), shared by all IMAP sessions: a SEARCH on SUBJECT/FROM/HEADER... over a mailbox
/// reads each message's header once, not once per search, like Dovecot's cache file. Bounded
/// in bytes; the oldest entries go first.
pub struct HeaderCache {
    inner: std::sync::Mutex<HeaderCacheInner>,
    limit: usize,
}

#[derive(Default)]
struct HeaderCacheInner {
    map: HashMap<hato_store::BlobId, Arc<[(String, String)]>>,
    order: std::collections::VecDeque<hato_store::BlobId>,
    bytes: usize,
}

impl HeaderCache {
    pub fn new(limit: usize) -> HeaderCache {
        HeaderCache {
            inner: std::sync::Mutex::new(HeaderCacheInner::default()),
            limit,
        }
    }

    fn get(&self, blob: hato_store::BlobId) -> Option<Arc<[(String, String)]>> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.map.get(&blob).cloned()
    }

    fn insert(&self, blob: hato_store::BlobId, fields: Arc<[(String, String)]>) {
        let size = fields
            .iter()
            .map(|(n, v)| n.len() + v.len() + 48)
            .sum::<usize>()
            + 64;
        if size > self.limit / 4 {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.map.insert(blob, fields).is_some() {
            return;
        }
        inner.order.push_back(blob);
        inner.bytes += size;
        while inner.bytes > self.limit {
            let Some(old) = inner.order.pop_front() else {
                break;
            };
            if let Some(f) = inner.map.remove(&old) {
                inner.bytes -= f.iter().map(|(n, v)| n.len() + v.len() + 48).sum::<usize>() + 64;
            }
        }
    }
}

/// The selected mailbox.
struct Selected {
    id: MailboxId,
    view: SelectedView,
    read_only: bool,
    /// How this session takes part in `\Recent`.
    recent: RecentMode,
    /// UIDs below were considered for `\Recent` already: claimed by this session (or, read-only,
    /// shown as recent if unclaimed) or seen claimed by another session.
    recent_to: u32,
}

/// A selected mailbox's part in `\Recent` (RFC 3501 §2.3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RecentMode {
    /// SELECT: takes the unclaimed messages (one store write when there are any).
    Claim,
    /// EXAMINE: shows the unclaimed messages as recent, leaves them for the next SELECT.
    Peek,
    /// IMAP4rev2 enabled: the client cannot see `\Recent`, so it takes nothing from IMAP4rev1
    /// clients.
    Off,
}

impl Selected {
    /// Brings this session's `\Recent` UIDs up to date with what the store last reported: its
    /// watermark `recent_uid` and `uidnext` (from `mailbox_status` or `changes_since`). Costs
    /// nothing unless UIDNEXT passed `recent_to`; a read-write session then claims (one write)
    /// unless the read showed everything claimed by others already.
    async fn take_recent(&mut self, store: &dyn Store, recent_uid: u32, uidnext: u32) {
        if uidnext <= self.recent_to {
            return;
        }
        match self.recent {
            RecentMode::Claim => {}
            RecentMode::Peek => {
                // EXAMINE does not take \Recent (RFC 3501 6.3.2): show the unclaimed ones.
                self.view
                    .add_recent(recent_uid.max(self.recent_to), uidnext);
                self.recent_to = uidnext;
                return;
            }
            RecentMode::Off => {
                self.recent_to = uidnext;
                return;
            }
        }
        if recent_uid >= uidnext {
            // Another session was notified first.
            self.recent_to = uidnext;
            return;
        }
        match store.claim_recent(self.id).await {
            Ok(Some((from, to))) => {
                self.view.add_recent(from, to);
                self.recent_to = self.recent_to.max(to);
            }
            // The mailbox is gone: the next sync expunges everything.
            Ok(None) => {}
            Err(e) => warn!(error = %e, "cannot claim recent messages"),
        }
    }
}

struct Conn<'a> {
    svc: &'a ImapService,
    store: Arc<dyn Store>,
    ip: IpAddr,
    account: Option<hato_store::Account>,
    selected: Option<Selected>,
    append_limit: u64,
    /// `[limits] quota_bytes`: the account's storage limit (RFC 9208 root "").
    quota_bytes: Option<u64>,
}

/// A store error as a tagged NO.
fn store_no(e: &StoreError) -> Outcome {
    let code = match e {
        StoreError::NotFound(_) => Code::NonExistent,
        StoreError::Conflict(_) => Code::AlreadyExists,
        StoreError::Invalid(_) => Code::Cannot,
        StoreError::Limit(_) => Code::Limit,
        StoreError::HasChildren(_) => Code::HasChildren,
        StoreError::SchemaTooNew { .. } | StoreError::Backend(_) => {
            error!(error = %e, "store error");
            return Outcome::no(Some(Code::ServerBug), "Internal error, try again later");
        }
    };
    Outcome::no(Some(code), &e.to_string())
}

fn bad(text: &str) -> Outcome {
    Outcome {
        untagged: Vec::new(),
        kind: StatusKind::Bad,
        code: None,
        text: text.to_string(),
    }
}

fn flags_in(stored: &[String]) -> Vec<Flag> {
    stored.iter().map(|f| Flag::from_wire(f)).collect()
}

/// Flags a client may store (`\Recent` is the server's).
fn flags_out(flags: &[Flag]) -> Vec<String> {
    flags
        .iter()
        .filter(|f| **f != Flag::Recent)
        .map(|f| f.as_str().to_string())
        .collect()
}

fn view_message(e: &MessageEntry) -> ViewMessage {
    ViewMessage {
        uid: e.uid,
        flags: flags_in(&e.flags),
        modseq: e.modseq,
    }
}

fn to_view_changes(c: hato_store::Changes) -> hato_imap::view::Changes {
    hato_imap::view::Changes {
        highest_modseq: c.highest_modseq,
        uidnext: c.uidnext,
        changed: c.changed.iter().map(view_message).collect(),
        vanished: c.vanished,
    }
}

fn untagged_ok(code: Code, text: &str) -> Response {
    Response::untagged(StatusKind::Ok, Some(code), text)
}

impl<'a> Conn<'a> {
    fn account_id(&self) -> AccountId {
        self.account.as_ref().map(|a| a.id).unwrap_or(-1)
    }

    /// Runs the session until it closes (false) or asks for STARTTLS (true).
    async fn drive(&mut self, s: &mut Session, io: &mut ClientStream) -> anyhow::Result<bool> {
        let mut buf = vec![0u8; 16 * 1024];
        let mut shutdown = self.svc.shutdown.clone();
        let write_timeout = self.svc.timeouts.command;
        let mut idle_rx: Option<broadcast::Receiver<hato_store::MailboxChanged>> = None;
        loop {
            let action = s.poll();
            if action != Action::Idle {
                idle_rx = None;
            }
            match action {
                Action::NeedInput => {
                    write_with_timeout(io, &s.output(), write_timeout).await?;
                    let timeout = self.read_timeout();
                    match net::read_input(io, &mut buf, timeout, &mut shutdown).await? {
                        Input::Data(n) => s.feed(&buf[..n]),
                        Input::Closed => return Ok(false),
                        Input::TimedOut => s.timeout(),
                        Input::Shutdown => s.shutdown(),
                    }
                }
                Action::Idle => {
                    if idle_rx.is_none() {
                        // Subscribe first, then catch up: no change can slip in between.
                        idle_rx = Some(self.store.subscribe_changes());
                        let updates = self.updates(Moment::Any, s.enabled()).await;
                        s.idle_update(updates);
                    }
                    write_with_timeout(io, &s.output(), write_timeout).await?;
                    let timeout = self.read_timeout();
                    let selected = self.selected.as_ref().map(|x| x.id);
                    let rx = idle_rx.as_mut().expect("subscribed above");
                    let deadline = tokio::time::sleep(timeout);
                    tokio::pin!(deadline);
                    // Wait for input or a change of the selected mailbox (the store announces
                    // other processes' writes too, within about a second).
                    let wake = loop {
                        tokio::select! {
                            r = io.read(&mut buf) => break Some(r),
                            ev = rx.recv() => match ev {
                                Ok(ev) if Some(ev.mailbox) == selected => break None,
                                Ok(_) => {}
                                Err(broadcast::error::RecvError::Lagged(_)) => break None,
                                Err(broadcast::error::RecvError::Closed) => {
                                    tokio::time::sleep(IDLE_POLL).await;
                                    break None;
                                }
                            },
                            _ = &mut deadline => {
                                info!(timeout_s = timeout.as_secs(), "timeout");
                                s.timeout();
                                break None;
                            }
                            _ = shutdown.changed() => {
                                s.shutdown();
                                break None;
                            }
                        }
                    };
                    match wake {
                        Some(Ok(0)) => return Ok(false),
                        Some(Ok(n)) => s.feed(&buf[..n]),
                        Some(Err(e)) => return Err(e.into()),
                        None => {
                            let updates = self.updates(Moment::Any, s.enabled()).await;
                            s.idle_update(updates);
                        }
                    }
                }
                Action::StartTls => {
                    write_with_timeout(io, &s.output(), write_timeout).await?;
                    return Ok(true);
                }
                Action::Close => {
                    write_with_timeout(io, &s.output(), write_timeout).await?;
                    let _ = io.shutdown().await;
                    return Ok(false);
                }
                Action::Authenticate { username, password } => {
                    let (verdict, account) = self
                        .svc
                        .policy
                        .authenticate(self.ip, None, &username, &password)
                        .await;
                    let verdict = match (verdict, account) {
                        (hato_wire::AuthOutcome::Ok, Some(a)) => {
                            let tls = s.tls();
                            info!(
                                user = %a.address,
                                tls_version = tls.map(|t| t.version.as_str()).unwrap_or("-"),
                                tls_cipher = tls.map(|t| t.cipher.as_str()).unwrap_or("-"),
                                "login ok"
                            );
                            self.account = Some(a);
                            AuthOutcome::Ok
                        }
                        (hato_wire::AuthOutcome::Throttled, _) => {
                            warn!(user = %username, "login refused: too many failures");
                            AuthOutcome::Throttled
                        }
                        _ => {
                            warn!(user = %username, "login failed");
                            AuthOutcome::Failed
                        }
                    };
                    s.auth_result(verdict);
                }
                Action::Execute(cmd) => {
                    // Send what is pending first: FETCH streams its responses itself.
                    write_with_timeout(io, &s.output(), write_timeout).await?;
                    let enabled = s.enabled();
                    let outcome = match &cmd.body {
                        CommandBody::Fetch(f) => {
                            let mut sink = Sink {
                                io: &mut *io,
                                opts: s.encode_options(),
                                buf: Vec::new(),
                                timeout: write_timeout,
                            };
                            let mut o = self.fetch(f, enabled, &mut sink).await?;
                            sink.flush().await?;
                            let more = self.updates(Moment::during(&cmd.body), enabled).await;
                            o.untagged.extend(more);
                            o
                        }
                        _ => self.execute(&cmd, enabled).await,
                    };
                    s.command_done(outcome);
                }
            }
        }
    }

    fn read_timeout(&self) -> Duration {
        if self.account.is_none() {
            self.svc.timeouts.unauthenticated
        } else {
            self.svc.timeouts.command.max(MIN_AUTHENTICATED_TIMEOUT)
        }
    }

    /// Brings the view up to date with the store.
    async fn sync(&mut self) {
        let Some(sel) = self.selected.as_mut() else {
            return;
        };
        match self
            .store
            .changes_since(sel.id, sel.view.synced_modseq())
            .await
        {
            Ok(Some(c)) => {
                let (recent_uid, uidnext) = (c.recent_uid, c.uidnext);
                let _ = sel.view.update(Update::Changes(to_view_changes(c)));
                // Before the flush, so the EXISTS of new mail comes with its RECENT count.
                sel.take_recent(self.store.as_ref(), recent_uid, uidnext)
                    .await;
            }
            // The mailbox was deleted (or renamed away) by another session: its messages are
            // gone for this one too.
            Ok(None) => {
                let vanished: Vec<u32> = sel
                    .view
                    .messages()
                    .map(|(_, uid)| uid)
                    .filter(|uid| !sel.view.is_expunged(*uid))
                    .collect();
                if !vanished.is_empty() {
                    let changes = hato_imap::view::Changes {
                        highest_modseq: sel.view.synced_modseq(),
                        uidnext: sel.view.uidnext(),
                        changed: Vec::new(),
                        vanished,
                    };
                    let _ = sel.view.update(Update::Changes(changes));
                }
            }
            Err(e) => warn!(error = %e, "cannot read mailbox changes"),
        }
    }

    /// Syncs and returns the untagged updates allowed at `moment`.
    async fn updates(&mut self, moment: Moment, enabled: Enabled) -> Vec<Response> {
        self.sync().await;
        match self.selected.as_mut() {
            Some(sel) => sel.view.flush(moment, enabled),
            None => Vec::new(),
        }
    }

    async fn execute(&mut self, cmd: &Command, enabled: Enabled) -> Outcome {
        let mut outcome = match &cmd.body {
            CommandBody::Select {
                mailbox,
                read_only,
                qresync,
                ..
            } => {
                return self
                    .select(mailbox, *read_only, qresync.as_ref(), enabled)
                    .await;
            }
            CommandBody::Close => {
                if let Some(sel) = self.selected.take()
                    && !sel.read_only
                    && let Err(e) = self.store.expunge(sel.id, Expunge::Deleted).await
                {
                    return store_no(&e);
                }
                return Outcome::ok(Vec::new());
            }
            CommandBody::Unselect => {
                self.selected = None;
                return Outcome::ok(Vec::new());
            }
            CommandBody::Noop | CommandBody::Check => Outcome::ok(Vec::new()),
            CommandBody::Create {
                mailbox,
                special_use,
            } => self.create(mailbox, special_use).await,
            CommandBody::Delete(name) => {
                match self.store.delete_mailbox(self.account_id(), name).await {
                    Ok(()) => Outcome::ok(Vec::new()),
                    Err(e) => store_no(&e),
                }
            }
            CommandBody::Rename { from, to } => {
                match self.store.rename_mailbox(self.account_id(), from, to).await {
                    Ok(()) => Outcome::ok(Vec::new()),
                    Err(e) => store_no(&e),
                }
            }
            CommandBody::Subscribe(name) | CommandBody::Unsubscribe(name) => {
                let on = matches!(cmd.body, CommandBody::Subscribe(_));
                match self.store.set_subscribed(self.account_id(), name, on).await {
                    Ok(()) => Outcome::ok(Vec::new()),
                    Err(e) => store_no(&e),
                }
            }
            CommandBody::List(l) => self.list(l).await,
            CommandBody::Lsub { reference, pattern } => self.lsub(reference, pattern).await,
            CommandBody::Status { mailbox, items } => match self.mailbox(mailbox).await {
                Ok(Some(mb)) => match self.status(&mb, items).await {
                    Ok(r) => Outcome::ok(vec![r]),
                    Err(e) => store_no(&e),
                },
                Ok(None) => Outcome::no(Some(Code::NonExistent), "No such mailbox"),
                Err(e) => store_no(&e),
            },
            CommandBody::Append { mailbox, messages } => self.append(mailbox, messages).await,
            CommandBody::Expunge { uids } => self.expunge(uids.as_ref()).await,
            CommandBody::Search(sc) => self.search(&cmd.tag, sc, enabled).await,
            // Streamed by `drive`.
            CommandBody::Fetch(_) => bad("Command not available"),
            CommandBody::Store(st) => self.store_flags(st, enabled).await,
            CommandBody::Copy { uid, set, mailbox } => self.copy(*uid, set, mailbox, false).await,
            CommandBody::Move { uid, set, mailbox } => self.copy(*uid, set, mailbox, true).await,
            // The session answers these itself when no quota is configured, and GETQUOTA of a
            // root other than "".
            CommandBody::GetQuota(_) => match self.quota_bytes {
                None => bad("Command not supported"),
                Some(limit) => match self.store.account_usage(self.account_id()).await {
                    Ok(u) => Outcome::ok(vec![hato_imap::quota::quota_data(u.bytes, limit)]),
                    Err(e) => store_no(&e),
                },
            },
            CommandBody::GetQuotaRoot(name) => match self.quota_bytes {
                None => bad("Command not supported"),
                Some(limit) => match self.mailbox(name).await {
                    Ok(None) => Outcome::no(Some(Code::NonExistent), "No such mailbox"),
                    Err(e) => store_no(&e),
                    Ok(Some(mb)) => match self.store.account_usage(self.account_id()).await {
                        Ok(u) => {
                            Outcome::ok(hato_imap::quota::quota_root_data(&mb.name, u.bytes, limit))
                        }
                        Err(e) => store_no(&e),
                    },
                },
            },
            // Everything else is answered by the session itself.
            _ => bad("Command not available"),
        };
        if self.selected.is_some() {
            let more = self.updates(Moment::during(&cmd.body), enabled).await;
            outcome.untagged.extend(more);
        }
        outcome
    }

    async fn mailbox(&self, name: &str) -> Result<Option<Mailbox>, StoreError> {
        self.store.mailbox_by_name(self.account_id(), name).await
    }

    // ---- SELECT / EXAMINE ------------------------------------------------------------------

    async fn select(
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
        untagged.push(Response::Data(Data::Flags(system_flags())));
        untagged.push(untagged_ok(
            Code::PermanentFlags {
                flags: if read_only {
                    Vec::new()
                } else {
                    system_flags()
                },
                any: !read_only,
            },
            "Flags permitted",
        ));
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

    async fn create(&mut self, name: &str, special_use: &[String]) -> Outcome {
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

    async fn status(&self, mb: &Mailbox, items: &[StatusItem]) -> Result<Response, StoreError> {
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

    async fn list(&self, l: &ListCommand) -> Outcome {
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
                // RECURSIVEMATCH: only parents of subscribed mailboxes.
                let prefix = format!("{name}/");
                if !subs.iter().any(|s| s.starts_with(&prefix)) {
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

    async fn lsub(&self, reference: &str, pattern: &str) -> Outcome {
        let account = self.account_id();
        let (mailboxes, subs) = match (
            self.store.mailboxes(account).await,
            self.store.subscriptions(account).await,
        ) {
            (Ok(m), Ok(s)) => (m, s),
            (Err(e), _) | (_, Err(e)) => return store_no(&e),
        };
        let pattern = format!("{reference}{pattern}");
        let out = subs
            .iter()
            .filter(|s| pattern_matches(&pattern, s))
            .map(|s| {
                let exists = mailboxes.iter().any(|m| &m.name == s);
                Response::Data(Data::Lsub(ListItem {
                    attributes: if exists {
                        Vec::new()
                    } else {
                        vec!["\\Noselect".into()]
                    },
                    delimiter: Some('/'),
                    name: s.clone(),
                    ..Default::default()
                }))
            })
            .collect();
        Outcome::ok(out)
    }

    // ---- APPEND ----------------------------------------------------------------------------

    async fn append(&mut self, name: &str, messages: &[AppendMessage]) -> Outcome {
        let mb = match self.mailbox(name).await {
            Ok(Some(mb)) => mb,
            Ok(None) => return Outcome::no(Some(Code::TryCreate), "No such mailbox"),
            Err(e) => return store_no(&e),
        };
        let adding: u64 = messages.iter().map(|m| m.data.len() as u64).sum();
        if let Some(o) = self.over_quota(adding).await {
            return o;
        }
        let mut uids = NumberSet::new();
        let mut uidvalidity = mb.uidvalidity;
        let now = hato_wire::date::unix_now();
        for m in messages {
            let date = m.date.map(|d| d.to_unix()).unwrap_or(now);
            match self
                .store
                .append(mb.id, m.data.clone(), &flags_out(&m.flags), date)
                .await
            {
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
    async fn over_quota(&self, bytes: u64) -> Option<Outcome> {
        let limit = self.quota_bytes?;
        match self.store.account_usage(self.account_id()).await {
            Ok(u) if u.bytes.saturating_add(bytes) > limit => Some(Outcome::over_quota()),
            Ok(_) => None,
            Err(e) => Some(store_no(&e)),
        }
    }

    // ---- selected state --------------------------------------------------------------------

    /// (seq, uid) pairs of a set; BAD for sequence numbers beyond EXISTS.
    fn resolve(&self, uid: bool, set: &SequenceSet) -> Result<Vec<(u32, u32)>, Outcome> {
        let Some(sel) = &self.selected else {
            return Err(bad("No mailbox selected"));
        };
        if uid {
            Ok(sel.view.resolve_uid(set))
        } else {
            sel.view.resolve_seq(set).map_err(|e| bad(&e.to_string()))
        }
    }

    async fn expunge(&mut self, uids: Option<&SequenceSet>) -> Outcome {
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

    async fn search(&mut self, tag: &str, sc: &SearchCommand, enabled: Enabled) -> Outcome {
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
        let headers_only = search.program().needs_headers_only();
        // Flags, UIDs and MODSEQ are in the view: the store's message list (sizes, dates) is
        // read only when a key uses them or messages must be loaded (batches by size).
        let with_entries = search.program().reads_size_or_date()
            || search.program().needs_content()
            || headers_only;
        let entries: Option<HashMap<u32, MessageEntry>> = if with_entries {
            match self.store.messages(sel.id).await {
                Ok(v) => Some(v.into_iter().map(|e| (e.uid, e)).collect()),
                Err(e) => return store_no(&e),
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
                if save {
                    sel.view.save_result(NumberSet::new());
                }
                return error_outcome(hato_imap::SearchError::Limit.response(tag));
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
                Err(e) => return store_no(&e),
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
                    if save {
                        sel.view.save_result(NumberSet::new());
                    }
                    return error_outcome(e.response(tag));
                }
            }
            start = end;
        }
        Outcome::ok(search.finish(tag, &mut sel.view))
    }

    /// FETCH: the message responses go to `sink` as they are built (one message's data in
    /// memory at a time); the outcome carries only what precedes them (VANISHED) or errors.
    async fn fetch<S: AsyncWrite + Unpin>(
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
                sel.view.record_sent_flags(
                    uid,
                    flags.into_iter().filter(|f| *f != Flag::Recent).collect(),
                    modseq,
                );
            }
            sink.push(&Response::Data(Data::Fetch { seq, items: values }))
                .await?;
        }
        Ok(Outcome::ok(untagged))
    }

    async fn store_flags(&mut self, st: &StoreCommand, enabled: Enabled) -> Outcome {
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
            sel.view.record_sent_flags(u.uid, flags.clone(), u.modseq);
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

    async fn copy(&mut self, uid: bool, set: &SequenceSet, name: &str, mv: bool) -> Outcome {
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

/// Untagged responses written straight to the client, in chunks (large FETCHes).
struct Sink<'s, S> {
    io: &'s mut S,
    opts: hato_imap::EncodeOptions,
    buf: Vec<u8>,
    timeout: Duration,
}

impl<S: AsyncWrite + Unpin> Sink<'_, S> {
    const CHUNK: usize = 256 * 1024;

    async fn push(&mut self, r: &Response) -> anyhow::Result<()> {
        r.encode(&mut self.buf, self.opts);
        if self.buf.len() >= Self::CHUNK {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        write_with_timeout(self.io, &self.buf, self.timeout).await?;
        self.buf.clear();
        Ok(())
    }
}

fn error_outcome(r: Response) -> Outcome {
    match r {
        Response::Status {
            kind, code, text, ..
        } => Outcome {
            untagged: Vec::new(),
            kind,
            code,
            text,
        },
        _ => Outcome::no(None, "Search failed"),
    }
}

fn system_flags() -> Vec<Flag> {
    vec![
        Flag::Answered,
        Flag::Flagged,
        Flag::Deleted,
        Flag::Seen,
        Flag::Draft,
    ]
}

/// Length of the header block (up to and including the blank line).
fn header_end(data: &[u8]) -> usize {
    data.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .or_else(|| data.windows(2).position(|w| w == b"\n\n").map(|p| p + 2))
        .unwrap_or(data.len())
}

/// RFC 9051 6.3.9 LIST wildcards: `*` matches anything, `%` anything but the delimiter.
/// INBOX matches case-insensitively.
fn pattern_matches(pattern: &str, name: &str) -> bool {
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
