//! The IMAP driver: runs one connection of an `imap` listener through the sans-IO
//! [`hato_imap::Session`], answering its actions with [`crate::auth::Authenticator`] (shared AUTH
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
    AppendMessage, CommandBody, FetchAttr, FetchCommand, ListCommand, SearchCommand, SortCommand,
    StatusItem, StoreCommand, StoreOp, ThreadCommand,
};
use hato_imap::flag::Flag;
use hato_imap::response::{FetchValue, ListItem, StatusValue};
use hato_imap::sequence::{NumberSet, SequenceSet};
use hato_imap::sort::SortMessage;
use hato_imap::view::{Snapshot, Update, ViewMessage};
use hato_imap::{
    Action, Code, Command, Data, Enabled, Moment, Outcome, ParsedMessage, Response, Search,
    SelectedView, Session, StatusKind,
};
use hato_store::{AccountId, Expunge, FlagOp, Mailbox, MailboxId, MessageEntry, Store, StoreError};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::broadcast;
use tracing::{error, info, warn};

use crate::auth::Authenticator;
use crate::net::{self, ClientStream, Connection, Input, Shutdown, Timeouts, write_with_timeout};
use crate::spool::{SPOOL_AT, Spool};

mod fetch;
mod header_cache;
mod mailboxes;
mod messages;
mod search;
mod selected;

use fetch::*;
pub use header_cache::HeaderCache;

use selected::*;

/// RFC 9051 5.4: the autologout timer must be at least 30 minutes once logged in.
const MIN_AUTHENTICATED_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// IDLE's pause before syncing when the store's change channel is gone (shutting down).
const IDLE_POLL: Duration = Duration::from_secs(1);

/// The `imap` service: what its connections need, built once per listener.
pub struct ImapService {
    pub config: Arc<hato_imap::Config>,
    pub auth: Arc<Authenticator>,
    pub store: Arc<dyn Store>,
    pub timeouts: Timeouts,
    pub shutdown: Shutdown,
    /// Decoded header fields of messages, shared by all IMAP listeners.
    pub header_cache: Arc<HeaderCache>,
    /// Memory for mail in transit (APPEND messages here), shared with SMTP.
    pub data_budget: Arc<net::DataBudget>,
    /// Where APPEND messages go once they pass [`SPOOL_AT`].
    pub spool_dir: Arc<std::path::Path>,
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
            store: self.store.clone(),
            ip: peer.ip(),
            account: None,
            selected: None,
            append_limit: self.config.limits.max_append_literal,
            quota_bytes: self.config.quota_bytes,
            data_share: self.data_budget.share(),
            spools: Vec::new(),
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

struct Conn<'a> {
    svc: &'a ImapService,
    store: Arc<dyn Store>,
    ip: IpAddr,
    account: Option<hato_store::Account>,
    selected: Option<Selected>,
    append_limit: u64,
    /// `[limits] quota_bytes`: the account's storage limit (RFC 9208 root "").
    quota_bytes: Option<u64>,
    /// What the session holds of client input (APPEND messages), within the server's budget.
    data_share: net::DataShare,
    /// The parts of the command's APPEND messages that went to disk, by literal number.
    spools: Vec<(usize, Spool)>,
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

/// Length of the header block (up to and including the blank line).
fn header_end(data: &[u8]) -> usize {
    data.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .or_else(|| data.windows(2).position(|w| w == b"\n\n").map(|p| p + 2))
        .unwrap_or(data.len())
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
                    // What the session holds counts against the budget for mail in transit,
                    // and an APPEND message that does not fit what is left is refused (NO
                    // [UNAVAILABLE]) before the client sends it.
                    self.spool_literal(s).await?;
                    self.data_share.set_regardless(s.data_held());
                    write_with_timeout(io, &s.output(), write_timeout).await?;
                    let timeout = self.read_timeout();
                    let logged_in = self.account.is_some();
                    match net::read_input(io, &mut buf, timeout, logged_in, &mut shutdown).await? {
                        Input::Data(n) => {
                            // The room as it is now, not before the wait for input. A
                            // message needs room only for what is held before it spools.
                            let free = self.svc.data_budget.free();
                            s.set_literal_room(
                                (free < SPOOL_AT + 64 * 1024).then_some(free as u64),
                            );
                            s.feed(&buf[..n]);
                        }
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
                        .auth
                        .login(self.ip, &username, password.expose(), s.tls())
                        .await;
                    self.account = account;
                    s.auth_result(verdict);
                }
                Action::Execute(mut cmd) => {
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
                        _ => self.execute(&mut cmd, enabled).await,
                    };
                    s.command_done(outcome);
                }
            }
        }
    }

    /// Moves what the session holds of the APPEND message being received to its spool file
    /// (past [`SPOOL_AT`]); spools of a finished command are dropped. A spool that cannot be
    /// written ends the connection (the client retries the APPEND).
    async fn spool_literal(&mut self, s: &mut Session) -> anyhow::Result<()> {
        if !s.in_command() {
            self.spools.clear();
        }
        let Some((literal, at, bytes)) = s.take_literal(SPOOL_AT) else {
            return Ok(());
        };
        let i = match self.spools.iter().position(|(l, _)| *l == literal) {
            Some(i) => i,
            None => {
                self.spools
                    .push((literal, Spool::new(self.svc.spool_dir.clone())));
                self.spools.len() - 1
            }
        };
        if let Err(e) = self.spools[i].1.write(at, bytes).await {
            error!(error = %e, dir = %self.svc.spool_dir.display(), "cannot spool an APPEND message: closing the connection");
            anyhow::bail!("cannot spool an APPEND message: {e}");
        }
        Ok(())
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

    async fn execute(&mut self, cmd: &mut Command, enabled: Enabled) -> Outcome {
        // APPEND messages move to the store: never a second copy of one in memory.
        let appended = match &mut cmd.body {
            CommandBody::Append { messages, .. } => std::mem::take(messages),
            _ => Vec::new(),
        };
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
            CommandBody::Append { mailbox, .. } => self.append(mailbox, appended).await,
            CommandBody::Expunge { uids } => self.expunge(uids.as_ref()).await,
            CommandBody::Search(sc) => self.search(&cmd.tag, sc, enabled).await,
            CommandBody::Sort(sc) => self.sort(&cmd.tag, sc, enabled).await,
            CommandBody::Thread(tc) => self.thread(&cmd.tag, tc, enabled).await,
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
}
