//! The command parser: a hand-written recursive-descent parser over one framed command
//! ([`crate::framer::RawCommand`]) producing a typed [`Command`].
//!
//! Grammar: RFC 9051 §9 (IMAP4rev2) and RFC 3501 §9 (IMAP4rev1), with RFC 2971 (ID),
//! RFC 3502 (MULTIAPPEND), RFC 3516 (BINARY, `literal8`), RFC 4315 (UID EXPUNGE),
//! RFC 4466 (command modifiers), RFC 4731 (ESEARCH `RETURN`), RFC 4959 (SASL-IR),
//! RFC 5032 (OLDER/YOUNGER), RFC 5161 (ENABLE), RFC 5182 (`$`), RFC 5258 / 5819 / 6154
//! (LIST-EXTENDED, LIST-STATUS, SPECIAL-USE, CREATE-SPECIAL-USE), RFC 6851 (MOVE),
//! RFC 7162 (CONDSTORE/QRESYNC), RFC 7888 (`{n+}`), RFC 9208 (GETQUOTA, GETQUOTAROOT,
//! SETQUOTA §4.1.1–§4.1.3; STATUS DELETED-STORAGE §4.1.4).
//!
//! The input is complete and bounded (the framer saw to that), so the parser works on a
//! slice and never waits. Choices:
//!
//! * Keywords are case-insensitive; exactly one SP separates tokens (no leniency about
//!   extra spaces: RFC 9051 §9 is strict, and so are the major servers).
//! * Recursion (SEARCH `NOT`/`OR`/parentheses) is bounded by [`ParseOptions::max_depth`],
//!   so no input can exhaust the stack.
//! * Strings (quoted, literal) must not contain NUL; quoted strings must not contain CR or
//!   LF (they cannot: the framer ends lines there). An APPEND message literal may contain
//!   NUL (leniency for messages copied from other servers) and so may `literal8`.
//! * SEARCH accepts only `CHARSET UTF-8` / `US-ASCII` (others: [`ParseErrorKind::BadCharset`],
//!   answered `NO [BADCHARSET (UTF-8)]`); search strings must be UTF-8.
//! * `VANISHED` is accepted only in UID FETCH with CHANGEDSINCE (RFC 7162 §3.2.6);
//!   `RECURSIVEMATCH` only with another selection option (RFC 5258 §3.1); QRESYNC
//!   known-uids must not contain `*`.
//!
//! # Layout
//!
//! This file holds the public interface ([`parse_command`], [`ParseOptions`],
//! [`ParseError`]), the parser state and the command dispatcher (with the commands
//! parsed inline, ID and AUTHENTICATE); the rest is in `parse/`:
//!
//! | file | contains |
//! |---|---|
//! | `primitives.rs` | RFC 9051 §9 basic productions: atoms, numbers, `number64`/mod-sequences, quoted strings, literals (RFC 7888 `{n+}`, RFC 3516 `literal8`), `astring`/`nstring`, mailbox names and patterns, flags, `date`/`date-time`, `sequence-set` (RFC 5182 `$`), parenthesised lists |
//! | `mailbox.rs` | SELECT/EXAMINE (RFC 7162 CONDSTORE, QRESYNC), CREATE (RFC 6154 USE), LIST (RFC 5258, 5819, 6154), STATUS items, SETQUOTA (RFC 9208 §4.1.3), APPEND (RFC 3502 MULTIAPPEND) |
//! | `search.rs` | SEARCH: RFC 4731 `RETURN`, CHARSET, search keys (RFC 7162 MODSEQ, RFC 5032 OLDER/YOUNGER), the nesting bound; RFC 5256 SORT (RFC 5957 DISPLAYFROM/DISPLAYTO, RFC 5267 ESORT `RETURN`) and THREAD |
//! | `fetch.rs` | FETCH: attributes, `section`, `partial`, RFC 3516 BINARY, RFC 7162 CHANGEDSINCE/VANISHED |
//! | `store.rs` | STORE (RFC 7162 UNCHANGEDSINCE), COPY, MOVE (RFC 6851) |
//! | `tests.rs` | parser tests |

