//! The POP3 driver: runs one connection of a `pop3` listener through the sans-IO
//! [`hato_pop3::Session`], answering it with [`crate::auth::Authenticator`] (shared AUTH throttling)
//! and the store. The maildrop is the account's INBOX; it is locked against a second POP3 session
//! for as long as the connection lives (RFC 1939 8), on any node: the lock is a lease in the store
//! ([`MaildropLocks`]). Messages are removed only at QUIT.
//! UIDLs are `<uidvalidity>.<uid>` of the INBOX entry: stable forever, shared with IMAP.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hato_pop3::{Action, MaildropError, MessageError, MessageInfo, Session};
use hato_store::{AccountId, Expunge, MailboxId, Store, StoreError};
use hato_wire::date::unix_now;
use tokio::io::AsyncWriteExt;
use tracing::{error, info, warn};

use crate::auth::Authenticator;
use crate::net::{self, ClientStream, Connection, Input, Shutdown, Timeouts, write_with_timeout};

/// RFC 1939 3: the autologout timer must be at least 10 minutes once logged in.
const MIN_TRANSACTION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);
/// How long a maildrop lease lasts without renewal: how long the lock of a crashed node (or a
/// killed process) keeps the maildrop locked. A session renews it every third of this.
pub const MAILDROP_LEASE: Duration = Duration::from_secs(60);

/// The `pop3` service: what its connections need, built once per listener.
pub struct Pop3Service {
    pub config: Arc<hato_pop3::Config>,
    pub auth: Arc<Authenticator>,
    pub store: Arc<dyn Store>,
    pub timeouts: Timeouts,
    pub shutdown: Shutdown,
    /// Takes the maildrop locks (RFC 1939 exclusive lock).
    pub locks: Arc<MaildropLocks>,
}

/// Takes POP3 maildrop locks as leases in the store (`pop3:<account id>`), so a second session
/// is refused on every node of one database, not only in this process. A lease has an owner
/// unique to its session and an expiry; the session renews it while it lives, and releases it
/// when it ends, so the lock of a node that crashed expires by itself after [`MAILDROP_LEASE`].
pub struct MaildropLocks {
    /// Random per process: owners of two nodes, or of a restarted process, never collide.
    process: String,
    /// Numbers the sessions of this process.
    sessions: AtomicU64,
    ttl: Duration,
}

impl Default for MaildropLocks {
    fn default() -> MaildropLocks {
        MaildropLocks::with_ttl(MAILDROP_LEASE)
    }
}

impl MaildropLocks {
    /// Locks whose leases last `ttl` (at least 3 seconds: renewal is every third, in seconds).
    pub fn with_ttl(ttl: Duration) -> MaildropLocks {
        MaildropLocks {
            process: format!("{:032x}", rand::random::<u128>()),
            sessions: AtomicU64::new(0),
            ttl: ttl.max(Duration::from_secs(3)),
        }
    }

    /// Takes the lock of `account`'s maildrop for one session: None if another session (of
    /// any node) holds it.
    pub async fn acquire(
        &self,
        store: &Arc<dyn Store>,
        account: AccountId,
    ) -> Result<Option<MaildropLock>, StoreError> {
        let name = format!("pop3:{account}");
        let owner = format!(
            "{}:{}",
            self.process,
            self.sessions.fetch_add(1, Ordering::Relaxed)
        );
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        if !store.lease_acquire(&name, &owner, ttl, unix_now()).await? {
            return Ok(None);
        }
        let renewal = tokio::spawn(renew(store.clone(), name.clone(), owner.clone(), self.ttl));
        Ok(Some(MaildropLock {
            store: store.clone(),
            name,
            owner,
            renewal: Some(renewal),
        }))
    }
}

/// Renews a lease every third of its time until aborted. A lost lease (this process stalled
/// past its expiry and another session took the maildrop) is logged and no longer renewed:
/// the session goes on, since what it can still change (expunging its own UIDs at QUIT) is
/// harmless to the other session.
async fn renew(store: Arc<dyn Store>, name: String, owner: String, ttl: Duration) {
    let secs = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
    loop {
        tokio::time::sleep(ttl / 3).await;
        match store.lease_renew(&name, &owner, secs, unix_now()).await {
            Ok(true) => {}
            Ok(false) => {
                error!(lock = %name, "the POP3 maildrop lock expired and was lost");
                return;
            }
            // Tried again at the next third; the lease still has two thirds to run.
            Err(e) => warn!(lock = %name, error = %e, "cannot renew the POP3 maildrop lock"),
        }
    }
}

/// Holds one session's maildrop lease. [`MaildropLock::release`] ends it before the session
/// answers; dropped otherwise (the connection ended any other way), it is released in the
/// background.
pub struct MaildropLock {
    store: Arc<dyn Store>,
    name: String,
    owner: String,
    /// The renewal task; None once released.
    renewal: Option<tokio::task::JoinHandle<()>>,
}

