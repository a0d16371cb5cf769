//! The sans-IO SMTP client session: the protocol core of outbound delivery and of
//! smarthost relaying.
//!
//! Implements the client side of RFC 5321 (session initiation §3.1 and §4.3.1,
//! EHLO/HELO §4.1.1.1, mail transaction §3.3 and §4.1.1.2-§4.1.1.5, replies §4.2,
//! transparency §4.5.2, timeouts §4.5.3.2, QUIT §4.1.1.10) with the extensions
//! RFC 1870 (SIZE), RFC 2920 (PIPELINING), RFC 3030 (CHUNKING/BDAT), RFC 3207
//! (STARTTLS), RFC 3461 (DSN parameters RET, ENVID, NOTIFY, ORCPT; RFC 6533 for
//! UTF-8 ORCPT), RFC 3463 + RFC 2034 (enhanced status codes), RFC 4954 (AUTH with
//! RFC 4616 PLAIN and LOGIN), RFC 6152 (8BITMIME), RFC 6531 (SMTPUTF8) and RFC 8689
//! (REQUIRETLS). See [`downgrade_8bit`] for the RFC 6152 §3 / RFC 2045 7-bit
//! conversion.
//!
//! # Driving a session
//!
//! The session never does I/O and never blocks; one session is one connection,
//! which may carry several transactions (connection reuse). A driver loops:
//!
//! ```text
//! let mut s = ClientSession::new(config);
//! s.next_transaction(txn)?;                 // may be given before the greeting
//! loop {
//!     match s.poll() {
//!         Send(bytes)         => write_all(bytes) within s.timeout(),
//!         NeedInput           => match read() within s.timeout() {
//!                                    Ok(0) | Err(_) => s.connection_lost(),
//!                                    Ok(n) => s.feed(&buf[..n]),
//!                                    timeout => s.timed_out() },
//!         StartTls            => handshake on the same TCP stream, then
//!                                s.tls_established() (+ s.set_tls_verified(..)),
//!                                or s.tls_failed(),
//!         TransactionDone(o)  => record o (per recipient),
//!         Ready               => s.next_transaction(next) or s.quit(),
//!         Done(o)             => { close(); break }
//!     }
//! }
//! ```
//!
//! ```
//! use hato_smtp::{Address, ClientAction, ClientConfig, ClientSession, Transaction};
//!
//! let mut s = ClientSession::new(ClientConfig::new("mail.example.org"));
//! let to = Address::parse("bob@example.net").unwrap();
//! let msg = &b"Subject: hi\r\n\r\nhello\r\n"[..];
//! s.next_transaction(Transaction::new(None, [to], msg)).unwrap();
//! assert_eq!(s.poll(), ClientAction::NeedInput);
//! s.feed(b"220 mx.example.net ESMTP\r\n");
//! assert_eq!(s.poll(), ClientAction::Send(b"EHLO mail.example.org\r\n".to_vec()));
//! assert_eq!(s.poll(), ClientAction::NeedInput);
//! s.feed(b"250-mx.example.net\r\n250 PIPELINING\r\n");
//! let group = b"MAIL FROM:<>\r\nRCPT TO:<bob@example.net>\r\nDATA\r\n".to_vec();
//! assert_eq!(s.poll(), ClientAction::Send(group));
//! s.feed(b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 Go ahead\r\n");
//! assert_eq!(s.poll(), ClientAction::Send(b"Subject: hi\r\n\r\nhello\r\n.\r\n".to_vec()));
//! assert_eq!(s.poll(), ClientAction::NeedInput);
//! s.feed(b"250 2.0.0 Ok: queued\r\n");
//! let ClientAction::TransactionDone(outcome) = s.poll() else { panic!() };
//! assert!(outcome.all_delivered());
//! assert_eq!(s.poll(), ClientAction::Ready);
//! ```
//!
//! * Every transaction given to [`ClientSession::next_transaction`] yields exactly
//!   one [`ClientAction::TransactionDone`], whatever happens to the connection; a
//!   recipient is [`RecipientStatus::Delivered`] only after the server's positive
//!   reply to the end of the data. If the connection is lost after the data was
//!   sent and before that reply, the recipients are transient (RFC 5321 §6.1: the
//!   message may then be delivered twice, never zero times).
//! * [`ClientAction::Done`] is returned once the connection is over; polling again
//!   returns it again. Commands are written only through `Send`; a pipelined group
//!   (RFC 2920) is one `Send`, so one write.
//! * Timeouts belong to the driver: [`ClientSession::timeout`] gives the RFC 5321
//!   §4.5.3.2 value for the current [`ClientPhase`] (5 min for the greeting, MAIL and
//!   RCPT, 2 min for the DATA command, 3 min per data block written, 10 min for the
//!   reply to the end of the data).
//!
//! # Security properties
//!
//! * **No plaintext where TLS is required.** With [`TlsRequirement::Required`], a
//!   server whose EHLO does not offer STARTTLS (stripped by an attacker or absent),
//!   a refused EHLO (no HELO fallback: HELO cannot lead to TLS), a refused STARTTLS
//!   or a failed handshake ends the
//!   connection with a transient outcome; after the plaintext EHLO nothing else is
//!   sent (not even QUIT). [`TlsRequirement::Opportunistic`] continues in plaintext
//!   when STARTTLS is not offered or refused (RFC 3207 §4.1); after a failed
//!   handshake the driver decides whether to reconnect without TLS.
//! * **STARTTLS response injection** (the client-side CVE-2011-0411 class): any byte
//!   the server sent after its `220` to STARTTLS and before the handshake — in the
//!   same read or fed later — ends the session with
//!   [`ClientFailure::StartTlsResponseInjection`]; the driver must not do the
//!   handshake. After the handshake every pre-TLS capability is forgotten and EHLO is
//!   sent again (RFC 3207 §4.2).
//! * **Credentials only under TLS**: AUTH is never sent on a plaintext connection
//!   ([`ClientFailure::AuthRequiresTls`]).
//! * **REQUIRETLS** (RFC 8689 §4.2.1): a transaction that carries it is only sent
//!   over TLS that the driver reported as verified ([`ClientSession::set_tls_verified`])
//!   to a server announcing REQUIRETLS; otherwise it fails without sending anything.
//! * **Bounded input**: reply lines are limited to
//!   [`ClientConfig::max_reply_line`] octets and replies to
//!   [`ClientConfig::max_reply_lines`] lines; malformed or overlong replies end the
//!   session with [`ClientFailure::Protocol`], never a panic.
//! * **No injection into our own commands**: addresses are validated [`Address`]es,
//!   DSN values are xtext-encoded, credentials base64-encoded, and the EHLO name is
//!   reduced to printable ASCII.
//!
//! # Decisions
//!
//! * BODY=8BITMIME is sent when the message has an octet ≥ 0x80 (the session scans
//!   it); if the server lacks 8BITMIME the transaction fails with
//!   [`ClientFailure::Needs7BitDowngrade`] without sending: convert with
//!   [`downgrade_8bit`] and start it again on the same connection.
//! * SMTPUTF8 (RFC 6531 §3.4) is needed when [`Transaction::smtputf8`] is set or an
//!   address is non-ASCII. Without server support: if the message or the sender needs
//!   it, every recipient fails with `553 5.6.7`; otherwise only the non-ASCII
//!   recipients do and the rest are delivered without SMTPUTF8.
//! * SIZE (RFC 1870 §3): `SIZE=` is sent when announced; a message larger than the
//!   announced limit fails with `552 5.3.4` for every recipient without sending.
//! * Line endings are normalised to CRLF (a bare CR or LF becomes CRLF) and a last
//!   line without one is terminated, for DATA and BDAT alike, so the receiving end
//!   gets the same octets either way. DATA uses dot-stuffing and ends with `.CRLF`.
//! * PIPELINING: MAIL, every RCPT and DATA leave in one write; replies are matched
//!   in order. With CHUNKING, MAIL and the RCPTs are pipelined, then the BDAT chunks
//!   (all pipelined, or one at a time without PIPELINING) are sent only if some
//!   recipient was accepted. If every RCPT failed, no message data is sent; a
//!   server that answers DATA with 354 anyway gets a lone `.` (RFC 2920 §3.1).
//! * RSET is sent only before a transaction that follows one left open on the
//!   server (MAIL accepted but no final reply to the data); never before QUIT.
//! * Reply codes are checked strictly so that a desynchronised or hostile server
//!   cannot make a reply count for the wrong command: EHLO/HELO, MAIL and RSET need
//!   `250`, RCPT `250`/`251`, DATA `354`, AUTH `334`/`235`; the end of the data and a
//!   BDAT chunk accept any 2xx. Anything else is [`ProtocolError::UnexpectedReply`].
//! * `421` at any point ends the connection ([`ClientFailure::ServiceClosing`]).
//! * Greeting `554` (RFC 5321 §3.1), a refused EHLO+HELO or AUTH failure are
//!   answered with QUIT; TLS policy failures, protocol errors and `421` close without
//!   it.
//! * [`ClientFailure::try_next_host`] tells the scheduler whether another MX may do
//!   better (RFC 5321 §5.1); the per-recipient statuses are what to record when no
//!   other host is left.
//!
//! # Source layout
//!
//! | file | contents |
//! |---|---|
//! | `client.rs` | this overview; the session state, the driver API ([`ClientSession::new`], [`ClientSession::feed`], [`ClientSession::poll`], [`ClientSession::next_transaction`], [`ClientSession::quit`], the end-of-connection calls, accessors), sending commands, ending the session and matching each reply to its command |
//! | `client/config.rs` | what the caller hands in: [`ClientConfig`] (and its `DEFAULT_*` limits), [`TlsRequirement`], [`Credentials`], [`Transaction`], [`Recipient`] |
//! | `client/outcome.rs` | what comes out: [`TransactionOutcome`], [`RecipientOutcome`], [`RecipientStatus`], [`ConnectionOutcome`], [`ClientFailure`], [`ProtocolError`] |
//! | `client/action.rs` | [`ClientAction`] and [`ClientPhase`] with the RFC 5321 §4.5.3.2 timeouts |
//! | `client/setup.rs` | greeting, EHLO with HELO fallback, STARTTLS and the TLS calls ([`ClientSession::tls_established`], [`ClientSession::set_tls_verified`], [`ClientSession::tls_failed`]) |
//! | `client/auth.rs` | AUTH PLAIN/LOGIN |
//! | `client/transaction.rs` | the transaction state machine: local checks, MAIL/RCPT/DATA/BDAT, streaming the message, outcomes |
//! | `client/reader.rs` | reading replies from the server's bytes |
//! | `client/capabilities.rs` | [`Capabilities`] from the EHLO reply |
//! | `client/encode.rs` | line-ending normalisation, DATA transparency (dot-stuffing), the RFC 1870 size and the 8-bit scan |
//! | `client/downgrade.rs` | [`downgrade_8bit`] |
//! | `client/fuzzing.rs` | the driver the property tests and the fuzz target share (feature `fuzzing`) |