mod fetch;
mod mailbox;
mod primitives;
mod search;
mod store;
#[cfg(test)]
mod tests;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::command::*;
use crate::framer::{RawCommand, is_valid_tag};

/// How to parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseOptions {
    /// Mailbox names are UTF-8 (the client enabled IMAP4rev2 or UTF8=ACCEPT); otherwise
    /// modified UTF-7 (see [`crate::mailbox`]).
    pub utf8: bool,
    /// Deepest recursion of SEARCH keys (`NOT`, `OR`, parentheses).
    pub max_depth: usize,
}

impl Default for ParseOptions {
    fn default() -> ParseOptions {
        ParseOptions {
            utf8: false,
            max_depth: 32,
        }
    }
}

/// Why a command was not parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    /// The tag, if the command had a valid one (answer `tag BAD`, else `* BAD`).
    pub tag: Option<String>,
    pub kind: ParseErrorKind,
    /// A short explanation for the response text (never echoes client data).
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParseErrorKind {
    /// The command is malformed: `BAD`.
    Syntax,
    /// No such command: `BAD`.
    UnknownCommand,
    /// SEARCH with an unsupported charset: `NO [BADCHARSET (UTF-8)]` (RFC 9051 §6.4.4).
    BadCharset,
    /// Nested too deeply: `BAD`.
    TooDeep,
    /// A mailbox name no mailbox can have (not valid modified UTF-7 or UTF-8, control
    /// characters): `NO [CANNOT]`, as for any mailbox that does not exist (imaptest expects
    /// NO; a BAD would make clients drop the connection).
    MailboxName,
}

type Result<T> = std::result::Result<T, ParseError>;

/// Parses one framed command (the bytes of [`crate::framer::RawCommand`]).
pub fn parse_command(input: &[u8], opts: &ParseOptions) -> Result<Command> {
    parse(input, &[], opts, None)
}

/// A command as the framer gives it: [`parse_command_owned`] of its bytes, knowing which
/// APPEND literals the driver [took](crate::framer::Framer::take_literal) while they
/// arrived (their [`AppendMessage::taken`](crate::command::AppendMessage::taken)).
pub fn parse_raw_command(raw: RawCommand, opts: &ParseOptions) -> Result<Command> {
    owned(raw.bytes, &raw.taken, opts)
}

/// [`parse_command`] taking the command's bytes: an APPEND message is cut out of them rather
/// than copied (the last one in place, without a second allocation), so a message of any
/// size is in memory once.
pub fn parse_command_owned(input: Vec<u8>, opts: &ParseOptions) -> Result<Command> {
    owned(input, &[], opts)
}

fn owned(mut input: Vec<u8>, taken: &[(usize, u64)], opts: &ParseOptions) -> Result<Command> {
    let mut at = Vec::new();
    let mut cmd = parse(&input, taken, opts, Some(&mut at))?;
    if let CommandBody::Append { messages, .. } = &mut cmd.body
        && let Some(last) = at.pop()
    {
        for (m, r) in messages.iter_mut().zip(&at) {
            m.data = input[r.clone()].to_vec();
        }
        input.truncate(last.end);
        input.drain(..last.start);
        if let Some(m) = messages.last_mut() {
            m.data = input;
        }
    }
    Ok(cmd)
}

/// `[section]` as in `BODY[section]` (for IMAP URLs, [`crate::url`]); `None` unless the
/// input is exactly one section.
pub(crate) fn parse_section(input: &[u8]) -> Option<crate::command::Section> {
    let mut p = Parser {
        buf: input,
        pos: 0,
        opts: ParseOptions::default(),
        depth: 0,
        tag: None,
        append_at: None,
        literals: Literals {
            taken: &[],
            next: 0,
            last_taken: None,
        },
    };
    let section = p.section().ok()?;
    p.eof().then_some(section)
}

