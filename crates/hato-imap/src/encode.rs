//! The response encoder: [`Response`] → bytes (RFC 9051 §7 and §9 `response`).
//!
//! * Strings from messages or the store are written as quoted strings when that is safe
//!   (no NUL, CR or LF; 7-bit, or UTF-8 for a client that enabled UTF-8; at most
//!   [`MAX_QUOTED`] octets) and as literals otherwise, so a value can never break out of
//!   its place in the response.
//! * Human-readable text (`resp-text`) is sanitised: controls (CR and LF included) become
//!   spaces, an empty text becomes `done` (the grammar needs one character), and a text
//!   starting with `[` without a response code is prefixed with `- ` so it cannot be
//!   taken for one.
//! * Atoms the server writes itself (capabilities, flags, attributes) are filtered to atom
//!   characters: a bad keyword from storage cannot corrupt the stream either.
//! * The producer of a [`BodyStructure`] must give every multipart at least one part and
//!   bound the nesting (the MIME layer does).
//! * Mailbox names are written in modified UTF-7 unless the client uses UTF-8
//!   ([`EncodeOptions::utf8`]).

use crate::command::Section;
use crate::datetime::DateTime;
use crate::flag::Flag;
use crate::mailbox::encode_mailbox;
use crate::response::*;

/// Longest value written as a quoted string; longer values become literals.
pub const MAX_QUOTED: usize = 1024;

/// How to encode for this client.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EncodeOptions {
    /// The client enabled IMAP4rev2 or UTF8=ACCEPT: mailbox names and quoted strings may be
    /// UTF-8.
    pub utf8: bool,
}

impl Response {
    /// Appends the wire form of this response (ending in CRLF) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>, opts: EncodeOptions) {
        match self {
            Response::Status {
                tag,
                kind,
                code,
                text,
            } => {
                match tag {
                    Some(t) => out.extend_from_slice(t.as_bytes()),
                    None => out.push(b'*'),
                }
                out.push(b' ');
                out.extend_from_slice(kind.as_str().as_bytes());
                resp_text(out, code.as_ref(), text, opts);
            }
            Response::Data(d) => d.encode(out, opts),
            Response::Continue(text) => {
                out.push(b'+');
                resp_text(out, None, text, opts);
            }
            Response::ContinueBase64(data) => {
                use base64::Engine as _;
                out.extend_from_slice(b"+ ");
                out.extend_from_slice(
                    base64::engine::general_purpose::STANDARD
                        .encode(data)
                        .as_bytes(),
                );
            }
        }
        out.extend_from_slice(b"\r\n");
    }

    /// The wire form as a new buffer.
    pub fn to_bytes(&self, opts: EncodeOptions) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out, opts);
        out
    }
}

/// `[SP "[" code "]"] SP text` (the text never empty: RFC 9051 requires 1*TEXT-CHAR).
fn resp_text(out: &mut Vec<u8>, code: Option<&Code>, text: &str, opts: EncodeOptions) {
    out.push(b' ');
    if let Some(code) = code {
        out.push(b'[');
        code.encode(out, opts);
        out.extend_from_slice(b"] ");
    } else if text.starts_with('[') {
        // Would read as a response code.
        out.extend_from_slice(b"- ");
    }
    sanitized_text(out, if text.is_empty() { "done" } else { text });
}

