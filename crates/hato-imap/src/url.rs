//! IMAP URLs (RFC 5092) as CATENATE (RFC 4469) uses them: a message or part of a message
//! on this server, for the logged-in user. Accepted forms:
//!
//! * `/mailbox[;UIDVALIDITY=n]/;UID=n[/;SECTION=section][/;PARTIAL=offset[.length]]`
//! * the same after `imap://[user@]host[:port]` (the server and user are taken to be this
//!   session's: the driver can only reach the logged-in user's mail anyway).
//!
//! The mailbox name is percent-encoded UTF-8 (RFC 5092 §3.2); the section is as in
//! `BODY[section]`. URLAUTH and search URLs are not supported (the URL is refused).

use crate::command::Section;

/// A parsed IMAP URL naming a message or a part of one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImapUrl {
    /// Decoded (UTF-8, `INBOX` canonical).
    pub mailbox: String,
    /// When present, the mailbox's UIDVALIDITY must be this.
    pub uidvalidity: Option<u32>,
    pub uid: u32,
    /// `None`: the whole message.
    pub section: Option<Section>,
    /// (offset, length): octets of the section from `offset`, at most `length` of them.
    pub partial: Option<(u64, Option<u64>)>,
}

impl ImapUrl {
    /// Parses a URL; `None` when it is malformed or of a kind not supported.
    pub fn parse(url: &str) -> Option<ImapUrl> {
        let path = match url.get(..7) {
            Some(scheme) if scheme.eq_ignore_ascii_case("imap://") => {
                let rest = &url[7..];
                &rest[rest.find('/')?..]
            }
            _ => url,
        };
        let path = path.strip_prefix('/')?;
        // "mailbox[;UIDVALIDITY=n]" then "/;UID=n" and the optional parameters.
        let mut segments = path.split('/');
        let first = segments.next()?;
        let (mailbox, uidvalidity) = match first.find(';') {
            Some(i) => {
                let (name, param) = first.split_at(i);
                let v = param_value(&param[1..], "UIDVALIDITY")?;
                (name, Some(nz_number(v)?))
            }
            None => (first, None),
        };
        if mailbox.is_empty() {
            return None;
        }
        let mailbox = crate::mailbox::decode_mailbox(&percent_decode(mailbox)?, true).ok()?;
        let uid = nz_number(param_value(segments.next()?.strip_prefix(';')?, "UID")?)?;
        let mut section = None;
        let mut partial = None;
        let mut next = segments.next();
        if let Some(v) = next
            .and_then(|s| s.strip_prefix(';'))
            .and_then(|s| param_value(s, "SECTION"))
        {
            let mut spec = b"[".to_vec();
            spec.extend(percent_decode(v)?);
            spec.push(b']');
            section = Some(crate::parse::parse_section(&spec)?);
            next = segments.next();
        }
        if let Some(s) = next {
            let v = param_value(s.strip_prefix(';')?, "PARTIAL")?;
            partial = Some(match v.split_once('.') {
                Some((o, l)) => (number(o)?, Some(nz_number(l)?.into())),
                None => (number(v)?, None),
            });
            next = segments.next();
        }
        // Nothing else (a trailing "/" is tolerated).
        match (next, segments.next()) {
            (None, _) | (Some(""), None) => {}
            _ => return None,
        }
        Some(ImapUrl {
            mailbox,
            uidvalidity,
            uid,
            section,
            partial,
        })
    }

    /// The octets this URL names in `section_data` (the section already extracted):
    /// the partial, if any, applied.
    pub fn apply_partial<'d>(&self, data: &'d [u8]) -> &'d [u8] {
        match self.partial {
            None => data,
            Some((offset, length)) => {
                let start = usize::try_from(offset)
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                let rest = &data[start..];
                match length {
                    Some(l) => &rest[..usize::try_from(l).unwrap_or(usize::MAX).min(rest.len())],
                    None => rest,
                }
            }
        }
    }
}