mod action;
mod auth;
mod capabilities;
mod config;
mod downgrade;
mod encode;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
mod outcome;
#[cfg(test)]
mod proptests;
mod reader;
mod setup;
#[cfg(test)]
mod tests;
mod transaction;

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use self::encode::{MessageFacts as Scan, Normalizer, Pieces};
use self::reader::ReplyReader;
#[cfg(doc)]
use crate::address::Address;
pub use crate::dsn::{DsnRet, Notify};
use crate::reply::Reply;

pub use self::action::{ClientAction, ClientPhase};
pub use self::capabilities::Capabilities;
pub use self::config::{
    ClientConfig, Credentials, DEFAULT_CHUNK_SIZE, DEFAULT_MAX_REPLY_LINE, DEFAULT_MAX_REPLY_LINES,
    Recipient, Streamed, TlsRequirement, Transaction,
};
pub use self::downgrade::{DowngradeError, downgrade_8bit};
pub use self::encode::{FactsScanner, MessageFacts};
pub use self::outcome::{
    ClientFailure, ConnectionOutcome, ProtocolError, RecipientOutcome, RecipientStatus,
    TransactionOutcome,
};

// ------------------------------------------------------------------------------------
// The session

/// The reply the session waits for, in command order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Greeting,
    Ehlo,
    Helo,
    StartTls,
    AuthPlain,
    /// 0: after `AUTH LOGIN`, 1: after the user name, 2: after the password.
    AuthLogin(u8),
    Rset,
    Mail,
    Rcpt(usize),
    Data,
    DataEnd,
    /// The lone `.` after a 354 with no accepted recipient.
    DataAbort,
    Bdat {
        last: bool,
    },
    Quit,
}