/// `append_at`: where APPEND messages are left in `input` (their data stays empty) instead of
/// being copied.
fn parse(
    input: &[u8],
    taken: &[(usize, u64)],
    opts: &ParseOptions,
    append_at: Option<&mut Vec<std::ops::Range<usize>>>,
) -> Result<Command> {
    let mut p = Parser {
        buf: input,
        pos: 0,
        opts: *opts,
        depth: 0,
        tag: None,
        append_at,
        literals: Literals {
            taken,
            next: 0,
            last_taken: None,
        },
    };
    let tag_end = input.iter().position(|&b| b == b' ').unwrap_or(input.len());
    if !is_valid_tag(&input[..tag_end]) {
        return Err(p.error(ParseErrorKind::Syntax, "invalid tag"));
    }
    let tag = String::from_utf8_lossy(&input[..tag_end]).into_owned();
    p.tag = Some(tag.clone());
    p.pos = tag_end;
    if p.eof() {
        return Err(p.syntax("missing command"));
    }
    p.sp()?;
    let body = p.command()?;
    if !p.eof() {
        return Err(p.syntax("unexpected characters at end of command"));
    }
    Ok(Command { tag, body })
}

/// The longest field name and value of an ID parameter list (RFC 2971 §3.3).
const ID_MAX_FIELD: usize = 30;
const ID_MAX_VALUE: usize = 1024;
const ID_MAX_PAIRS: usize = 30;

struct Parser<'a, 'r> {
    buf: &'a [u8],
    pos: usize,
    opts: ParseOptions,
    depth: usize,
    tag: Option<String>,
    /// Where APPEND messages are (instead of copies), for [`parse_command_owned`].
    append_at: Option<&'r mut Vec<std::ops::Range<usize>>>,
    literals: Literals<'r>,
}

/// The literals seen so far, and what the driver took of them ([`RawCommand::taken`]).
struct Literals<'r> {
    taken: &'r [(usize, u64)],
    /// Number of the next literal.
    next: usize,
    /// (number, octets taken) of the last literal read, if some were taken.
    last_taken: Option<(usize, u64)>,
}