/// `NAME=value` (name case-insensitive) → value.
fn param_value<'s>(param: &'s str, name: &str) -> Option<&'s str> {
    let (n, v) = param.split_once('=')?;
    n.eq_ignore_ascii_case(name).then_some(v)
}

fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn nz_number(s: &str) -> Option<u32> {
    number(s)
        .and_then(|n| u32::try_from(n).ok())
        .filter(|&n| n > 0)
}

/// `%XX` escapes undone; `None` for a malformed escape.
fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::SectionText;

    fn url(s: &str) -> ImapUrl {
        ImapUrl::parse(s).unwrap_or_else(|| panic!("{s} refused"))
    }

    #[test]
    fn message_and_sections() {
        let u = url("/INBOX;UIDVALIDITY=5/;UID=3/;SECTION=TEXT");
        assert_eq!(u.mailbox, "INBOX");
        assert_eq!(u.uidvalidity, Some(5));
        assert_eq!(u.uid, 3);
        assert_eq!(
            u.section,
            Some(Section {
                part: vec![],
                text: Some(SectionText::Text)
            })
        );
        assert_eq!(u.partial, None);

        let u = url("/inbox/;uid=7");
        assert_eq!(
            (u.mailbox.as_str(), u.uidvalidity, u.uid),
            ("INBOX", None, 7)
        );
        assert_eq!(u.section, None);

        let u = url("/a%20b%C3%A9/;uid=2/;section=1.2.header/;partial=10.20");
        assert_eq!(u.mailbox, "a bé");
        assert_eq!(
            u.section,
            Some(Section {
                part: vec![1, 2],
                text: Some(SectionText::Header)
            })
        );
        assert_eq!(u.partial, Some((10, Some(20))));

        let u = url("/x/;UID=2/;SECTION=HEADER.FIELDS%20(From%20To)");
        assert!(matches!(
            u.section,
            Some(Section { text: Some(SectionText::HeaderFields { not: false, ref fields }), .. })
                if fields == &["From".to_string(), "To".to_string()]
        ));

        let u = url("/x/;uid=2/;partial=100000.1");
        assert_eq!((u.section, u.partial), (None, Some((100000, Some(1)))));

        let u = url("imap://joe@example.com/Sent;UIDVALIDITY=9/;UID=1/;SECTION=1");
        assert_eq!((u.mailbox.as_str(), u.uidvalidity), ("Sent", Some(9)));
        assert_eq!(u.section.unwrap().part, vec![1]);
    }

    #[test]
    fn refused() {
        for s in [
            "",
            "INBOX/;UID=1",
            "/INBOX",
            "/INBOX/",
            "/INBOX/;UID=0",
            "/INBOX/;UID=x",
            "/;UID=1",
            "/INBOX;UIDVALIDITY=/;UID=1",
            "/INBOX;FOO=1/;UID=1",
            "/INBOX/;UID=1/;SECTION=BOGUS",
            "/INBOX/;UID=1/;SECTION=1.",
            "/INBOX/;UID=1/;PARTIAL=1.0",
            "/INBOX/;UID=1/;URLAUTH=anonymous",
            "/INBOX/;UID=1/;SECTION=1/extra",
            "/IN%ZZBOX/;UID=1",
            "/INBOX?SUBJECT%20x",
            "imap://host",
        ] {
            assert_eq!(ImapUrl::parse(s), None, "{s} accepted");
        }
    }

    #[test]
    fn partial() {
        let u = url("/x/;uid=1/;partial=2.3");
        assert_eq!(u.apply_partial(b"abcdefg"), b"cde");
        let u = url("/x/;uid=1/;partial=5");
        assert_eq!(u.apply_partial(b"abcdefg"), b"fg");
        let u = url("/x/;uid=1/;partial=100.1");
        assert_eq!(u.apply_partial(b"abc"), b"");
    }
}