impl Expect {
    fn phase(self) -> ClientPhase {
        match self {
            Expect::Greeting => ClientPhase::Greeting,
            Expect::Ehlo | Expect::Helo => ClientPhase::Ehlo,
            Expect::StartTls => ClientPhase::StartTls,
            Expect::AuthPlain | Expect::AuthLogin(_) => ClientPhase::Auth,
            Expect::Rset => ClientPhase::Rset,
            Expect::Mail => ClientPhase::Mail,
            Expect::Rcpt(_) => ClientPhase::Rcpt,
            Expect::Data => ClientPhase::DataInit,
            Expect::DataEnd | Expect::DataAbort | Expect::Bdat { .. } => {
                ClientPhase::DataTermination
            }
            Expect::Quit => ClientPhase::Quit,
        }
    }
}

#[derive(Debug)]
enum Stage {
    /// MAIL/RCPT (and a pipelined DATA) in flight.
    Envelope,
    /// Message data being produced.
    Body(Normalizer),
    /// Waiting for the replies to the data.
    Final,
}

/// A recipient's decided result: status, reply, remote.
type Decided = (RecipientStatus, Reply, bool);

/// The transaction in flight.
#[derive(Debug)]
struct Active {
    txn: Transaction,
    scan: Scan,
    results: Vec<Option<Decided>>,
    accepted: Vec<bool>,
    /// Recipients to send RCPT for (the rest were decided locally).
    to_send: Vec<usize>,
    /// Next entry of `to_send` (one command at a time without PIPELINING).
    next_rcpt: usize,
    pipelining: bool,
    bdat: bool,
    mail_failed: bool,
    /// First failure reply to a BDAT chunk.
    bdat_error: Option<Reply>,
    stage: Stage,
    last_reply: Option<Reply>,
    /// The message as the driver hands it over, when it is [streamed](Transaction::streamed).
    pieces: Option<Pieces>,
}

