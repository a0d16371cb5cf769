//! hato-smtp: the SMTP server session, sans-IO.
//!
//! The crate contains no I/O and no async code: a driver (the `hato` binary) owns
//! the socket and the TLS stream and moves bytes and decisions in and out of a
//! [`Session`]. See the [`session`] module for the driving loop and the security
//! properties.
//!
//! | module | implements |
//! |---|---|
//! | [`session`] | RFC 5321 server state machine, RFC 1869 EHLO, RFC 1870 SIZE, RFC 2920 PIPELINING, RFC 3030 CHUNKING, RFC 3207 STARTTLS, RFC 3461 DSN parameters, RFC 4954 AUTH (RFC 4616 PLAIN, LOGIN), RFC 6152 8BITMIME, RFC 6531 SMTPUTF8, RFC 8314 implicit TLS, RFC 8689 REQUIRETLS |
//! | [`session::Envelope`] | RFC 5321 §4.4 `Received:` trace field, RFC 3848 `with` keywords |
//! | [`address`] | RFC 5321 §4.1.2 mailbox syntax, RFC 6531 UTF-8 addresses |
//! | [`reply`] | RFC 5321 §4.2 replies, RFC 3463/RFC 2034 enhanced status codes |
//! | [`message`] | RFC 5322 §2.2 header field lookup |
//! | [`dsn`] | RFC 3461 §4 DSN parameter values (RET, ENVID, NOTIFY, ORCPT) and xtext, RFC 6533 §3 `utf-8` ORCPT addresses |
//! | [`client`] | the outbound side: RFC 5321 client, RFC 3207 STARTTLS (with downgrade and response-injection defence), RFC 2920, RFC 3030 BDAT, RFC 6152 8BITMIME (with a quoted-printable downgrade, RFC 2045), RFC 6531, RFC 8689 REQUIRETLS, RFC 4954 AUTH, RFC 3461 DSN parameters |
//!
//! ```
//! use std::sync::Arc;
//! use hato_smtp::{Action, Config, Peer, Session};
//!
//! let peer = Peer { ip: "192.0.2.1".parse().unwrap(), port: 40000, reverse_name: None };
//! let mut s = Session::new(Arc::new(Config::default()), peer, None);
//! s.greet();
//! s.feed(b"EHLO client.example\r\nMAIL FROM:<a@client.example>\r\n");
//! assert!(matches!(s.poll(), Action::CheckSender { .. }));
//! s.sender_result(Ok(()));
//! assert_eq!(s.poll(), Action::NeedInput);
//! let out = String::from_utf8(s.output()).unwrap();
//! assert!(out.starts_with("220 localhost ESMTP hato\r\n250-localhost\r\n"));
//! assert!(out.ends_with("250 2.1.0 Ok\r\n"));
//! ```

pub mod address;
pub mod client;
pub mod dsn;
pub mod message;
pub mod reply;
pub mod session;

pub use address::{Address, AddressError};
pub use client::{
    Capabilities, ClientAction, ClientConfig, ClientFailure, ClientPhase, ClientSession,
    ConnectionOutcome, Credentials, DowngradeError, ProtocolError, Recipient, RecipientOutcome,
    RecipientStatus, TlsRequirement, Transaction, TransactionOutcome, downgrade_8bit,
};
pub use dsn::{AddrType, DsnError, DsnRet, Notify, Orcpt, RcptDsn};
pub use message::header_present;
pub use reply::Reply;
pub use session::{
    Action, AuthOutcome, BareLinePolicy, Config, Envelope, Mode, Peer, Session, SessionStats,
    TlsInfo,
};
