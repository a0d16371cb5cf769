//! The MIME layer of FETCH: `ENVELOPE`, `BODY`/`BODYSTRUCTURE` (RFC 9051 §7.5.2),
//! `BODY[section]<partial>` (§6.4.5) and `BINARY[part]`/`BINARY.SIZE[part]` (RFC 3516).
//!
//! # Design
//!
//! IMAP addresses parts by their exact raw bytes (a `BODY[1.2]` is the bytes between two
//! boundary lines, a `BODY[HEADER]` ends with the blank line), so the part *tree* is built
//! here, over byte ranges of the message, by a small splitter: header block / body, then
//! the body split at the boundary lines of a multipart (RFC 2046 §5.1.1) or descended into
//! for `message/rfc822` and `message/global`. The *fields* of each header block
//! (`Content-Type` with RFC 2231 parameters, `Content-Disposition`, addresses and groups,
//! RFC 2047 encoded words) are parsed by mail-parser (`MessageParser::parse_headers`), which
//! never panics on bad input.
//!
//! # Robustness
//!
//! Every input gives a structure, never an error or a panic (property-tested with random
//! bytes): a header block without a blank line ends the message (empty body); a multipart
//! without a `boundary` parameter, or whose boundary never occurs, is shown as
//! `TEXT/PLAIN`; a missing close delimiter ends the last part at the end of the message.
//! Work is bounded: nesting deeper than [`MAX_DEPTH`] and parts beyond [`MAX_PARTS`] are
//! not split further (shown as `APPLICATION/OCTET-STREAM` leaves), so a message costs at
//! most `MAX_DEPTH` linear scans however it is built, and the [`BodyStructure`] handed to
//! the encoder has bounded depth. The text of such a part is still searched, flat: its raw
//! octets (nested headers, boundaries and all, transfer encodings not undone), so nothing
//! can be hidden from SEARCH by nesting it deep.
//!
//! # Approximations (documented choices)
//!
//! * For a client without UTF-8 (IMAP4rev1 without `UTF8=ACCEPT`) the subject, date,
//!   message ids and `Content-Description` are the raw header values (unfolded, encoded
//!   words kept, 8-bit bytes kept — the encoder sends those as literals). Address display
//!   names and parameter values come decoded from mail-parser; a non-ASCII one is
//!   re-encoded as an RFC 2047 `=?UTF-8?B?...?=` word, which clients decode like the
//!   original. With UTF-8 enabled every string is decoded.
//! * A `message/rfc822` part with a base64 or quoted-printable encoding (forbidden by
//!   RFC 2046 §5.2.1) is shown as an opaque leaf of its declared type without envelope.
//! * `body-fld-md5` is always NIL.
//! * ENVELOPE addresses: a list member made only of comments (`group: (foo) ;`) is no
//!   address (mail-parser gives it as a name without address; the raw value is scanned to
//!   tell it from a bare phrase, which stays `("phrase" NIL "" "")`); an obsolete source
//!   route (`<@route:user@domain>`) is the `adl` (`"@route"`); blanks around the `@` left
//!   by comments are dropped from mailbox and host.

use std::borrow::Cow;
use std::ops::Range;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use mail_parser::{HeaderName, HeaderValue, MessageParser};

use crate::command::{FetchAttr, Partial, Section, SectionText};
use crate::response::{
    Address, BodyFields, BodyStructure, Disposition, Envelope, FetchValue, MultiPartExt,
    SinglePartExt, SinglePartKind,
};

/// Deepest nesting of multiparts and encapsulated messages that is split.
pub const MAX_DEPTH: usize = 16;
/// Most parts split out of one message.
pub const MAX_PARTS: usize = 2000;

/// `BINARY` could not decode a part (RFC 3516 §4.2: `NO [UNKNOWN-CTE]`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BinaryError {
    #[error("unknown Content-Transfer-Encoding")]
    UnknownCte,
}