impl Active {
    /// A transaction before MAIL: nothing accepted, nothing sent yet.
    fn new(
        txn: Transaction,
        scan: Scan,
        results: Vec<Option<Decided>>,
        to_send: Vec<usize>,
    ) -> Box<Active> {
        let n = txn.recipients.len();
        let pieces = txn.streamed.map(|s| Pieces::new(s.len));
        Box::new(Active {
            pieces,
            txn,
            scan,
            results,
            accepted: vec![false; n],
            to_send,
            next_rcpt: 0,
            pipelining: false,
            bdat: false,
            mail_failed: false,
            bdat_error: None,
            stage: Stage::Envelope,
            last_reply: None,
        })
    }

    fn any_accepted(&self) -> bool {
        !self.mail_failed && self.accepted.iter().any(|&a| a)
    }
}

/// One SMTP client connection.
///
/// `Debug` is a state summary: no message contents, no credentials.
pub struct ClientSession {
    config: ClientConfig,
    reader: ReplyReader,
    output: Vec<u8>,
    expects: VecDeque<Expect>,
    caps: Option<Capabilities>,
    tls: bool,
    tls_verified: bool,
    tls_pending: bool,
    /// Bytes were fed while the handshake was pending.
    injection: bool,
    /// Greeting, EHLO, STARTTLS and AUTH are done.
    ready: bool,
    /// The server may have an open transaction: RSET before the next MAIL.
    dirty: bool,
    queued: Option<Transaction>,
    txn: Option<Box<Active>>,
    outcomes: VecDeque<TransactionOutcome>,
    quit_requested: bool,
    quit_sent: bool,
    /// The failure to report once the QUIT reply (or EOF) arrives.
    closing_failure: Option<ClientFailure>,
    done: Option<ConnectionOutcome>,
    last_reply: Option<Reply>,
    /// The last `Send` carried message data (phase `DataBlock` for its write).
    sending_data: bool,
    transactions: u32,
}