impl MaildropLock {
    /// Releases the lease and waits for it, so the next session (of the same client, right
    /// after QUIT) finds the maildrop free.
    pub async fn release(mut self) {
        if let Some(renewal) = self.renewal.take() {
            renewal.abort();
        }
        if let Err(e) = self.store.lease_release(&self.name, &self.owner).await {
            // The lease then runs out by itself.
            error!(lock = %self.name, error = %e, "cannot release the POP3 maildrop lock");
        }
    }
}

impl Drop for MaildropLock {
    fn drop(&mut self) {
        let Some(renewal) = self.renewal.take() else {
            return;
        };
        renewal.abort();
        let (store, name, owner) = (
            self.store.clone(),
            std::mem::take(&mut self.name),
            std::mem::take(&mut self.owner),
        );
        // Without a runtime (shutting down) the lease runs out by itself.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = store.lease_release(&name, &owner).await {
                    error!(lock = %name, error = %e, "cannot release the POP3 maildrop lock");
                }
            });
        }
    }
}

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

struct Conn<'a> {
    svc: &'a Pop3Service,
    ip: IpAddr,
    account: Option<hato_store::Account>,
    lock: Option<MaildropLock>,
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
                    let logged_in = self.account.is_some();
                    match net::read_input(io, &mut buf, timeout, logged_in, &mut shutdown).await? {
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
                        .auth
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
                    if let Some(lock) = self.lock.take() {
                        lock.release().await;
                    }
                    s.commit_result(r);
                }
            }
        }
    }

    async fn open_maildrop(&mut self) -> Result<Vec<MessageInfo>, MaildropError> {
        let Some(account) = self.account.as_ref() else {
            return Err(MaildropError::Temporary);
        };
        let store = &self.svc.store;
        match self.svc.locks.acquire(store, account.id).await {
            Ok(Some(lock)) => self.lock = Some(lock),
            Ok(None) => {
                info!(user = %account.address, "maildrop in use by another POP3 session");
                return Err(MaildropError::InUse);
            }
            Err(e) => {
                error!(error = %e, "cannot lock the maildrop");
                return Err(MaildropError::Temporary);
            }
        }
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
                if let Some(lock) = self.lock.take() {
                    lock.release().await;
                }
                Err(MaildropError::Temporary)
            }
        }
    }

    async fn retrieve(&self, index: usize) -> Result<Vec<u8>, MessageError> {
        let (Some(inbox), Some(uid)) = (self.inbox, self.uids.get(index)) else {
            return Err(MessageError::Gone);
        };
        match self.svc.store.message_data(inbox, *uid).await {
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
        match self.svc.store.expunge(inbox, Expunge::Uids(&uids)).await {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &std::path::Path) -> Arc<dyn Store> {
        Arc::new(hato_store::sqlite::SqliteStore::open(&dir.join("hato.db")).unwrap())
    }

    /// Two nodes (two lock holders on one store): the second session is refused until the
    /// first releases; another account is independent.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_lock_is_exclusive_across_nodes() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let (a, b) = (MaildropLocks::default(), MaildropLocks::default());
        let held = a.acquire(&store, 1).await.unwrap().expect("free");
        assert!(b.acquire(&store, 1).await.unwrap().is_none(), "in use");
        assert!(a.acquire(&store, 1).await.unwrap().is_none(), "per session");
        let other = b
            .acquire(&store, 2)
            .await
            .unwrap()
            .expect("another account");
        held.release().await;
        let again = b.acquire(&store, 1).await.unwrap().expect("released");
        drop((again, other));
    }

    /// A session's lease is renewed while it lives (here past three times its duration), and a
    /// dropped guard releases it in the background.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_lease_is_renewed_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let locks = MaildropLocks::with_ttl(Duration::from_secs(3));
        let held = locks.acquire(&store, 7).await.unwrap().expect("free");
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(
            locks.acquire(&store, 7).await.unwrap().is_none(),
            "still held after 10 s"
        );
        drop(held);
        let mut waited = Duration::ZERO;
        loop {
            if let Some(lock) = locks.acquire(&store, 7).await.unwrap() {
                lock.release().await;
                break;
            }
            assert!(waited < Duration::from_secs(2), "not released");
            tokio::time::sleep(Duration::from_millis(20)).await;
            waited += Duration::from_millis(20);
        }
    }

    /// The lease of a session whose node died (nothing renews it) expires by itself.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dead_nodes_lock_expires() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let now = unix_now();
        assert!(store.lease_acquire("pop3:9", "dead", 2, now).await.unwrap());
        let locks = MaildropLocks::default();
        assert!(locks.acquire(&store, 9).await.unwrap().is_none());
        tokio::time::sleep(Duration::from_millis(3100)).await;
        locks.acquire(&store, 9).await.unwrap().expect("expired");
    }
}