/// A message split into its MIME parts (borrowing the message bytes).
#[derive(Clone, Debug)]
pub struct ParsedMessage<'a> {
    raw: &'a [u8],
    root: Part,
}

#[derive(Clone, Debug)]
struct Part {
    /// Header block, including the blank line that ends it (if any).
    header: Range<usize>,
    body: Range<usize>,
    info: PartInfo,
    kind: PartKind,
    /// Not split further because of [`MAX_DEPTH`] or [`MAX_PARTS`]: searched as raw text.
    deep: bool,
}

#[derive(Clone, Debug)]
enum PartKind {
    Leaf,
    Multi(Vec<Part>),
    /// `message/rfc822` or `message/global`: the encapsulated message.
    Message(Box<Part>),
}

#[derive(Clone, Debug, Default)]
struct PartInfo {
    /// Upper case.
    media_type: String,
    subtype: String,
    /// Names upper case; values decoded (UTF-8).
    params: Vec<(String, String)>,
    id: Option<Vec<u8>>,
    description_raw: Option<Vec<u8>>,
    description: Option<String>,
    /// Upper case, `7BIT` when absent.
    encoding: String,
    disposition: Option<(String, Vec<(String, String)>)>,
    language: Vec<Vec<u8>>,
    location: Option<Vec<u8>>,
}

impl<'a> ParsedMessage<'a> {
    /// Splits a message. Never fails.
    pub fn parse(raw: &'a [u8]) -> ParsedMessage<'a> {
        let mut budget = MAX_PARTS;
        let root = parse_part(raw, 0..raw.len(), false, 0, &mut budget);
        ParsedMessage { raw, root }
    }

    /// The message's ENVELOPE; `utf8`: the client enabled UTF-8 (decode encoded words).
    pub fn envelope(&self, utf8: bool) -> Envelope {
        envelope(&self.raw[self.root.header.clone()], utf8)
    }

    /// The BODYSTRUCTURE (the encoder leaves out extension data for `BODY`).
    pub fn body_structure(&self, utf8: bool) -> BodyStructure {
        self.structure(&self.root, utf8)
    }

    fn structure(&self, p: &Part, utf8: bool) -> BodyStructure {
        let i = &p.info;
        match &p.kind {
            PartKind::Multi(parts) => BodyStructure::Multi {
                parts: parts.iter().map(|c| self.structure(c, utf8)).collect(),
                subtype: i.subtype.as_bytes().to_vec(),
                ext: MultiPartExt {
                    params: params_out(&i.params, utf8),
                    disposition: disposition_out(i.disposition.as_ref(), utf8),
                    language: i.language.clone(),
                    location: i.location.clone(),
                },
            },
            kind => {
                let body = &self.raw[p.body.clone()];
                let specific = match kind {
                    PartKind::Message(inner) => SinglePartKind::Message {
                        envelope: Box::new(envelope(&self.raw[inner.header.clone()], utf8)),
                        body: Box::new(self.structure(inner, utf8)),
                        lines: count_lines(body),
                    },
                    _ if i.media_type == "TEXT" => SinglePartKind::Text {
                        lines: count_lines(body),
                    },
                    _ => SinglePartKind::Basic,
                };
                let description = if utf8 {
                    i.description.as_ref().map(|d| d.as_bytes().to_vec())
                } else {
                    i.description_raw.clone()
                };
                BodyStructure::Single {
                    media_type: i.media_type.as_bytes().to_vec(),
                    subtype: i.subtype.as_bytes().to_vec(),
                    fields: BodyFields {
                        params: params_out(&i.params, utf8),
                        id: i.id.clone(),
                        description,
                        encoding: i.encoding.as_bytes().to_vec(),
                        octets: body.len() as u64,
                    },
                    specific,
                    ext: SinglePartExt {
                        md5: None,
                        disposition: disposition_out(i.disposition.as_ref(), utf8),
                        language: i.language.clone(),
                        location: i.location.clone(),
                    },
                }
            }
        }
    }

    /// The part a path of part numbers names (RFC 9051 §6.4.5): numbers index the parts of
    /// a multipart; part 1 of a non-multipart message is its body; after a
    /// `message/rfc822` part the numbers continue inside the encapsulated message.
    fn resolve(&self, path: &[u32]) -> Option<&Part> {
        let mut cur = &self.root;
        for (i, &n) in path.iter().enumerate() {
            let container = if i == 0 {
                cur
            } else {
                match &cur.kind {
                    PartKind::Message(inner) => inner,
                    PartKind::Multi(_) => cur,
                    PartKind::Leaf => return None,
                }
            };
            cur = match &container.kind {
                PartKind::Multi(children) => children.get((n as usize).checked_sub(1)?)?,
                _ if n == 1 => container,
                _ => return None,
            };
        }
        Some(cur)
    }

    /// `BODY[section]` without the partial: `None` when the section does not exist (sent
    /// as NIL), e.g. a part number beyond the parts or `HEADER` of a part that is not a
    /// message.
    pub fn section(&self, section: &Section) -> Option<Cow<'a, [u8]>> {
        let part = self.resolve(&section.part)?;
        // The message whose header/text the section names.
        let message = if section.part.is_empty() {
            Some(&self.root)
        } else {
            match &part.kind {
                PartKind::Message(inner) => Some(&**inner),
                _ => None,
            }
        };
        let raw: &'a [u8] = self.raw;
        let slice = |r: &Range<usize>| Some(Cow::Borrowed(&raw[r.clone()]));
        match &section.text {
            None if section.part.is_empty() => Some(Cow::Borrowed(raw)),
            None => slice(&part.body),
            Some(SectionText::Mime) if section.part.is_empty() => None,
            Some(SectionText::Mime) => slice(&part.header),
            Some(SectionText::Header) => slice(&message?.header),
            Some(SectionText::Text) => slice(&message?.body),
            Some(SectionText::HeaderFields { not, fields }) => Some(Cow::Owned(header_fields(
                &raw[message?.header.clone()],
                fields,
                *not,
            ))),
        }
    }

