//! ENVELOPE (RFC 9051 §7.5.2) and the address forms SEARCH, SORT and THREAD use: groups,
//! source routes, comment-only members, canonical `local@domain` forms.

use super::*;

// ---------------------------------------------------------------------------------------
// Envelope

/// The ENVELOPE of a header block (RFC 9051 §7.5.2).
pub(super) fn envelope(header: &[u8], utf8: bool) -> Envelope {
    let mut env = Envelope::default();
    let parsed = MessageParser::new().parse_headers(header);
    let headers = parsed
        .as_ref()
        .and_then(|m| m.parts.first())
        .map(|p| p.headers.as_slice())
        .unwrap_or_default();
    let (mut from, mut sender, mut reply_to) = (None, None, None);
    let (mut to, mut cc, mut bcc) = (None, None, None);
    for h in headers {
        match &h.name {
            HeaderName::Date if env.date.is_none() => env.date = Some(raw_value(header, h)),
            HeaderName::Subject if env.subject.is_none() => {
                env.subject = Some(match (&h.value, utf8) {
                    (HeaderValue::Text(t), true) => t.as_bytes().to_vec(),
                    _ => raw_value(header, h),
                });
            }
            HeaderName::InReplyTo if env.in_reply_to.is_none() => {
                env.in_reply_to = Some(raw_value(header, h));
            }
            HeaderName::MessageId if env.message_id.is_none() => {
                env.message_id = Some(raw_value(header, h));
            }
            HeaderName::From if from.is_none() => {
                from = Some(addresses(&h.value, &raw_value(header, h), utf8))
            }
            HeaderName::Sender if sender.is_none() => {
                sender = Some(addresses(&h.value, &raw_value(header, h), utf8))
            }
            HeaderName::ReplyTo if reply_to.is_none() => {
                reply_to = Some(addresses(&h.value, &raw_value(header, h), utf8));
            }
            HeaderName::To if to.is_none() => {
                to = Some(addresses(&h.value, &raw_value(header, h), utf8))
            }
            HeaderName::Cc if cc.is_none() => {
                cc = Some(addresses(&h.value, &raw_value(header, h), utf8))
            }
            HeaderName::Bcc if bcc.is_none() => {
                bcc = Some(addresses(&h.value, &raw_value(header, h), utf8))
            }
            _ => {}
        }
    }
    env.from = from.unwrap_or_default();
    // RFC 9051 §7.5.2: sender and reply-to default to from.
    env.sender = sender.filter(|s| !s.is_empty()).unwrap_or(env.from.clone());
    env.reply_to = reply_to
        .filter(|s| !s.is_empty())
        .unwrap_or(env.from.clone());
    env.to = to.unwrap_or_default();
    env.cc = cc.unwrap_or_default();
    env.bcc = bcc.unwrap_or_default();
    env
}

/// Most addresses taken from one header field.
pub(super) const MAX_ADDRESSES: usize = 1000;

/// The addresses of one field for the ENVELOPE: a group is its start marker
/// `(NIL NIL "name" NIL)`, its members and its end marker `(NIL NIL NIL NIL)`
/// (RFC 9051 §7.5.2). mail-parser turns a list member made only of comments (`(foo)` in
/// `group2: (foo) ;`) into an address without an address part, like a bare phrase (`foo`):
/// the raw value (`raw`) tells them apart, and comments are not addresses.
pub(super) fn addresses(v: &HeaderValue<'_>, raw: &[u8], utf8: bool) -> Vec<Address> {
    let HeaderValue::Address(list) = v else {
        return Vec::new();
    };
    let members: Vec<&mail_parser::Addr<'_>> = match list {
        mail_parser::Address::List(l) => l.iter().collect(),
        mail_parser::Address::Group(g) => g.iter().flat_map(|g| g.addresses.iter()).collect(),
    };
    // Which members to leave out: only when the raw scan and mail-parser agree on the
    // member count (otherwise every member is kept, as parsed).
    let scan = comment_only_members(raw);
    let comment_only = |i: usize| scan.len() == members.len() && scan[i];
    let mut index = 0;
    let mut member = |a: &mail_parser::Addr<'_>, out: &mut Vec<Address>| {
        let skip = comment_only(index) && a.address.is_none();
        index += 1;
        if !skip {
            out.extend(address(a, utf8));
        }
    };
    let mut out = Vec::new();
    match list {
        mail_parser::Address::List(l) => {
            for a in l {
                member(a, &mut out);
            }
        }
        mail_parser::Address::Group(groups) => {
            for g in groups {
                if let Some(name) = &g.name {
                    out.push(Address {
                        mailbox: Some(text_out(name, utf8)),
                        ..Address::default()
                    });
                }
                for a in &g.addresses {
                    member(a, &mut out);
                }
                if g.name.is_some() {
                    out.push(Address::default());
                }
            }
        }
    }
    out.truncate(MAX_ADDRESSES);
    out
}