/// Text with every control character (CR and LF included) replaced by a space.
fn sanitized_text(out: &mut Vec<u8>, text: &str) {
    for c in text.chars() {
        if c.is_control() {
            out.push(b' ');
        } else {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
}

fn number(out: &mut Vec<u8>, n: impl std::fmt::Display) {
    out.extend_from_slice(n.to_string().as_bytes());
}

/// `name` then the number `n`: `UID 7`, ` MIN 1`.
fn item(out: &mut Vec<u8>, name: &[u8], n: impl std::fmt::Display) {
    out.extend_from_slice(name);
    number(out, n);
}

/// [`item`] when there is a value: the optional items of ESEARCH.
fn optional_item(out: &mut Vec<u8>, name: &[u8], n: Option<impl std::fmt::Display>) {
    if let Some(n) = n {
        item(out, name, n);
    }
}

/// `ids` as a sequence-set in their own order: a range `a:b` only where the numbers
/// ascend by one (`3 4 5 1 2` is `3:5,1:2`), so that the set keeps the order (RFC 5267 §3).
fn ordered_set(out: &mut Vec<u8>, ids: &[u32]) {
    let mut i = 0;
    while i < ids.len() {
        let start = ids[i];
        let mut end = start;
        while ids
            .get(i + 1)
            .is_some_and(|&n| end.checked_add(1) == Some(n))
        {
            end += 1;
            i += 1;
        }
        number(out, start);
        if end != start {
            out.push(b':');
            number(out, end);
        }
        i += 1;
        if i < ids.len() {
            out.push(b',');
        }
    }
}

/// The number `n` then `name`: `3 EXISTS`.
fn counted(out: &mut Vec<u8>, n: impl std::fmt::Display, name: &[u8]) {
    number(out, n);
    out.extend_from_slice(name);
}

/// `number64` (RFC 9051 §9: at most 2^63-1); larger values are written as the maximum.
fn number64(out: &mut Vec<u8>, n: u64) {
    number(out, n.min(i64::MAX as u64));
}

/// `item *(sep item)`: each item written by `write`, `sep` between them.
fn separated<T>(
    out: &mut Vec<u8>,
    items: impl IntoIterator<Item = T>,
    sep: u8,
    mut write: impl FnMut(&mut Vec<u8>, T),
) {
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(sep);
        }
        write(out, item);
    }
}

/// `"(" item *(SP item) ")"`.
fn paren_list<T>(
    out: &mut Vec<u8>,
    items: impl IntoIterator<Item = T>,
    write: impl FnMut(&mut Vec<u8>, T),
) {
    out.push(b'(');
    separated(out, items, b' ', write);
    out.push(b')');
}

/// `"(" 1*("(" item ")") ")"`, or `NIL` when there are no items (namespaces, addresses).
fn nil_or_nested<T>(out: &mut Vec<u8>, items: &[T], mut write: impl FnMut(&mut Vec<u8>, &T)) {
    if items.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for item in items {
        out.push(b'(');
        write(out, item);
        out.push(b')');
    }
    out.push(b')');
}

/// Whether `s` may be written as a quoted string.
fn quotable(s: &[u8], utf8: bool) -> bool {
    s.len() <= MAX_QUOTED
        && !s.iter().any(|&b| b == 0 || b == b'\r' || b == b'\n')
        && (s.is_ascii() || (utf8 && std::str::from_utf8(s).is_ok()))
}