    /// `BINARY[part]`: the part's content with its transfer encoding undone (RFC 3516).
    /// `Ok(None)`: no such part (NIL). An empty path is the whole message, undecoded;
    /// multiparts and encapsulated messages are returned as they are.
    pub fn binary(&self, part: &[u32]) -> Result<Option<Cow<'a, [u8]>>, BinaryError> {
        let raw: &'a [u8] = self.raw;
        if part.is_empty() {
            return Ok(Some(Cow::Borrowed(raw)));
        }
        let Some(p) = self.resolve(part) else {
            return Ok(None);
        };
        let body = &raw[p.body.clone()];
        if !matches!(p.kind, PartKind::Leaf) {
            return Ok(Some(Cow::Borrowed(body)));
        }
        match p.info.encoding.as_str() {
            "7BIT" | "8BIT" | "BINARY" | "" => Ok(Some(Cow::Borrowed(body))),
            "BASE64" => Ok(Some(Cow::Owned(decode_base64(body)))),
            "QUOTED-PRINTABLE" => Ok(Some(Cow::Owned(decode_qp(body)))),
            _ => Err(BinaryError::UnknownCte),
        }
    }

    /// The top-level header block (with the blank line that ends it, if any).
    pub fn header(&self) -> &'a [u8] {
        &self.raw[self.root.header.clone()]
    }

    /// The text of every `TEXT/*` leaf part, in order, including those inside encapsulated
    /// messages: transfer encoding undone (base64, quoted-printable; an unknown encoding is
    /// taken as is) and converted from the part's `charset` to UTF-8 (mail-parser's
    /// decoders; an unknown charset is read as UTF-8, invalid sequences replaced). For
    /// SEARCH `BODY`/`TEXT`; best effort, never fails. Lazy: a part is decoded only when
    /// the iterator reaches it.
    pub fn texts(&self) -> impl Iterator<Item = String> + '_ {
        let mut leaves = Vec::new();
        text_leaves(&self.root, &mut leaves);
        leaves.into_iter().map(|p| {
            let body = &self.raw[p.body.clone()];
            if p.deep {
                return String::from_utf8_lossy(body).into_owned();
            }
            let bytes: Cow<'_, [u8]> = match p.info.encoding.as_str() {
                "BASE64" => Cow::Owned(decode_base64(body)),
                "QUOTED-PRINTABLE" => Cow::Owned(decode_qp(body)),
                _ => Cow::Borrowed(body),
            };
            let charset = p
                .info
                .params
                .iter()
                .find(|(k, _)| k == "CHARSET")
                .map(|(_, v)| v.trim());
            decode_charset(&bytes, charset)
        })
    }

    /// `BINARY.SIZE[part]`: the size of [`ParsedMessage::binary`].
    pub fn binary_size(&self, part: &[u32]) -> Result<Option<u64>, BinaryError> {
        Ok(self.binary(part)?.map(|d| d.len() as u64))
    }
}

