//! The POP3 driver: runs one connection of a `pop3` listener through the sans-IO
//! [`hato_pop3::Session`], answering it with [`crate::policy::Policy`] (shared AUTH throttling)
//! and the store. The maildrop is the account's INBOX; it is locked against a second POP3 session
//! for as long as the connection lives (RFC 1939 8), and messages are removed only at QUIT.
//! UIDLs are `<uidvalidity>.<uid>` of the INBOX entry: stable forever, shared with IMAP.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use hato_pop3::{Action, MaildropError, MessageError, MessageInfo, Session};
use hato_store::{AccountId, Expunge, MailboxId};
use tokio::io::AsyncWriteExt;
use tracing::{error, info};

use crate::net::{self, ClientStream, Connection, Input, Shutdown, Timeouts, write_with_timeout};
use crate::policy::Policy;

/// RFC 1939 3: the autologout timer must be at least 10 minutes once logged in.
const MIN_TRANSACTION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// The `pop3` service: what its connections need, built once per listener.
pub struct Pop3Service {
    pub config: Arc<hato_pop3::Config>,
    pub policy: Arc<Policy>,
    pub timeouts: Timeouts,
    pub shutdown: Shutdown,
    /// Accounts whose maildrop a POP3 session holds (RFC 1939 exclusive lock).
    pub locks: Arc<MaildropLocks>,
}

/// The accounts whose maildrop a POP3 session of this process holds.
#[derive(Default)]
pub struct MaildropLocks(Mutex<HashSet<AccountId>>);

#[async_trait::async_trait]
impl net::Service for Pop3Service {
    fn name(&self) -> &'static str {
        "pop3"
    }

    fn busy_reply(&self, why: &str) -> Vec<u8> {
        format!("-ERR [SYS/TEMP] {why}, try again later\r\n").into_bytes()
    }

    /// Serves one POP3 connection; returns the counts for the disconnect log line.
    async fn serve(&self, conn: Connection) -> anyhow::Result<String> {
        let Connection {
            mut stream,
            peer,
            tls,
        } = conn;
        let mut conn = Conn {
            svc: self,
            ip: peer.ip(),
            account: None,
            lock: None,
            inbox: None,
            uids: Vec::new(),
        };
        let mut session = Session::new(self.config.clone(), tls);
        session.greet();
        while conn.drive(&mut session, &mut stream).await? {
            let facts = stream.start_tls().await?;
            session.tls_established(facts);
        }
        let s = session.stats();
        Ok(format!(
            "retrieved={} deleted={} octets={} errors={}",
            s.messages_retrieved, s.messages_deleted, s.octets_sent, s.errors
        ))
    }
}

/// Holds the maildrop lock of one account; released however the connection ends.
struct MaildropLock<'a> {
    locks: &'a MaildropLocks,
    account: AccountId,
}

impl Drop for MaildropLock<'_> {
    fn drop(&mut self) {
        self.locks
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.account);
    }
}

struct Conn<'a> {
    svc: &'a Pop3Service,
    ip: IpAddr,
    account: Option<hato_store::Account>,
    lock: Option<MaildropLock<'a>>,
    inbox: Option<MailboxId>,
    /// INBOX UIDs in the order of the session's message numbers.
    uids: Vec<u32>,
}