/// Splits an address list's raw value into its members (the mailboxes, inside groups too:
/// split at top-level `,`, `;` and, after a group's display name, `:`), empty members
/// skipped, and tells for each whether it is made of comments only.
pub(super) fn comment_only_members(raw: &[u8]) -> Vec<bool> {
    let mut out = Vec::new();
    // (has a comment, has anything else) for the current member.
    let (mut comment, mut content) = (false, false);
    let mut depth = 0usize; // comment nesting
    let (mut quoted, mut angle, mut literal, mut escaped) = (false, false, false, false);
    fn end(comment: &mut bool, content: &mut bool, out: &mut Vec<bool>) {
        if *comment || *content {
            out.push(!*content);
        }
        (*comment, *content) = (false, false);
    }
    for &b in raw {
        if escaped {
            escaped = false;
            continue;
        }
        if depth > 0 {
            match b {
                b'\\' => escaped = true,
                b'(' => depth += 1,
                b')' => depth -= 1,
                _ => {}
            }
            continue;
        }
        if quoted {
            match b {
                b'\\' => escaped = true,
                b'"' => quoted = false,
                _ => {}
            }
            continue;
        }
        if literal {
            match b {
                b'\\' => escaped = true,
                b']' => literal = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'(' => {
                depth = 1;
                if !angle {
                    comment = true;
                }
            }
            b'"' => {
                quoted = true;
                content = true;
            }
            b'[' => {
                literal = true;
                content = true;
            }
            _ if angle => {
                if b == b'>' {
                    angle = false;
                }
            }
            b'<' => {
                angle = true;
                content = true;
            }
            b',' | b';' => end(&mut comment, &mut content, &mut out),
            // A group's display name ends: it is not a member.
            b':' => (comment, content) = (false, false),
            b' ' | b'\t' | b'\r' | b'\n' => {}
            _ => content = true,
        }
    }
    end(&mut comment, &mut content, &mut out);
    out
}

/// The first address of an address field's raw value as the ENVELOPE shows it (with UTF-8
/// text): a group's start marker (`mailbox` is the group's name) when the field starts with
/// a group. For the SORT keys FROM/TO/CC and DISPLAYFROM/DISPLAYTO.
pub(crate) fn first_address(value: &[u8]) -> Option<Address> {
    let mut v = value.to_vec();
    if !v.ends_with(b"\n") {
        v.push(b'\n');
    }
    let parsed = mail_parser::parsers::MessageStream::new(&v).parse_address();
    addresses(&parsed, value, true).into_iter().next()
}

/// An address as mail-parser gives it (`local@domain`, or `@route,@route:local@domain` for
/// an obsolete source route) split into the route (RFC 5322 §4.4 obs-route, the ENVELOPE's
/// `adl`, without its final colon) and the address proper.
pub(crate) fn split_route(addr: &str) -> (Option<&str>, &str) {
    if addr.starts_with('@')
        && let Some((route, rest)) = addr.split_once(':')
    {
        return (Some(route), rest);
    }
    (None, addr)
}

pub(super) fn address(a: &mail_parser::Addr<'_>, utf8: bool) -> Option<Address> {
    let name = a
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| text_out(n, utf8));
    let (route, addr) = split_route(a.address.as_deref().map(str::trim).unwrap_or_default());
    let (mailbox, host) = if addr.is_empty() {
        name.as_ref()?;
        (String::new(), String::new())
    } else {
        match addr.rsplit_once('@') {
            Some((m, h)) => (m.trim_end().to_string(), h.trim_start().to_string()),
            None => (addr.to_string(), String::new()),
        }
    };
    Some(Address {
        name,
        adl: route.map(|r| text_out(r, utf8)),
        mailbox: Some(text_out(&mailbox, utf8)),
        host: Some(text_out(&host, utf8)),
    })
}

/// An address without the blanks mail-parser may leave in it (`user@ domain.org` from
/// `<user (comment)@ domain.org>`), except inside a quoted local part.
pub(super) fn without_blanks(addr: &str) -> String {
    let mut quoted = false;
    let mut escaped = false;
    let mut out = String::with_capacity(addr.len());
    for c in addr.chars() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if !quoted && c.is_ascii_whitespace() {
            continue;
        }
        out.push(c);
    }
    out
}

/// The canonical forms (`local@domain`: comments, blanks and a source route left out) of
/// the addresses in an address field's raw value, as SEARCH FROM/TO/CC/BCC also match them.
pub(crate) fn canonical_addresses(value: &[u8]) -> Vec<String> {
    let mut v = value.to_vec();
    if !v.ends_with(b"\n") {
        v.push(b'\n');
    }
    let parsed = mail_parser::parsers::MessageStream::new(&v).parse_address();
    let HeaderValue::Address(list) = parsed else {
        return Vec::new();
    };
    let members: Vec<&mail_parser::Addr<'_>> = match &list {
        mail_parser::Address::List(l) => l.iter().collect(),
        mail_parser::Address::Group(g) => g.iter().flat_map(|g| g.addresses.iter()).collect(),
    };
    members
        .into_iter()
        .filter_map(|a| a.address.as_deref())
        .map(|a| without_blanks(split_route(a.trim()).1))
        .filter(|a| !a.is_empty())
        .take(MAX_ADDRESSES)
        .collect()
}