impl ParsedMessage<'_> {
    /// The FETCH value of a message-content item (ENVELOPE, BODY, BODYSTRUCTURE,
    /// `BODY[...]`, BINARY, BINARY.SIZE, RFC822, RFC822.HEADER, RFC822.TEXT), partial
    /// applied; `None` for items the store answers (FLAGS, UID, INTERNALDATE, RFC822.SIZE,
    /// MODSEQ). `Some(Err(_))`: answer the command `NO [UNKNOWN-CTE]` (RFC 3516 §4.2).
    /// Setting `\Seen` ([`FetchAttr::sets_seen`]) is the driver's business.
    pub fn fetch_item(
        &self,
        attr: &FetchAttr,
        utf8: bool,
    ) -> Option<Result<FetchValue, BinaryError>> {
        let whole = |r: &Range<usize>| {
            Some(nul::without_nul(Cow::Borrowed(&self.raw[r.clone()])).into_owned())
        };
        Some(Ok(match attr {
            FetchAttr::Envelope => FetchValue::Envelope(Box::new(self.envelope(utf8))),
            FetchAttr::Body => FetchValue::Body(Box::new(self.body_structure(utf8))),
            FetchAttr::BodyStructure => {
                FetchValue::BodyStructure(Box::new(self.body_structure(utf8)))
            }
            FetchAttr::BodySection {
                section, partial, ..
            } => {
                let data = self.section(section).map(|d| {
                    let leaf = section.text.is_none()
                        && !section.part.is_empty()
                        && self
                            .resolve(&section.part)
                            .is_some_and(|p| matches!(p.kind, PartKind::Leaf));
                    if leaf {
                        nul::leaf_body(d)
                    } else {
                        nul::without_nul(d)
                    }
                });
                let (data, origin) = partial_of(data.as_deref(), *partial);
                FetchValue::BodySection {
                    section: section.clone(),
                    origin,
                    data,
                }
            }
            FetchAttr::Binary { part, partial, .. } => {
                let data = match self.binary(part) {
                    Ok(d) => d,
                    Err(e) => return Some(Err(e)),
                };
                let (data, origin) = partial_of(data.as_deref(), *partial);
                FetchValue::Binary {
                    part: part.clone(),
                    origin,
                    data,
                }
            }
            FetchAttr::BinarySize { part } => match self.binary_size(part) {
                Ok(size) => FetchValue::BinarySize {
                    part: part.clone(),
                    size: size.unwrap_or(0),
                },
                Err(e) => return Some(Err(e)),
            },
            FetchAttr::Rfc822 => {
                FetchValue::Rfc822(Some(nul::without_nul(Cow::Borrowed(self.raw)).into_owned()))
            }
            FetchAttr::Rfc822Header => FetchValue::Rfc822Header(whole(&self.root.header)),
            FetchAttr::Rfc822Text => FetchValue::Rfc822Text(whole(&self.root.body)),
            FetchAttr::Flags
            | FetchAttr::InternalDate
            | FetchAttr::Rfc822Size
            | FetchAttr::Uid
            | FetchAttr::ModSeq => return None,
        }))
    }
}