impl fmt::Debug for ClientSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientSession")
            .field("phase", &self.phase())
            .field("tls", &self.tls)
            .field("tls_verified", &self.tls_verified)
            .field("ready", &self.ready)
            .field("dirty", &self.dirty)
            .field("expects", &self.expects)
            .field("buffered", &self.reader.buffered())
            .field("in_transaction", &self.txn.is_some())
            .field("queued", &self.queued.is_some())
            .field("quit_sent", &self.quit_sent)
            .field("transactions", &self.transactions)
            .field("done", &self.done.is_some())
            .finish_non_exhaustive()
    }
}

/// EHLO/HELO argument: printable ASCII only, never empty.
fn sanitize_ehlo(name: &str) -> String {
    let clean: String = name.chars().filter(char::is_ascii_graphic).collect();
    if clean.is_empty() {
        "localhost".to_string()
    } else {
        clean
    }
}

impl ClientSession {
    /// A session for a new connection; the first thing it expects is the greeting.
    pub fn new(mut config: ClientConfig) -> ClientSession {
        config.ehlo_name = sanitize_ehlo(&config.ehlo_name);
        config.max_reply_line = config.max_reply_line.max(512);
        config.max_reply_lines = config.max_reply_lines.max(1);
        config.chunk_size = config.chunk_size.max(1);
        ClientSession {
            reader: ReplyReader::new(config.max_reply_line, config.max_reply_lines),
            tls: config.already_tls,
            config,
            output: Vec::new(),
            expects: VecDeque::from([Expect::Greeting]),
            caps: None,
            tls_verified: false,
            tls_pending: false,
            injection: false,
            ready: false,
            dirty: false,
            queued: None,
            txn: None,
            outcomes: VecDeque::new(),
            quit_requested: false,
            quit_sent: false,
            closing_failure: None,
            done: None,
            last_reply: None,
            sending_data: false,
            transactions: 0,
        }
    }