impl<'a> Parser<'a, '_> {
    // ---- errors ---------------------------------------------------------------------

    fn error(&self, kind: ParseErrorKind, message: &str) -> ParseError {
        ParseError {
            tag: self.tag.clone(),
            kind,
            message: message.to_string(),
        }
    }

    fn syntax(&self, message: &str) -> ParseError {
        self.error(ParseErrorKind::Syntax, message)
    }

    // ---- commands ---------------------------------------------------------------------

    fn command(&mut self) -> Result<CommandBody> {
        let name = self
            .atom()
            .map_err(|_| self.error(ParseErrorKind::UnknownCommand, "missing command"))?;
        let name = String::from_utf8_lossy(name).to_ascii_uppercase();
        let body = match name.as_str() {
            "CAPABILITY" => CommandBody::Capability,
            "NOOP" => CommandBody::Noop,
            "LOGOUT" => CommandBody::Logout,
            "STARTTLS" => CommandBody::StartTls,
            "NAMESPACE" => CommandBody::Namespace,
            "IDLE" => CommandBody::Idle,
            "CHECK" => CommandBody::Check,
            "CLOSE" => CommandBody::Close,
            "UNSELECT" => CommandBody::Unselect,
            "EXPUNGE" => CommandBody::Expunge { uids: None },
            "ID" => return self.id(),
            "AUTHENTICATE" => return self.authenticate(),
            "LOGIN" => {
                let username = self.arg(Self::astring_utf8)?;
                let password = Secret::new(self.arg(Self::astring)?);
                CommandBody::Login { username, password }
            }
            "ENABLE" => {
                let mut caps = Vec::new();
                while !self.eof() {
                    self.sp()?;
                    caps.push(String::from_utf8_lossy(self.atom()?).into_owned());
                }
                if caps.is_empty() {
                    return Err(self.syntax("ENABLE needs a capability"));
                }
                CommandBody::Enable(caps)
            }
            "SELECT" | "EXAMINE" => return self.select(name == "EXAMINE"),
            "CREATE" => return self.create(),
            "DELETE" => CommandBody::Delete(self.arg(Self::mailbox)?),
            "RENAME" => {
                let from = self.arg(Self::mailbox)?;
                let to = self.arg(Self::mailbox)?;
                CommandBody::Rename { from, to }
            }
            "SUBSCRIBE" => CommandBody::Subscribe(self.arg(Self::mailbox)?),
            "UNSUBSCRIBE" => CommandBody::Unsubscribe(self.arg(Self::mailbox)?),
            "LIST" => return self.list(),
            "LSUB" => {
                let reference = self.arg(Self::reference)?;
                let pattern = self.arg(Self::list_mailbox)?;
                CommandBody::Lsub { reference, pattern }
            }
            "STATUS" => {
                let mailbox = self.arg(Self::mailbox)?;
                let items = self.arg(|p| p.paren_list(1, Self::status_item))?;
                CommandBody::Status { mailbox, items }
            }
            "APPEND" => return self.append(),
            // RFC 9208: `quota-root-name = astring` (opaque, not a mailbox name).
            "GETQUOTA" => CommandBody::GetQuota(self.arg(Self::astring_utf8)?),
            "GETQUOTAROOT" => CommandBody::GetQuotaRoot(self.arg(Self::mailbox)?),
            "SETQUOTA" => return self.setquota(),
            "SEARCH" => return self.search(false),
            "SORT" => return self.sort(false),
            "THREAD" => return self.thread(false),
            "FETCH" => return self.fetch(false),
            "STORE" => return self.store(false),
            "COPY" | "MOVE" => return self.copy_move(false, name == "MOVE"),
            "UID" => {
                let sub = self.arg(Self::word)?;
                return match sub.as_str() {
                    "SEARCH" => self.search(true),
                    "SORT" => self.sort(true),
                    "THREAD" => self.thread(true),
                    "FETCH" => self.fetch(true),
                    "STORE" => self.store(true),
                    "COPY" | "MOVE" => self.copy_move(true, sub == "MOVE"),
                    "EXPUNGE" => {
                        let set = self.arg(Self::sequence_set)?;
                        Ok(CommandBody::Expunge { uids: Some(set) })
                    }
                    _ => Err(self.error(ParseErrorKind::UnknownCommand, "unknown UID command")),
                };
            }
            _ => return Err(self.error(ParseErrorKind::UnknownCommand, "unknown command")),
        };
        self.end()?;
        Ok(body)
    }

    fn id(&mut self) -> Result<CommandBody> {
        self.sp()?;
        if self.keyword("NIL") {
            return Ok(CommandBody::Id(None));
        }
        let mut pairs = Vec::new();
        self.byte(b'(', "expected '(' or NIL")?;
        if self.peek() != Some(b')') {
            loop {
                let field = self.string()?;
                let value = self.arg(Self::nstring)?;
                if field.len() > ID_MAX_FIELD
                    || value.as_ref().is_some_and(|v| v.len() > ID_MAX_VALUE)
                {
                    return Err(self.syntax("ID field or value too long"));
                }
                pairs.push((self.utf8(field)?, value.map(|v| self.utf8(v)).transpose()?));
                if pairs.len() > ID_MAX_PAIRS {
                    return Err(self.syntax("too many ID fields"));
                }
                if self.peek() == Some(b')') {
                    break;
                }
                self.sp()?;
            }
        }
        self.byte(b')', "expected ')'")?;
        Ok(CommandBody::Id(Some(pairs)))
    }

    fn authenticate(&mut self) -> Result<CommandBody> {
        let mechanism = self.arg(Self::word)?;
        let mut initial_response = None;
        if !self.eof() {
            self.sp()?;
            let ir =
                self.take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
            if ir.is_empty() {
                return Err(self.syntax("invalid initial response"));
            }
            initial_response = Some(Secret::new(if ir == b"=" {
                Vec::new()
            } else {
                BASE64
                    .decode(ir)
                    .map_err(|_| self.syntax("invalid base64"))?
            }));
        }
        self.end()?;
        Ok(CommandBody::Authenticate {
            mechanism,
            initial_response,
        })
    }
}