/// Applies `<origin.length>` to fetched data: the slice to send and the origin to show in
/// the response (`BODY[]<origin>`). An origin beyond the end gives empty data.
pub fn apply_partial(data: &[u8], partial: Option<Partial>) -> (&[u8], Option<u32>) {
    match partial {
        None => (data, None),
        Some(p) => {
            let start = (p.offset as usize).min(data.len());
            let end = start.saturating_add(p.length as usize).min(data.len());
            (&data[start..end], Some(p.offset))
        }
    }
}

/// [`apply_partial`] to data that may be missing (sent as NIL): the data to send and the
/// origin to show, which a missing section shows too.
fn partial_of(data: Option<&[u8]>, partial: Option<Partial>) -> (Option<Vec<u8>>, Option<u32>) {
    match data {
        Some(d) => {
            let (d, o) = apply_partial(d, partial);
            (Some(d.to_vec()), o)
        }
        None => (None, partial.map(|p| p.offset)),
    }
}

// ---------------------------------------------------------------------------------------
// Splitting

/// Lines of `data[range]`: (start, end without the line break, end with it).
fn lines(data: &[u8], range: Range<usize>) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
    let mut pos = range.start;
    let end = range.end;
    std::iter::from_fn(move || {
        if pos >= end {
            return None;
        }
        let start = pos;
        let (content_end, next) = match data[start..end].iter().position(|&b| b == b'\n') {
            Some(i) => {
                let lf = start + i;
                let ce = if lf > start && data[lf - 1] == b'\r' {
                    lf - 1
                } else {
                    lf
                };
                (ce, lf + 1)
            }
            None => (end, end),
        };
        pos = next;
        Some((start, content_end, next))
    })
}

/// Where the header block of `data[range]` ends (after its blank line), or the range end.
/// The header block of a message, including the blank line that ends it (all of it if none).
pub(crate) fn header_block(raw: &[u8]) -> &[u8] {
    &raw[..header_end(raw, 0..raw.len())]
}

fn header_end(data: &[u8], range: Range<usize>) -> usize {
    for (start, content_end, next) in lines(data, range.clone()) {
        if start == content_end && next > content_end {
            return next;
        }
    }
    range.end
}

fn parse_part(
    raw: &[u8],
    range: Range<usize>,
    digest_child: bool,
    depth: usize,
    budget: &mut usize,
) -> Part {
    let body_start = header_end(raw, range.clone());
    let header = range.start..body_start;
    let body = body_start..range.end;
    let mut info = part_info(&raw[header.clone()], digest_child);
    let mut kind = PartKind::Leaf;
    let mut deep = false;
    let too_deep = depth >= MAX_DEPTH || *budget == 0;
    if info.media_type == "MULTIPART" {
        let boundary = info
            .params
            .iter()
            .find(|(k, _)| k == "BOUNDARY")
            .map(|(_, v)| v.as_bytes().to_vec())
            .filter(|b| !b.is_empty());
        let ranges = boundary.map(|b| split_multipart(raw, body.clone(), &b));
        match ranges {
            Some(ranges) if !ranges.is_empty() && !too_deep => {
                let digest = info.subtype == "DIGEST";
                let mut parts = Vec::with_capacity(ranges.len().min(64));
                for r in ranges {
                    if *budget == 0 {
                        break;
                    }
                    *budget -= 1;
                    parts.push(parse_part(raw, r, digest, depth + 1, budget));
                }
                if parts.is_empty() {
                    info.set_opaque();
                    deep = true;
                } else {
                    kind = PartKind::Multi(parts);
                }
            }
            Some(ranges) if !ranges.is_empty() => {
                info.set_opaque();
                deep = true;
            }
            _ => {
                // No boundary (parameter missing or never found): best effort, plain text.
                info.media_type = "TEXT".into();
                info.subtype = "PLAIN".into();
                info.params = vec![("CHARSET".into(), "US-ASCII".into())];
            }
        }
    } else if info.media_type == "MESSAGE" && (info.subtype == "RFC822" || info.subtype == "GLOBAL")
    {
        if !matches!(info.encoding.as_str(), "7BIT" | "8BIT" | "BINARY") {
            // Encoded encapsulation is not allowed (RFC 2046 §5.2.1): keep it opaque.
        } else if too_deep {
            info.set_opaque();
            deep = true;
        } else {
            *budget -= 1;
            let inner = parse_part(raw, body.clone(), false, depth + 1, budget);
            kind = PartKind::Message(Box::new(inner));
        }
    }
    Part {
        header,
        body,
        info,
        kind,
        deep,
    }
}