fn quoted(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    for &b in s {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

fn literal(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'{');
    number(out, s.len());
    out.extend_from_slice(b"}\r\n");
    out.extend_from_slice(s);
}

/// `string`: quoted when safe, else a literal.
pub fn string(out: &mut Vec<u8>, s: &[u8], utf8: bool) {
    if quotable(s, utf8) {
        quoted(out, s);
    } else {
        literal(out, s);
    }
}

/// `nstring`.
pub fn nstring(out: &mut Vec<u8>, s: Option<&[u8]>, utf8: bool) {
    match s {
        Some(s) => string(out, s, utf8),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// `astring`: an atom when the value is one (and not `NIL`), else a string.
pub fn astring(out: &mut Vec<u8>, s: &[u8], utf8: bool) {
    if !s.is_empty()
        && s.iter().all(|&b| crate::framer::is_astring_char(b))
        && !s.eq_ignore_ascii_case(b"NIL")
    {
        out.extend_from_slice(s);
    } else {
        string(out, s, utf8);
    }
}

/// A mailbox name for this client (modified UTF-7 or UTF-8), as a string.
fn mailbox(out: &mut Vec<u8>, name: &str, opts: EncodeOptions) {
    string(out, encode_mailbox(name, opts.utf8).as_bytes(), opts.utf8);
}

/// Atoms the server writes itself (capabilities, attributes, flags). Anything outside
/// the atom characters (which the server never produces) is dropped rather than sent.
/// `name` then the mailbox name `m`: `STATUS INBOX`, `QUOTAROOT INBOX`.
fn named_mailbox(out: &mut Vec<u8>, name: &[u8], m: &str, opts: EncodeOptions) {
    out.extend_from_slice(name);
    mailbox(out, m, opts);
}

fn atom(out: &mut Vec<u8>, s: &str) {
    out.extend(
        s.bytes()
            .filter(|&b| crate::framer::is_astring_char(b) || b == b'\\' || b == b'*'),
    );
}

fn flag_list(out: &mut Vec<u8>, flags: &[Flag], any: bool) {
    out.push(b'(');
    separated(out, flags, b' ', |out, f| atom(out, f.as_str()));
    if any {
        if !flags.is_empty() {
            out.push(b' ');
        }
        out.extend_from_slice(b"\\*");
    }
    out.push(b')');
}

fn atoms(out: &mut Vec<u8>, items: &[String]) {
    for s in items {
        out.push(b' ');
        atom(out, s);
    }
}

impl Code {
    fn encode(&self, out: &mut Vec<u8>, opts: EncodeOptions) {
        let simple = |out: &mut Vec<u8>, s: &str| out.extend_from_slice(s.as_bytes());
        match self {
            Code::Alert => simple(out, "ALERT"),
            Code::BadCharset(list) => {
                simple(out, "BADCHARSET");
                if !list.is_empty() {
                    out.push(b' ');
                    paren_list(out, list, |out, c| astring(out, c.as_bytes(), opts.utf8));
                }
            }
            Code::Capability(caps) => {
                simple(out, "CAPABILITY");
                atoms(out, caps);
            }
            Code::Parse => simple(out, "PARSE"),
            Code::PermanentFlags { flags, any } => {
                simple(out, "PERMANENTFLAGS ");
                flag_list(out, flags, *any);
            }
            Code::ReadOnly => simple(out, "READ-ONLY"),
            Code::ReadWrite => simple(out, "READ-WRITE"),
            Code::TryCreate => simple(out, "TRYCREATE"),
            Code::UidNext(n) => {
                simple(out, "UIDNEXT ");
                number(out, n);
            }
            Code::UidValidity(n) => {
                simple(out, "UIDVALIDITY ");
                number(out, n);
            }
            Code::Unseen(n) => {
                simple(out, "UNSEEN ");
                number(out, n);
            }
            Code::AppendUid { uidvalidity, uids } => {
                simple(out, "APPENDUID ");
                number(out, uidvalidity);
                out.push(b' ');
                number(out, uids);
            }
            Code::CopyUid {
                uidvalidity,
                source,
                destination,
            } => {
                simple(out, "COPYUID ");
                number(out, uidvalidity);
                out.push(b' ');
                number(out, source);
                out.push(b' ');
                number(out, destination);
            }
            Code::UidNotSticky => simple(out, "UIDNOTSTICKY"),
            Code::HighestModSeq(n) => {
                simple(out, "HIGHESTMODSEQ ");
                number(out, n);
            }
            Code::NoModSeq => simple(out, "NOMODSEQ"),
            Code::Modified(set) => {
                simple(out, "MODIFIED ");
                number(out, set);
            }
            Code::Closed => simple(out, "CLOSED"),
            Code::TooBig => simple(out, "TOOBIG"),
            Code::BadUrl(url) => {
                simple(out, "BADURL ");
                // Quoted (as in RFC 4469's examples); what cannot be in resp-text is left out.
                let url: Vec<u8> = url
                    .bytes()
                    .filter(|&b| b != b']' && b != b'\r' && b != b'\n' && b != 0)
                    .take(MAX_QUOTED)
                    .collect();
                quoted(out, &url);
            }
            Code::OverQuota => simple(out, "OVERQUOTA"),
            Code::Limit => simple(out, "LIMIT"),
            Code::Cannot => simple(out, "CANNOT"),
            Code::AlreadyExists => simple(out, "ALREADYEXISTS"),
            Code::NonExistent => simple(out, "NONEXISTENT"),
            Code::InUse => simple(out, "INUSE"),
            Code::ExpungeIssued => simple(out, "EXPUNGEISSUED"),
            Code::Unavailable => simple(out, "UNAVAILABLE"),
            Code::AuthenticationFailed => simple(out, "AUTHENTICATIONFAILED"),
            Code::AuthorizationFailed => simple(out, "AUTHORIZATIONFAILED"),
            Code::Expired => simple(out, "EXPIRED"),
            Code::PrivacyRequired => simple(out, "PRIVACYREQUIRED"),
            Code::ContactAdmin => simple(out, "CONTACTADMIN"),
            Code::NoPerm => simple(out, "NOPERM"),
            Code::ServerBug => simple(out, "SERVERBUG"),
            Code::ClientBug => simple(out, "CLIENTBUG"),
            Code::Corruption => simple(out, "CORRUPTION"),
            Code::HasChildren => simple(out, "HASCHILDREN"),
            Code::UseAttr => simple(out, "USEATTR"),
            Code::NotSaved => simple(out, "NOTSAVED"),
            Code::UnknownCte => simple(out, "UNKNOWN-CTE"),
        }
    }
}

impl Data {
    fn encode(&self, out: &mut Vec<u8>, opts: EncodeOptions) {
        out.extend_from_slice(b"* ");
        match self {
            Data::Capability(caps) => {
                out.extend_from_slice(b"CAPABILITY");
                atoms(out, caps);
            }
            Data::Enabled(caps) => {
                out.extend_from_slice(b"ENABLED");
                atoms(out, caps);
            }
            Data::List(item) => list_item(out, b"LIST ", item, opts),
            Data::Lsub(item) => list_item(out, b"LSUB ", item, opts),
            Data::Status {
                mailbox: name,
                items,
            } => {
                named_mailbox(out, b"STATUS ", name, opts);
                out.push(b' ');
                paren_list(out, items, |out, v| {
                    out.extend_from_slice(v.item().as_str().as_bytes());
                    out.push(b' ');
                    match *v {
                        StatusValue::Messages(n)
                        | StatusValue::Recent(n)
                        | StatusValue::UidNext(n)
                        | StatusValue::UidValidity(n)
                        | StatusValue::Unseen(n)
                        | StatusValue::Deleted(n) => number(out, n),
                        StatusValue::Size(n) | StatusValue::HighestModSeq(n) => number(out, n),
                        StatusValue::DeletedStorage(n) => number64(out, n),
                        StatusValue::AppendLimit(Some(n)) => number(out, n),
                        StatusValue::AppendLimit(None) => out.extend_from_slice(b"NIL"),
                    }
                });
            }
            Data::Exists(n) => counted(out, n, b" EXISTS"),
            Data::Recent(n) => counted(out, n, b" RECENT"),
            Data::Expunge(n) => counted(out, n, b" EXPUNGE"),
            Data::Vanished { earlier, uids } => {
                out.extend_from_slice(if *earlier {
                    b"VANISHED (EARLIER) "
                } else {
                    b"VANISHED "
                });
                number(out, uids);
            }
            Data::Fetch { seq, items } => {
                number(out, seq);
                out.extend_from_slice(b" FETCH ");
                paren_list(out, items, |out, item| item.encode(out, opts));
            }
            Data::Search { ids, modseq } => {
                out.extend_from_slice(b"SEARCH");
                for id in ids {
                    out.push(b' ');
                    number(out, id);
                }
                if let Some(m) = modseq {
                    out.extend_from_slice(b" (MODSEQ ");
                    number(out, m);
                    out.push(b')');
                }
            }
            Data::ESearch {
                tag,
                uid,
                min,
                max,
                all,
                count,
                modseq,
            } => {
                esearch_head(out, tag.as_deref(), *uid, opts);
                optional_item(out, b" MIN ", min.as_ref());
                optional_item(out, b" MAX ", max.as_ref());
                optional_item(out, b" ALL ", all.as_ref().filter(|s| !s.is_empty()));
                optional_item(out, b" COUNT ", count.as_ref());
                optional_item(out, b" MODSEQ ", modseq.as_ref());
            }
            Data::ESort {
                tag,
                uid,
                min,
                max,
                all,
                count,
            } => {
                esearch_head(out, Some(tag), *uid, opts);
                optional_item(out, b" MIN ", min.as_ref());
                optional_item(out, b" MAX ", max.as_ref());
                if let Some(all) = all.as_ref().filter(|a| !a.is_empty()) {
                    out.extend_from_slice(b" ALL ");
                    ordered_set(out, all);
                }
                optional_item(out, b" COUNT ", count.as_ref());
            }
            Data::Sort(ids) => {
                out.extend_from_slice(b"SORT");
                for id in ids {
                    out.push(b' ');
                    number(out, id);
                }
            }
            Data::Thread(tokens) => {
                out.extend_from_slice(b"THREAD");
                if !tokens.is_empty() {
                    out.push(b' ');
                }
                let mut after_id = false;
                for t in tokens {
                    match t {
                        ThreadToken::Open => {
                            if after_id {
                                out.push(b' ');
                            }
                            out.push(b'(');
                            after_id = false;
                        }
                        ThreadToken::Close => {
                            out.push(b')');
                            after_id = false;
                        }
                        ThreadToken::Id(id) => {
                            if after_id {
                                out.push(b' ');
                            }
                            number(out, id);
                            after_id = true;
                        }
                    }
                }
            }
            Data::Flags(flags) => {
                out.extend_from_slice(b"FLAGS ");
                flag_list(out, flags, false);
            }
            Data::Id(params) => {
                out.extend_from_slice(b"ID ");
                match params {
                    None => out.extend_from_slice(b"NIL"),
                    Some(params) if params.is_empty() => out.extend_from_slice(b"NIL"),
                    Some(params) => paren_list(out, params, |out, (k, v)| {
                        string(out, k.as_bytes(), opts.utf8);
                        out.push(b' ');
                        nstring(out, v.as_deref().map(str::as_bytes), opts.utf8);
                    }),
                }
            }
            Data::Namespace {
                personal,
                other,
                shared,
            } => {
                out.extend_from_slice(b"NAMESPACE");
                for ns in [personal, other, shared] {
                    out.push(b' ');
                    nil_or_nested(out, ns, |out, d| {
                        mailbox(out, &d.prefix, opts);
                        out.push(b' ');
                        delimiter(out, d.delimiter);
                    });
                }
            }
            Data::Quota { root, resources } => {
                out.extend_from_slice(b"QUOTA ");
                astring(out, root.as_bytes(), opts.utf8);
                out.push(b' ');
                paren_list(out, resources, |out, r| {
                    atom(out, &r.name);
                    out.push(b' ');
                    number64(out, r.usage);
                    out.push(b' ');
                    number64(out, r.limit);
                });
            }
            Data::QuotaRoot {
                mailbox: name,
                roots,
            } => {
                named_mailbox(out, b"QUOTAROOT ", name, opts);
                for r in roots {
                    out.push(b' ');
                    astring(out, r.as_bytes(), opts.utf8);
                }
            }
        }
    }
}

fn delimiter(out: &mut Vec<u8>, d: Option<char>) {
    match d {
        Some(c) => {
            let mut buf = [0u8; 4];
            quoted(out, c.encode_utf8(&mut buf).as_bytes());
        }
        None => out.extend_from_slice(b"NIL"),
    }
}

fn list_item(out: &mut Vec<u8>, name: &[u8], item: &ListItem, opts: EncodeOptions) {
    out.extend_from_slice(name);
    paren_list(out, &item.attributes, |out, a| atom(out, a));
    out.push(b' ');
    delimiter(out, item.delimiter);
    out.push(b' ');
    mailbox(out, &item.name, opts);
    if item.child_info_subscribed || item.old_name.is_some() {
        out.extend_from_slice(b" (");
        if item.child_info_subscribed {
            out.extend_from_slice(b"\"CHILDINFO\" (\"SUBSCRIBED\")");
        }
        if let Some(old) = &item.old_name {
            if item.child_info_subscribed {
                out.push(b' ');
            }
            out.extend_from_slice(b"\"OLDNAME\" (");
            mailbox(out, old, opts);
            out.push(b')');
        }
        out.push(b')');
    }
}

fn part_numbers(out: &mut Vec<u8>, part: &[u32]) {
    separated(out, part, b'.', number);
}

fn origin(out: &mut Vec<u8>, origin: Option<u32>) {
    if let Some(o) = origin {
        out.push(b'<');
        number(out, o);
        out.push(b'>');
    }
}

/// `ESEARCH [(TAG "t")] [UID]`, the start of an ESEARCH response (RFC 4731 §3.1, RFC 5267 §3).
fn esearch_head(out: &mut Vec<u8>, tag: Option<&str>, uid: bool, opts: EncodeOptions) {
    out.extend_from_slice(b"ESEARCH");
    if let Some(tag) = tag {
        out.extend_from_slice(b" (TAG ");
        string(out, tag.as_bytes(), opts.utf8);
        out.push(b')');
    }
    if uid {
        out.extend_from_slice(b" UID");
    }
}

/// Message data: always a literal (or NIL), `literal8` when asked and the data holds NUL.
fn message_data(out: &mut Vec<u8>, data: Option<&[u8]>, allow_literal8: bool) {
    match data {
        None => out.extend_from_slice(b"NIL"),
        Some(d) if allow_literal8 && d.contains(&0) => {
            out.push(b'~');
            literal(out, d);
        }
        Some(d) => literal(out, d),
    }
}

impl FetchValue {
    fn encode(&self, out: &mut Vec<u8>, opts: EncodeOptions) {
        match self {
            FetchValue::Flags(flags) => {
                out.extend_from_slice(b"FLAGS ");
                flag_list(out, flags, false);
            }
            FetchValue::Uid(n) => item(out, b"UID ", n),
            FetchValue::InternalDate(dt) => {
                out.extend_from_slice(b"INTERNALDATE ");
                date_time(out, dt);
            }
            FetchValue::Rfc822Size(n) => item(out, b"RFC822.SIZE ", n),
            FetchValue::ModSeq(n) => {
                out.extend_from_slice(b"MODSEQ (");
                number(out, n);
                out.push(b')');
            }
            FetchValue::Envelope(env) => {
                out.extend_from_slice(b"ENVELOPE ");
                envelope(out, env, opts);
            }
            FetchValue::Body(body) => {
                out.extend_from_slice(b"BODY ");
                body_structure(out, body, false, opts);
            }
            FetchValue::BodyStructure(body) => {
                out.extend_from_slice(b"BODYSTRUCTURE ");
                body_structure(out, body, true, opts);
            }
            FetchValue::BodySection {
                section,
                origin,
                data,
            } => {
                let spec = |out: &mut Vec<u8>| section_spec(out, section);
                section_item(out, b"BODY[", spec, *origin, data.as_deref(), false);
            }
            FetchValue::Binary { part, origin, data } => {
                let spec = |out: &mut Vec<u8>| part_numbers(out, part);
                section_item(out, b"BINARY[", spec, *origin, data.as_deref(), true);
            }
            FetchValue::BinarySize { part, size } => {
                out.extend_from_slice(b"BINARY.SIZE[");
                part_numbers(out, part);
                out.extend_from_slice(b"] ");
                number(out, size);
            }
            FetchValue::Rfc822(d) => rfc822_item(out, b"RFC822 ", d.as_deref()),
            FetchValue::Rfc822Header(d) => rfc822_item(out, b"RFC822.HEADER ", d.as_deref()),
            FetchValue::Rfc822Text(d) => rfc822_item(out, b"RFC822.TEXT ", d.as_deref()),
        }
    }
}

/// `name` then the message data: the RFC822 items (never literal8).
fn rfc822_item(out: &mut Vec<u8>, name: &[u8], data: Option<&[u8]>) {
    out.extend_from_slice(name);
    message_data(out, data, false);
}

/// `name spec ]<origin> data`: the `BODY[...]` and `BINARY[...]` items, `spec` written by
/// `spec`.
fn section_item(
    out: &mut Vec<u8>,
    name: &[u8],
    spec: impl FnOnce(&mut Vec<u8>),
    o: Option<u32>,
    data: Option<&[u8]>,
    literal8: bool,
) {
    out.extend_from_slice(name);
    spec(out);
    out.push(b']');
    origin(out, o);
    out.push(b' ');
    message_data(out, data, literal8);
}

fn section_spec(out: &mut Vec<u8>, section: &Section) {
    out.extend_from_slice(section.to_string().as_bytes());
}

fn date_time(out: &mut Vec<u8>, dt: &DateTime) {
    out.push(b'"');
    out.extend_from_slice(dt.to_string().as_bytes());
    out.push(b'"');
}

fn address_list(out: &mut Vec<u8>, list: &[Address], opts: EncodeOptions) {
    nil_or_nested(out, list, |out, a| {
        let parts = [&a.name, &a.adl, &a.mailbox, &a.host];
        separated(out, parts, b' ', |out, p| {
            nstring(out, p.as_deref(), opts.utf8)
        });
    });
}

fn envelope(out: &mut Vec<u8>, e: &Envelope, opts: EncodeOptions) {
    out.push(b'(');
    nstring(out, e.date.as_deref(), opts.utf8);
    out.push(b' ');
    nstring(out, e.subject.as_deref(), opts.utf8);
    for list in [&e.from, &e.sender, &e.reply_to, &e.to, &e.cc, &e.bcc] {
        out.push(b' ');
        address_list(out, list, opts);
    }
    out.push(b' ');
    nstring(out, e.in_reply_to.as_deref(), opts.utf8);
    out.push(b' ');
    nstring(out, e.message_id.as_deref(), opts.utf8);
    out.push(b')');
}

fn params(out: &mut Vec<u8>, params: &[(Vec<u8>, Vec<u8>)], opts: EncodeOptions) {
    if params.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    paren_list(out, params, |out, (k, v)| {
        string(out, k, opts.utf8);
        out.push(b' ');
        string(out, v, opts.utf8);
    });
}

fn disposition(out: &mut Vec<u8>, d: Option<&Disposition>, opts: EncodeOptions) {
    match d {
        None => out.extend_from_slice(b"NIL"),
        Some((kind, p)) => {
            out.push(b'(');
            string(out, kind, opts.utf8);
            out.push(b' ');
            params(out, p, opts);
            out.push(b')');
        }
    }
}

fn language(out: &mut Vec<u8>, langs: &[Vec<u8>], opts: EncodeOptions) {
    match langs {
        [] => out.extend_from_slice(b"NIL"),
        [one] => string(out, one, opts.utf8),
        many => paren_list(out, many, |out, l| string(out, l, opts.utf8)),
    }
}

/// `SP body-fld-dsp SP body-fld-lang SP body-fld-loc`: how the extension data of both
/// kinds of body ends (RFC 9051 §9 `body-ext-1part`, `body-ext-mpart`).
fn ext_tail(
    out: &mut Vec<u8>,
    d: &Option<Disposition>,
    langs: &[Vec<u8>],
    location: &Option<Vec<u8>>,
    opts: EncodeOptions,
) {
    out.push(b' ');
    disposition(out, d.as_ref(), opts);
    out.push(b' ');
    language(out, langs, opts);
    out.push(b' ');
    nstring(out, location.as_deref(), opts.utf8);
}

fn body_structure(out: &mut Vec<u8>, b: &BodyStructure, ext: bool, opts: EncodeOptions) {
    out.push(b'(');
    match b {
        BodyStructure::Single {
            media_type,
            subtype,
            fields,
            specific,
            ext: e,
        } => {
            string(out, media_type, opts.utf8);
            out.push(b' ');
            string(out, subtype, opts.utf8);
            out.push(b' ');
            params(out, &fields.params, opts);
            out.push(b' ');
            nstring(out, fields.id.as_deref(), opts.utf8);
            out.push(b' ');
            nstring(out, fields.description.as_deref(), opts.utf8);
            out.push(b' ');
            string(out, &fields.encoding, opts.utf8);
            out.push(b' ');
            number(out, fields.octets);
            match specific {
                SinglePartKind::Basic => {}
                SinglePartKind::Text { lines } => {
                    out.push(b' ');
                    number(out, lines);
                }
                SinglePartKind::Message {
                    envelope: env,
                    body,
                    lines,
                } => {
                    out.push(b' ');
                    envelope(out, env, opts);
                    out.push(b' ');
                    body_structure(out, body, ext, opts);
                    out.push(b' ');
                    number(out, lines);
                }
            }
            if ext {
                out.push(b' ');
                nstring(out, e.md5.as_deref(), opts.utf8);
                ext_tail(out, &e.disposition, &e.language, &e.location, opts);
            }
        }
        BodyStructure::Multi {
            parts,
            subtype,
            ext: e,
        } => {
            for p in parts {
                body_structure(out, p, ext, opts);
            }
            out.push(b' ');
            string(out, subtype, opts.utf8);
            if ext {
                out.push(b' ');
                params(out, &e.params, opts);
                ext_tail(out, &e.disposition, &e.language, &e.location, opts);
            }
        }
    }
    out.push(b')');
}

#[cfg(test)]
mod tests;
