//! hato-pop3: the POP3 server session, sans-IO.
//!
//! The crate contains no I/O and no async code: a driver (the `hato` binary) owns
//! the socket, the TLS stream and the store, and moves bytes and decisions in and out
//! of a [`Session`]. See the [`session`] module for the driving loop and the security
//! properties.
//!
//! | module | implements |
//! |---|---|
//! | [`session`] | RFC 1939 POP3 (§3 states, §4 AUTHORIZATION, §5 TRANSACTION, §6 UPDATE, §7 TOP/UIDL/USER/PASS), RFC 2449 (§4 line lengths, §5 CAPA, §6 capabilities, §8 response codes), RFC 2595 §4 STLS, RFC 5034 SASL AUTH with RFC 4616 PLAIN, RFC 3206 `[SYS/TEMP]`/`[SYS/PERM]`/`[AUTH]` and AUTH-RESP-CODE, RFC 8314 implicit TLS |
//! | [`transfer`] | RFC 1939 §3 multi-line responses: byte-stuffing, CRLF line endings; §7 TOP |
//!
//! ```
//! use std::sync::Arc;
//! use hato_pop3::{Action, AuthOutcome, Config, MessageInfo, Session, TlsInfo};
//!
//! let tls = TlsInfo { version: "TLSv1.3".into(), cipher: "TLS_AES_128_GCM_SHA256".into(), sni: None };
//! let mut s = Session::new(Arc::new(Config::default()), Some(tls)); // port 995
//! s.greet();
//! s.feed(b"USER alice\r\nPASS secret\r\nSTAT\r\n");
//! assert!(matches!(s.poll(), Action::Authenticate { .. }));
//! s.auth_result(AuthOutcome::Ok);
//! assert_eq!(s.poll(), Action::OpenMaildrop { username: "alice".into() });
//! s.maildrop_result(Ok(vec![MessageInfo { size: 120, uid: "a1".into() }]));
//! assert_eq!(s.poll(), Action::NeedInput);
//! let out = String::from_utf8(s.output()).unwrap();
//! assert_eq!(
//!     out,
//!     "+OK localhost hato POP3 server ready\r\n+OK send PASS\r\n\
//!      +OK maildrop locked and ready\r\n+OK 1 120\r\n"
//! );
//! ```

pub mod session;
pub mod transfer;

pub use session::{
    AUTH_LINE_MAX, Action, AuthOutcome, CommitError, Config, MAX_UID_LEN, MIN_COMMAND_LINE,
    MaildropError, MessageError, MessageInfo, Session, SessionStats, State, TlsInfo,
};
pub use transfer::wire_size;