impl PartInfo {
    fn set_opaque(&mut self) {
        self.media_type = "APPLICATION".into();
        self.subtype = "OCTET-STREAM".into();
        self.params.retain(|(k, _)| k != "BOUNDARY");
    }
}

/// The content ranges of the body parts of a multipart (RFC 2046 §5.1.1): the CRLF before
/// a delimiter line belongs to the delimiter; preamble and epilogue are dropped.
fn split_multipart(raw: &[u8], body: Range<usize>, boundary: &[u8]) -> Vec<Range<usize>> {
    let mut parts = Vec::new();
    let mut open: Option<usize> = None;
    for (start, content_end, next) in lines(raw, body.clone()) {
        let line = &raw[start..content_end];
        let Some(rest) = line
            .strip_prefix(b"--")
            .and_then(|l| l.strip_prefix(boundary))
        else {
            continue;
        };
        let (close, rest) = match rest.strip_prefix(b"--") {
            Some(r) => (true, r),
            None => (false, rest),
        };
        if !rest.iter().all(|&b| b == b' ' || b == b'\t') {
            continue;
        }
        if let Some(s) = open.take() {
            // Drop the line break before this delimiter.
            let mut e = start;
            if e > s && raw[e - 1] == b'\n' {
                e -= 1;
                if e > s && raw[e - 1] == b'\r' {
                    e -= 1;
                }
            }
            parts.push(s..e.max(s));
        }
        if close {
            return parts;
        }
        open = Some(next);
        if parts.len() > MAX_PARTS {
            return parts;
        }
    }
    if let Some(s) = open {
        // No close delimiter: the last part runs to the end.
        parts.push(s..body.end.max(s));
    }
    parts
}

/// The `TEXT/*` leaves under `p`, in order (depth is bounded by [`MAX_DEPTH`]).
fn text_leaves<'p>(p: &'p Part, out: &mut Vec<&'p Part>) {
    match &p.kind {
        PartKind::Leaf if p.info.media_type == "TEXT" || p.deep => out.push(p),
        PartKind::Leaf => {}
        PartKind::Multi(children) => children.iter().for_each(|c| text_leaves(c, out)),
        PartKind::Message(inner) => text_leaves(inner, out),
    }
}

/// Bytes in `charset` (absent, UTF-8 or unknown: UTF-8, lossily) as UTF-8.
pub(crate) fn decode_charset(bytes: &[u8], charset: Option<&str>) -> String {
    match charset {
        Some(cs)
            if !cs.eq_ignore_ascii_case("utf-8")
                && !cs.eq_ignore_ascii_case("us-ascii")
                && !cs.eq_ignore_ascii_case("utf8") =>
        {
            match mail_parser::decoders::charsets::map::charset_decoder(cs.as_bytes()) {
                Some(decode) => decode(bytes),
                None => String::from_utf8_lossy(bytes).into_owned(),
            }
        }
        _ => String::from_utf8_lossy(bytes).into_owned(),
    }
}