    /// Bytes read from the server. Ignored once the session is over; bytes fed while
    /// a TLS handshake is pending are a response injection (the next poll ends the
    /// session).
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.done.is_some() || bytes.is_empty() {
            return;
        }
        if self.tls_pending {
            self.injection = true;
            return;
        }
        self.reader.feed(bytes);
    }

    /// Processes what was fed until the driver has to do something.
    pub fn poll(&mut self) -> ClientAction {
        self.sending_data = false;
        loop {
            if !self.output.is_empty() {
                return ClientAction::Send(std::mem::take(&mut self.output));
            }
            if let Some(o) = self.outcomes.pop_front() {
                return ClientAction::TransactionDone(Box::new(o));
            }
            if let Some(d) = &self.done {
                return ClientAction::Done(Box::new(d.clone()));
            }
            if self.tls_pending {
                if self.injection {
                    self.fail(ClientFailure::StartTlsResponseInjection, false);
                    continue;
                }
                return ClientAction::StartTls;
            }
            if let Some(offset) = self.awaiting_message() {
                return ClientAction::NeedMessage { offset };
            }
            if self.can_stream() {
                self.stream();
                continue;
            }
            if !self.expects.is_empty() {
                match self.reader.next_reply() {
                    Ok(Some(reply)) => self.on_reply(reply),
                    Ok(None) => return ClientAction::NeedInput,
                    Err(e) => self.fail(ClientFailure::Protocol(e), false),
                }
                continue;
            }
            if !self.ready || self.txn.is_some() {
                // Every path that leaves setup or a transaction waits for a reply;
                // reaching this is a bug, which must not hang the driver.
                self.fail(
                    ClientFailure::Protocol(ProtocolError::UnexpectedReply {
                        phase: self.phase(),
                        code: 0,
                    }),
                    false,
                );
                continue;
            }
            if let Some(txn) = self.queued.take() {
                if self.dirty {
                    self.queued = Some(txn);
                    self.command("RSET", Expect::Rset);
                } else {
                    self.begin(txn);
                }
                continue;
            }
            if self.quit_requested && !self.quit_sent {
                self.send_quit();
                continue;
            }
            return ClientAction::Ready;
        }
    }

    /// Hands over the next transaction for this connection. Refused (given back)
    /// while another one is queued or running, after [`ClientSession::quit`] and once
    /// the session is over.
    #[expect(
        clippy::result_large_err,
        reason = "the refused transaction is handed back by value so the caller can requeue it"
    )]
    pub fn next_transaction(&mut self, txn: Transaction) -> Result<(), Transaction> {
        if self.done.is_some()
            || self.quit_requested
            || self.quit_sent
            || self.txn.is_some()
            || self.queued.is_some()
        {
            return Err(txn);
        }
        self.queued = Some(txn);
        Ok(())
    }

    /// The next piece of a [streamed](Transaction::streamed) message, after
    /// [`ClientAction::NeedMessage`]: at least one octet, from the offset asked for (octets
    /// past the message's length are ignored). A driver that cannot read the message calls
    /// [`ClientSession::connection_lost`] instead.
    pub fn message_data(&mut self, piece: &[u8]) {
        if let Some(p) = self.txn.as_mut().and_then(|a| a.pieces.as_mut())
            && p.waiting
            && !piece.is_empty()
        {
            p.give(piece);
        }
    }

    /// Ends the session with QUIT once the current transaction (if any) is finished.
    pub fn quit(&mut self) {
        self.quit_requested = true;
    }

    /// EOF or an I/O error on the connection. After QUIT this is a normal end.
    pub fn connection_lost(&mut self) {
        if self.quit_sent {
            self.finish_connection();
        } else {
            self.fail(ClientFailure::ConnectionLost, false);
        }
    }

    /// The driver's timer for [`ClientSession::timeout`] fired.
    pub fn timed_out(&mut self) {
        if self.quit_sent {
            self.finish_connection();
        } else {
            self.fail(ClientFailure::Timeout, false);
        }
    }

    /// The current phase (for the write that follows a `Send`, or the read after
    /// `NeedInput`).
    pub fn phase(&self) -> ClientPhase {
        if self.done.is_some() {
            ClientPhase::Closed
        } else if self.tls_pending {
            ClientPhase::TlsHandshake
        } else if self.sending_data || self.can_stream() {
            ClientPhase::DataBlock
        } else if let Some(e) = self.expects.front() {
            e.phase()
        } else {
            ClientPhase::Idle
        }
    }

    /// RFC 5321 §4.5.3.2 timeout for the current phase.
    pub fn timeout(&self) -> Option<Duration> {
        self.phase().timeout()
    }

    /// The server's capabilities (current: post-TLS once TLS is up).
    pub fn capabilities(&self) -> Option<&Capabilities> {
        self.caps.as_ref()
    }

    /// The connection is encrypted.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The last reply received.
    pub fn last_reply(&self) -> Option<&Reply> {
        self.last_reply.as_ref()
    }

    // --------------------------------------------------------------------------------
    // Sending

    fn command(&mut self, line: &str, expect: Expect) {
        self.output.extend_from_slice(line.as_bytes());
        self.output.extend_from_slice(b"\r\n");
        self.expects.push_back(expect);
    }

    fn send_ehlo(&mut self) {
        let line = format!("EHLO {}", self.config.ehlo_name);
        self.command(&line, Expect::Ehlo);
    }

    fn send_quit(&mut self) {
        self.quit_sent = true;
        self.command("QUIT", Expect::Quit);
    }

    // --------------------------------------------------------------------------------
    // Ending

    /// Ends the session: the running and the queued transaction get their outcome;
    /// with `quit`, QUIT is sent first and the failure reported after its reply.
    fn fail(&mut self, failure: ClientFailure, quit: bool) {
        if self.done.is_some() {
            return;
        }
        self.abandon(&failure);
        if self.quit_sent {
            // Already ending: the failure that made us QUIT (or none) stands.
            self.finish_connection();
        } else if quit {
            self.closing_failure = Some(failure);
            self.send_quit();
        } else {
            self.closing_failure = Some(failure);
            self.finish_connection();
        }
    }

    /// Drops what is pending; the running and the queued transaction end with `failure`.
    fn abandon(&mut self, failure: &ClientFailure) {
        self.output.clear();
        self.expects.clear();
        self.tls_pending = false;
        if let Some(a) = self.txn.take() {
            self.finish_txn(a, Some(failure.clone()), None);
        }
        if let Some(t) = self.queued.take() {
            self.local_outcome(t, failure.clone(), None);
        }
    }

    fn finish_connection(&mut self) {
        if self.done.is_some() {
            return;
        }
        self.abandon(&ClientFailure::ConnectionLost);
        self.done = Some(ConnectionOutcome {
            failure: self.closing_failure.take(),
            last_reply: self.last_reply.clone(),
            tls: self.tls,
            tls_verified: self.tls_verified,
            capabilities: self.caps.clone(),
            transactions: self.transactions,
        });
    }

    fn unexpected(&mut self, expect: Expect, reply: &Reply) {
        self.fail(
            ClientFailure::Protocol(ProtocolError::UnexpectedReply {
                phase: expect.phase(),
                code: reply.code,
            }),
            false,
        );
    }

    // --------------------------------------------------------------------------------
    // Replies

    fn on_reply(&mut self, reply: Reply) {
        self.last_reply = Some(reply.clone());
        let Some(expect) = self.expects.pop_front() else {
            return;
        };
        if let Some(a) = &mut self.txn {
            a.last_reply = Some(reply.clone());
        }
        match expect {
            Expect::Quit => return self.finish_connection(),
            Expect::Greeting => return self.on_greeting(reply),
            _ => {}
        }
        if reply.code == 421 {
            return self.fail(ClientFailure::ServiceClosing(reply), false);
        }
        match expect {
            Expect::Ehlo => self.on_ehlo(reply),
            Expect::Helo => self.on_helo(reply),
            Expect::StartTls => self.on_starttls(reply),
            Expect::AuthPlain | Expect::AuthLogin(_) => self.on_auth(expect, reply),
            Expect::Rset => {
                if reply.code == 250 {
                    self.dirty = false;
                } else {
                    self.unexpected(expect, &reply);
                }
            }
            Expect::Mail
            | Expect::Rcpt(_)
            | Expect::Data
            | Expect::DataEnd
            | Expect::DataAbort
            | Expect::Bdat { .. } => match self.txn.take() {
                Some(a) => self.on_txn_reply(a, expect, reply),
                None => self.unexpected(expect, &reply),
            },
            Expect::Quit | Expect::Greeting => {}
        }
    }
}