impl<'a> Conn<'a> {
    /// Runs the session until it closes (false) or asks for STLS (true).
    async fn drive(&mut self, s: &mut Session, io: &mut ClientStream) -> anyhow::Result<bool> {
        let mut buf = vec![0u8; 8 * 1024];
        let mut shutdown = self.svc.shutdown.clone();
        let write_timeout = self.svc.timeouts.command;
        loop {
            match s.poll() {
                Action::NeedInput => {
                    write_with_timeout(io, &s.output(), write_timeout).await?;
                    let timeout = if self.account.is_none() {
                        self.svc.timeouts.unauthenticated
                    } else {
                        self.svc.timeouts.command.max(MIN_TRANSACTION_TIMEOUT)
                    };
                    match net::read_input(io, &mut buf, timeout, &mut shutdown).await? {
                        Input::Data(n) => s.feed(&buf[..n]),
                        Input::Closed => return Ok(false),
                        Input::TimedOut => s.timeout(),
                        Input::Shutdown => s.shutdown(),
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
                        .login(self.ip, &username, password.expose(), s.tls_info())
                        .await;
                    self.account = account;
                    s.auth_result(verdict);
                }
                Action::OpenMaildrop { .. } => {
                    let r = self.open_maildrop().await;
                    s.maildrop_result(r);
                }
                Action::Retrieve { index, .. } => {
                    // Send what is pending first, so at most one message is in memory.
                    write_with_timeout(io, &s.output(), write_timeout).await?;
                    let r = self.retrieve(index).await;
                    s.message_result(r);
                }
                Action::Commit { deleted } => {
                    let r = self.commit(&deleted).await;
                    // UPDATE is over: free the maildrop before the final reply reaches the client.
                    self.lock = None;
                    s.commit_result(r);
                }
            }
        }
    }

    async fn open_maildrop(&mut self) -> Result<Vec<MessageInfo>, MaildropError> {
        let Some(account) = self.account.as_ref() else {
            return Err(MaildropError::Temporary);
        };
        {
            let mut locks = self.svc.locks.0.lock().unwrap_or_else(|e| e.into_inner());
            if !locks.insert(account.id) {
                info!(user = %account.address, "maildrop in use by another POP3 session");
                return Err(MaildropError::InUse);
            }
        }
        self.lock = Some(MaildropLock {
            locks: &self.svc.locks,
            account: account.id,
        });
        let store = self.svc.policy.store();
        let listing = async {
            let inbox = store
                .mailbox_by_name(account.id, "INBOX")
                .await?
                .ok_or_else(|| hato_store::StoreError::NotFound("INBOX".into()))?;
            let entries = store.messages(inbox.id).await?;
            Ok::<_, hato_store::StoreError>((inbox, entries))
        }
        .await;
        match listing {
            Ok((inbox, entries)) => {
                self.inbox = Some(inbox.id);
                self.uids = entries.iter().map(|e| e.uid).collect();
                Ok(entries
                    .iter()
                    .map(|e| MessageInfo {
                        size: e.size,
                        uid: format!("{}.{}", inbox.uidvalidity, e.uid),
                    })
                    .collect())
            }
            Err(e) => {
                error!(error = %e, "cannot list the maildrop");
                self.lock = None;
                Err(MaildropError::Temporary)
            }
        }
    }

    async fn retrieve(&self, index: usize) -> Result<Vec<u8>, MessageError> {
        let (Some(inbox), Some(uid)) = (self.inbox, self.uids.get(index)) else {
            return Err(MessageError::Gone);
        };
        match self.svc.policy.store().message_data(inbox, *uid).await {
            Ok(Some(data)) => Ok(data),
            // Expunged by a concurrent IMAP session.
            Ok(None) => Err(MessageError::Gone),
            Err(e) => {
                error!(error = %e, uid, "cannot read a message");
                Err(MessageError::Temporary)
            }
        }
    }

    async fn commit(&self, deleted: &[usize]) -> Result<(), hato_pop3::CommitError> {
        let Some(inbox) = self.inbox else {
            return Ok(());
        };
        let uids: Vec<u32> = deleted
            .iter()
            .filter_map(|&i| self.uids.get(i).copied())
            .collect();
        if uids.is_empty() {
            return Ok(());
        }
        match self
            .svc
            .policy
            .store()
            .expunge(inbox, Expunge::Uids(&uids))
            .await
        {
            Ok(gone) => {
                info!(deleted = gone.len(), "maildrop updated");
                Ok(())
            }
            Err(e) => {
                error!(error = %e, "cannot delete messages");
                Err(hato_pop3::CommitError)
            }
        }
    }
}