fn count_lines(body: &[u8]) -> u64 {
    let lf = body.iter().filter(|&&b| b == b'\n').count() as u64;
    if body.last().is_some_and(|&b| b != b'\n') {
        lf + 1
    } else {
        lf
    }
}

// ---------------------------------------------------------------------------------------
// Header fields

/// The raw fields of a header block: (name, whole field including its line break).
pub(crate) fn fields(header: &[u8]) -> Vec<(&[u8], Range<usize>)> {
    let mut out: Vec<(&[u8], Range<usize>)> = Vec::new();
    for (start, content_end, next) in lines(header, 0..header.len()) {
        if start == content_end {
            break;
        }
        let first = header[start];
        if (first == b' ' || first == b'\t')
            && let Some(last) = out.last_mut()
        {
            last.1.end = next;
            continue;
        }
        let line = &header[start..content_end];
        let name = match line.iter().position(|&b| b == b':') {
            Some(i) => trim(&line[..i]),
            None => line,
        };
        out.push((name, start..next));
    }
    out
}

/// `HEADER.FIELDS (...)` / `HEADER.FIELDS.NOT (...)`: the selected fields in their order,
/// then the blank line.
fn header_fields(header: &[u8], names: &[String], not: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, range) in fields(header) {
        let listed = names
            .iter()
            .any(|n| n.as_bytes().eq_ignore_ascii_case(name));
        if listed != not {
            out.extend_from_slice(&header[range.clone()]);
            if !out.ends_with(b"\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &s[start..end.max(start)]
}

/// A raw header value, unfolded (line breaks removed) and trimmed.
fn unfold(value: &[u8]) -> Vec<u8> {
    let v: Vec<u8> = value
        .iter()
        .copied()
        .filter(|&b| b != b'\r' && b != b'\n')
        .collect();
    trim(&v).to_vec()
}

fn raw_value(header: &[u8], h: &mail_parser::Header<'_>) -> Vec<u8> {
    let r = h.offset_start as usize..h.offset_end as usize;
    header.get(r).map(unfold).unwrap_or_default()
}

/// Parses the MIME fields only: a part's From, Date, Received... are skipped, not decoded
/// (most of the cost of splitting a message otherwise).
static MIME_FIELDS: std::sync::LazyLock<MessageParser> = std::sync::LazyLock::new(|| {
    MessageParser::new()
        .with_mime_headers()
        .header_raw(HeaderName::ContentLanguage)
        .default_header_ignore()
});

fn part_info(header: &[u8], digest_child: bool) -> PartInfo {
    let mut info = PartInfo {
        encoding: "7BIT".into(),
        ..PartInfo::default()
    };
    let parsed = MIME_FIELDS.parse_headers(header);
    let headers = parsed
        .as_ref()
        .and_then(|m| m.parts.first())
        .map(|p| p.headers.as_slice())
        .unwrap_or_default();
    let mut seen_type = false;
    for h in headers {
        match (&h.name, &h.value) {
            (HeaderName::ContentType, HeaderValue::ContentType(ct)) if !seen_type => {
                seen_type = true;
                let t = ct.ctype().trim().to_ascii_uppercase();
                let st = ct.subtype().map(|s| s.trim().to_ascii_uppercase());
                if let (false, Some(st)) = (t.is_empty(), st.filter(|s| !s.is_empty())) {
                    info.media_type = t;
                    info.subtype = st;
                    info.params = attrs(ct.attributes());
                }
            }
            (HeaderName::ContentTransferEncoding, _) => {
                let v = raw_value(header, h);
                let v = String::from_utf8_lossy(&v).trim().to_ascii_uppercase();
                if !v.is_empty() {
                    info.encoding = v;
                }
            }
            (HeaderName::ContentId, _) if info.id.is_none() => {
                info.id = Some(raw_value(header, h));
            }
            (HeaderName::ContentDescription, v) if info.description_raw.is_none() => {
                info.description_raw = Some(raw_value(header, h));
                info.description = Some(match v {
                    HeaderValue::Text(t) => t.to_string(),
                    _ => String::from_utf8_lossy(&raw_value(header, h)).into_owned(),
                });
            }
            (HeaderName::ContentDisposition, HeaderValue::ContentType(ct))
                if info.disposition.is_none() =>
            {
                let t = ct.ctype().trim();
                if !t.is_empty() {
                    info.disposition = Some((t.to_ascii_uppercase(), attrs(ct.attributes())));
                }
            }
            (HeaderName::ContentLanguage, _) if info.language.is_empty() => {
                info.language = raw_value(header, h)
                    .split(|&b| b == b',')
                    .map(|l| trim(l).to_vec())
                    .filter(|l| !l.is_empty())
                    .take(32)
                    .collect();
            }
            (HeaderName::ContentLocation, _) if info.location.is_none() => {
                info.location = Some(raw_value(header, h));
            }
            _ => {}
        }
    }
    if info.media_type == "TEXT" && !info.params.iter().any(|(k, _)| k == "CHARSET") {
        info.params.push(("CHARSET".into(), "US-ASCII".into()));
    }
    if info.media_type.is_empty() {
        if digest_child {
            info.media_type = "MESSAGE".into();
            info.subtype = "RFC822".into();
        } else {
            info.media_type = "TEXT".into();
            info.subtype = "PLAIN".into();
            info.params = vec![("CHARSET".into(), "US-ASCII".into())];
        }
    }
    info
}

fn attrs(a: Option<&[mail_parser::Attribute<'_>]>) -> Vec<(String, String)> {
    a.unwrap_or_default()
        .iter()
        .take(64)
        .map(|a| (a.name.to_ascii_uppercase(), a.value.to_string()))
        .collect()
}

fn params_out(params: &[(String, String)], utf8: bool) -> Vec<(Vec<u8>, Vec<u8>)> {
    params
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), text_out(v, utf8)))
        .collect()
}

