//! hato-imap: the IMAP server's wire layer and connection state machine, sans-IO.
//!
//! The crate contains no I/O and no async code: a driver (the `hato` binary) owns the
//! socket, the TLS stream and the store, and moves bytes in and typed responses out.
//! It must never: allocate in proportion to a size the client merely announces, execute
//! bytes that were part of a literal or that arrived before a TLS handshake, recurse
//! without bound on client input, or write a response whose line structure a stored value
//! can break.
//!
//! | module | implements |
//! |---|---|
//! | [`framer`] | RFC 9051 §4.3 literals, §2.2.1 command continuation; RFC 7888 LITERAL+/LITERAL- (§4 the 4096-octet bound, `[TOOBIG]`); RFC 3516 `literal8`; RFC 7889 APPENDLIMIT (checked at announcement); RFC 9051 §6.2.1 STARTTLS injection defence |
//! | [`parse`] | RFC 9051 §9 / RFC 3501 §9 command grammar; RFC 2971 ID, 3502 MULTIAPPEND, 3516 BINARY, 4315 UID EXPUNGE, 4466, 4469 CATENATE, 4731 ESEARCH, 4959 SASL-IR, 5032, 5161 ENABLE, 5182 SEARCHRES, 5256 SORT/THREAD, 5258 LIST-EXTENDED, 5819 LIST-STATUS, 6154 SPECIAL-USE, 6851 MOVE, 7162 CONDSTORE/QRESYNC, 9208 QUOTA (§4.1.1–§4.1.3 GETQUOTA/GETQUOTAROOT/SETQUOTA, §4.1.4 STATUS DELETED-STORAGE) |
//! | [`command`] | the typed commands |
//! | [`response`], [`encode`] | RFC 9051 §7 responses and §7.1 response codes (+ RFC 4315, 5530, 7162, 9208 codes), string quoting/literal choice; RFC 9208 §4.2.1 QUOTA / §4.2.2 QUOTAROOT responses |
//! | [`quota`] | RFC 9208 as hato serves it: one root `""` per account, STORAGE (§5.1) in KiB, capabilities only with a configured limit, SETQUOTA refused `NO [NOPERM]`, `[OVERQUOTA]` (§4.3.1) |
//! | [`sequence`] | RFC 9051 §9 `sequence-set`, RFC 5182 `$` |
//! | [`mailbox`] | RFC 3501 §5.1.3 modified UTF-7, RFC 9051 §5.1 / RFC 6855 UTF-8 names |
//! | [`datetime`] | RFC 9051 §9 `date`, `date-time` |
//! | [`flag`] | RFC 9051 §2.3.2 flags |
//! | [`session`] | RFC 9051 §3 states, §6 command validity, §6.2.1 STARTTLS, §6.2.2/§6.2.3 AUTHENTICATE/LOGIN (RFC 4616 PLAIN, RFC 4959 SASL-IR), RFC 2177 IDLE, RFC 5161 ENABLE, RFC 7162 §3.1/§3.2.3 enabling rules, RFC 9208 QUOTA announcement and command refusals |
//! | [`view`] | the selected mailbox of one session ([`view::SelectedView`]): sequence numbers ↔ UIDs, RFC 9051 §7.5.1 / RFC 3501 §7.4.1 rules for when EXISTS/EXPUNGE/FETCH may be sent, RFC 7162 VANISHED and HIGHESTMODSEQ, RFC 3501 `\Recent` (the UIDs this session claimed), RFC 5182 `$` |
//! | [`search`] | RFC 9051 §6.4.4 / RFC 3501 §6.4.4 SEARCH evaluation in two phases (metadata, then message bytes only when a key needs them), RFC 4731 ESEARCH, RFC 5182 SAVE, RFC 7162 §3.1.5 MODSEQ, RFC 5032 OLDER/YOUNGER ([`search::Search`]) |
//! | [`sort`] | RFC 5256 §3 SORT and §2.1 base subject, §2.2 sent date; RFC 5957 SORT=DISPLAY; RFC 5267 §3 ESORT ([`sort::SortMessage`]) |
//! | [`url`] | RFC 5092 IMAP URLs naming a message or section on this server, for RFC 4469 CATENATE |
//! | [`thread`] | RFC 5256 §3 THREAD=ORDEREDSUBJECT and THREAD=REFERENCES, §4 `* THREAD` |
//! | [`mime`] | RFC 9051 §7.5.2 ENVELOPE and BODYSTRUCTURE, §6.4.5 `BODY[section]<partial>`, RFC 3516 BINARY/BINARY.SIZE ([`mime::ParsedMessage`]; header fields parsed by mail-parser) |
//!
//! # Wire layer decision: our own parser, not imap-codec
//!
//! The founders' notes suggested `imap-codec =2.0.0-alpha.10`. It was checked (built in a
//! scratch crate with the features `ext_condstore_qresync ext_id ext_list_extended
//! ext_namespace ext_status_size ext_utf8 starttls`, its source read) against what issue 3
//! needs. It does parse SELECT/EXAMINE `(CONDSTORE)` and `(QRESYNC (...))`, FETCH
//! `(CHANGEDSINCE n VANISHED)`, STORE `(UNCHANGEDSINCE n)`, SEARCH `MODSEQ`, BINARY,
//! `literal8`, ID, ENABLE, NAMESPACE, UID EXPUNGE, MOVE, IDLE and AUTHENTICATE with SASL-IR.
//! But it rejects (`DecodeError::Failed`) commands clients send and issue 3 requires:
//! `SEARCH RETURN (MIN MAX COUNT ...)` (ESEARCH, RFC 4731/9051) and `UID SEARCH RETURN
//! (SAVE)`, the `$` sequence set (SEARCHRES, RFC 5182: `FETCH $ (FLAGS)`), every
//! LIST-EXTENDED form (`LIST (SUBSCRIBED) "" "*"`, `LIST "" "*" RETURN (CHILDREN
//! SPECIAL-USE STATUS (...))`, `LIST "" ("INBOX" "Drafts")` — its `ext_list_extended`
//! feature only defines types, no parser uses them), `STATUS (APPENDLIMIT)` and
//! MULTIAPPEND (`APPEND box {3+}\r\nabc {3+}\r\ndef`). Worse for a server, its framing
//! (`fragmentizer.rs`) reads the literal size into a `u32` and, when the size overflows
//! (`{999999999999+}`), treats the line as having *no* literal: the line is complete and
//! the literal's content that follows is framed as the next command — client-controlled
//! bytes executed as commands, the injection this crate must rule out. Its only bound is
//! one maximum message size (no per-literal limit tied to APPENDLIMIT, no literal count,
//! no LITERAL- 4096 rule, no nesting bound in the framer), it is a pre-release pinned to
//! an alpha, and our MIME types would still need mapping from its types. Adding the
//! missing grammar around it would mean forking its parser anyway. So hato frames and
//! parses itself, like mox and Dovecot: a bounded line+literal [`framer`] feeding a
//! hand-written recursive-descent [`parse`]r, with property tests (random input never
//! panics; framing is identical however the input is chunked; encoder output parses back).
//!
//! # Example
//!
//! ```
//! use hato_imap::encode::EncodeOptions;
//! use hato_imap::framer::{Event, Framer, Limits};
//! use hato_imap::parse::{parse_command, ParseOptions};
//! use hato_imap::command::CommandBody;
//! use hato_imap::response::{Code, Response, StatusKind};
//!
//! let mut framer = Framer::new(Limits::default());
//! framer.feed(b"a1 LOGIN {5}\r\n");
//! // A synchronising literal: the session decides, then answers with a continuation.
//! assert!(matches!(framer.next_event(), Some(Event::SyncLiteral { size: 5, .. })));
//! framer.accept_literal();
//! let cont = Response::Continue("Ready for literal data".into());
//! assert_eq!(cont.to_bytes(EncodeOptions::default()), b"+ Ready for literal data\r\n");
//! framer.feed(b"alice secret\r\n");
//! let Some(Event::Command(raw)) = framer.next_event() else { panic!() };
//! let cmd = parse_command(&raw.bytes, &ParseOptions::default()).unwrap();
//! assert!(matches!(cmd.body, CommandBody::Login { ref username, .. } if username == "alice"));
//! let reply = Response::tagged(&cmd.tag, StatusKind::Ok, Some(Code::Capability(vec!["IMAP4rev2".into()])), "LOGIN completed");
//! assert_eq!(reply.to_bytes(EncodeOptions::default()), b"a1 OK [CAPABILITY IMAP4rev2] LOGIN completed\r\n");
//! ```

pub mod command;
pub mod datetime;
pub mod encode;
pub mod flag;
pub mod framer;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod mailbox;
pub mod mime;
pub mod parse;
pub mod quota;
pub mod response;
pub mod search;
pub mod sequence;
pub mod session;
pub mod sort;
#[cfg(test)]
mod testing;
pub mod thread;
pub mod url;
pub mod view;

pub use command::{Command, CommandBody};
pub use encode::EncodeOptions;
pub use framer::{Event, FrameError, Framer, Limits, RawCommand};
pub use mime::ParsedMessage;
pub use parse::{
    ParseError, ParseErrorKind, ParseOptions, parse_command, parse_command_owned, parse_raw_command,
};
pub use response::{Code, Data, Response, StatusKind};
pub use search::{MessageMeta, Search, SearchError, SearchProgram, Verdict};
pub use session::{
    Action, AuthOutcome, Config, Enabled, Outcome, Session, SessionStats, State, TlsInfo,
};
pub use view::{Moment, SelectedView};