fn disposition_out(d: Option<&(String, Vec<(String, String)>)>, utf8: bool) -> Option<Disposition> {
    d.map(|(t, p)| (t.as_bytes().to_vec(), params_out(p, utf8)))
}

/// Decoded text for the client: as is with UTF-8, else ASCII as is and anything else as
/// RFC 2047 encoded words.
fn text_out(s: &str, utf8: bool) -> Vec<u8> {
    if utf8 || s.is_ascii() {
        return s.as_bytes().to_vec();
    }
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let mut cut = rest.len().min(45);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        if !out.is_empty() {
            out.push(b' ');
        }
        out.extend_from_slice(b"=?UTF-8?B?");
        out.extend_from_slice(BASE64.encode(&rest.as_bytes()[..cut]).as_bytes());
        out.extend_from_slice(b"?=");
        rest = &rest[cut..];
    }
    out
}

// ---------------------------------------------------------------------------------------
// Transfer decodings (lenient)

fn decode_base64(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in data {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

fn decode_qp(data: &[u8]) -> Vec<u8> {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let mut out = Vec::with_capacity(data.len());
    for (start, content_end, next) in lines(data, 0..data.len()) {
        // Trailing whitespace is padding (RFC 2045 §6.7 rule 3).
        let mut line = &data[start..content_end];
        while let [rest @ .., b' ' | b'\t'] = line {
            line = rest;
        }
        let mut i = 0;
        let mut soft = false;
        while i < line.len() {
            let b = line[i];
            if b == b'=' {
                if i + 1 == line.len() {
                    soft = true;
                    break;
                }
                if let (Some(h), Some(l)) = (
                    line.get(i + 1).copied().and_then(hex),
                    line.get(i + 2).copied().and_then(hex),
                ) {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
            }
            out.push(b);
            i += 1;
        }
        if !soft && next > content_end {
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

mod address;
mod nul;

use address::*;
pub(crate) use address::{canonical_addresses, first_address};

#[cfg(test)]
mod tests;
