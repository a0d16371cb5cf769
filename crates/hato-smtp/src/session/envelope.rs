//! The accepted message: envelope (RFC 5321 §2.3.1) with its DSN parameters
//! (RFC 3461 §4) and REQUIRETLS flag (RFC 8689), the `Received:` trace field
//! (RFC 5321 §4.4, TLS comment in the style of common MTAs) and the `with`
//! protocol keyword (RFC 3848).

use std::fmt::Write as _;
use std::net::IpAddr;

use super::{Peer, TlsInfo};
use crate::address::Address;
use crate::dsn::{DsnRet, RcptDsn};

/// A message accepted at the end of DATA / BDAT LAST, handed to the driver in
/// [`Action::Deliver`](super::Action::Deliver).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// The HELO/EHLO argument, as sent by the client (unverified client input).
    pub helo: String,
    /// `None` = null reverse-path `<>`.
    pub sender: Option<Address>,
    /// Accepted recipients, in order (duplicates removed).
    pub recipients: Vec<Address>,
    /// The DSN parameters (`NOTIFY`, `ORCPT`, RFC 3461 §4.1/§4.2) of each recipient:
    /// `rcpt_dsn[i]` belongs to `recipients[i]`. The session always makes it exactly
    /// as long as `recipients`; for a duplicate RCPT (which is not added again) the
    /// parameters of the first one are kept. See [`Envelope::recipients_with_dsn`].
    pub rcpt_dsn: Vec<RcptDsn>,
    /// `MAIL ... RET=` (RFC 3461 §4.3); `None`: not given.
    pub ret: Option<DsnRet>,
    /// `MAIL ... ENVID=` (RFC 3461 §4.4), xtext-decoded (printable US-ASCII);
    /// `None`: not given.
    pub envid: Option<String>,
    /// `MAIL ... REQUIRETLS` was given (RFC 8689 §4.1; only accepted under TLS).
    pub requiretls: bool,
    /// DATA: dot-unstuffed, CRLF line endings, without the final `.CRLF`.
    /// BDAT: the chunks concatenated, in canonical CRLF form.
    /// Only what follows the octets the driver took with [`Session::take_data`](crate::Session::take_data).
    pub body: Vec<u8>,
    /// How many octets of the message come before `body` (taken by the driver); 0 when the
    /// whole message is in `body`.
    pub body_offset: u64,
    /// `MAIL ... BODY=8BITMIME` was given (RFC 6152).
    pub body_8bitmime: bool,
    /// `MAIL ... SMTPUTF8` was given (RFC 6531).
    pub smtputf8: bool,
    /// The SASL authentication identity, if the client authenticated.
    pub auth_user: Option<String>,
    /// TLS parameters when the message was received over TLS.
    pub tls: Option<TlsInfo>,
    pub peer: Peer,
    /// The client greeted with EHLO (`true`) rather than HELO (`false`).
    /// (Addition to the original API: needed to tell "SMTP" from "ESMTP".)
    pub esmtp: bool,
}

impl Envelope {
    /// Each recipient with its DSN parameters, in order. (A recipient without an
    /// entry in [`Envelope::rcpt_dsn`], which the session never produces, gets none.)
    pub fn recipients_with_dsn(&self) -> impl Iterator<Item = (&Address, &RcptDsn)> {
        static NONE: RcptDsn = RcptDsn {
            notify: None,
            orcpt: None,
        };
        self.recipients
            .iter()
            .enumerate()
            .map(|(i, r)| (r, self.rcpt_dsn.get(i).unwrap_or(&NONE)))
    }

    /// The RFC 3848 `with` keyword: `SMTP` after HELO; after EHLO `ESMTP`, plus `S`
    /// when TLS was used and `A` when the client authenticated.
    pub fn protocol(&self) -> &'static str {
        if !self.esmtp {
            return "SMTP";
        }
        match (self.tls.is_some(), self.auth_user.is_some()) {
            (false, false) => "ESMTP",
            (true, false) => "ESMTPS",
            (false, true) => "ESMTPA",
            (true, true) => "ESMTPSA",
        }
    }

    /// The full `Received:` header field, folded, CRLF-terminated:
    ///
    /// ```text
    /// Received: from client.example (rdns.example [192.0.2.1])
    /// <TAB>(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384)
    /// <TAB>by mail.example.com (hato) with ESMTPS id ID
    /// <TAB>for <alice@example.com>; DATE
    /// ```
    ///
    /// (continuation lines start with a horizontal tab).
    ///
    /// * `from` carries the HELO name, sanitised (it is client input: control
    ///   characters, parentheses, backslashes, quotes, `;` and non-ASCII are replaced,
    ///   spaces become `_`, length is capped).
    /// * The parenthesised TCP-info is `reverse_name [ip]` when the driver resolved a
    ///   reverse name, else just `[ip]` (RFC 5321 §4.4 `TCP-info`); the unverified
    ///   HELO name is deliberately *not* repeated there.
    /// * The TLS line is present only for TLS sessions.
    /// * `for` is present only with exactly one recipient (privacy).
    /// * `date` is an RFC 5322 date-time supplied by the caller.
    pub fn received_header(&self, hostname: &str, id: &str, date: &str) -> String {
        let mut h = String::with_capacity(256);
        let ip = match self.peer.ip.to_canonical() {
            IpAddr::V4(a) => format!("[{a}]"),
            IpAddr::V6(a) => format!("[IPv6:{a}]"),
        };
        let tcp_info = match self.peer.reverse_name.as_deref().map(|r| sanitize(r, 255)) {
            Some(r) if !r.is_empty() => format!("{r} {ip}"),
            _ => ip,
        };
        let mut helo = sanitize(&self.helo, 255);
        if helo.is_empty() {
            helo.push_str("unknown");
        }
        let _ = write!(h, "Received: from {helo} ({tcp_info})\r\n");
        if let Some(tls) = &self.tls {
            let _ = write!(
                h,
                "\t(using {} with cipher {})\r\n",
                sanitize(&tls.version, 64),
                sanitize(&tls.cipher, 128)
            );
        }
        let _ = write!(
            h,
            "\tby {} (hato) with {} id {}",
            sanitize(hostname, 255),
            self.protocol(),
            sanitize(id, 128)
        );
        if let [rcpt] = self.recipients.as_slice() {
            let _ = write!(h, "\r\n\tfor <{}>", sanitize(&rcpt.to_string(), 256));
        }
        let _ = write!(h, "; {}\r\n", sanitize_text(date, 64));
        h
    }
}

/// Makes a client-supplied token safe inside a `Received:` clause: printable ASCII
/// only, no comment/quoting delimiters, no `;` (it separates the date), no spaces.
fn sanitize(s: &str, max: usize) -> String {
    s.chars()
        .take(max)
        .map(|c| match c {
            '(' | ')' | '\\' | '"' | ';' => '_',
            ' ' => '_',
            c if c.is_ascii_graphic() => c,
            _ => '?',
        })
        .collect()
}

/// Like [`sanitize`] but keeps spaces, commas, colons (for the date).
fn sanitize_text(s: &str, max: usize) -> String {
    s.chars()
        .take(max)
        .map(|c| {
            if c == ' ' || (c.is_ascii_graphic() && c != ';') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Envelope {
        Envelope {
            helo: "client.example".into(),
            sender: Some(Address::parse("bob@client.example").unwrap()),
            recipients: vec![Address::parse("alice@example.com").unwrap()],
            rcpt_dsn: vec![RcptDsn::default()],
            ret: None,
            envid: None,
            requiretls: false,
            body: b"x\r\n".to_vec(),
            body_offset: 0,
            body_8bitmime: false,
            smtputf8: false,
            auth_user: None,
            tls: Some(TlsInfo {
                version: "TLSv1.3".into(),
                cipher: "TLS_AES_256_GCM_SHA384".into(),
                sni: None,
            }),
            peer: Peer {
                ip: "192.0.2.1".parse().unwrap(),
                port: 4567,
                reverse_name: Some("client.example".into()),
            },
            esmtp: true,
        }
    }

    const DATE: &str = "Mon, 1 Jan 2024 00:00:00 +0000";

    #[test]
    fn recipients_with_dsn_pairs_by_index() {
        use crate::dsn::Notify;
        let mut e = env();
        e.rcpt_dsn[0].notify = Some(Notify::NEVER);
        e.recipients
            .push(Address::parse("carol@example.com").unwrap());
        // An envelope built without the parallel entry (the session never does this).
        let got: Vec<(String, Option<String>)> = e
            .recipients_with_dsn()
            .map(|(r, d)| (r.to_string(), d.to_strings().0))
            .collect();
        assert_eq!(
            got,
            [
                ("alice@example.com".to_string(), Some("NEVER".to_string())),
                ("carol@example.com".to_string(), None),
            ]
        );
    }

    #[test]
    fn full_header() {
        assert_eq!(
            env().received_header("mail.example.com", "ID", DATE),
            "Received: from client.example (client.example [192.0.2.1])\r\n\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384)\r\n\tby mail.example.com (hato) with ESMTPS id ID\r\n\tfor <alice@example.com>; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
        );
    }

    #[test]
    fn no_tls_no_rdns_two_recipients() {
        let mut e = env();
        e.tls = None;
        e.peer.reverse_name = None;
        e.recipients
            .push(Address::parse("carol@example.com").unwrap());
        assert_eq!(
            e.received_header("mx", "Q1", DATE),
            "Received: from client.example ([192.0.2.1])\r\n\tby mx (hato) with ESMTP id Q1; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
        );
    }

    #[test]
    fn ipv6_and_mapped() {
        let mut e = env();
        e.peer.reverse_name = None;
        e.peer.ip = "2001:db8::1".parse().unwrap();
        assert!(
            e.received_header("mx", "1", DATE)
                .contains("([IPv6:2001:db8::1])")
        );
        e.peer.ip = "::ffff:192.0.2.7".parse().unwrap();
        assert!(e.received_header("mx", "1", DATE).contains("([192.0.2.7])"));
    }

    #[test]
    fn helo_is_sanitised() {
        let mut e = env();
        e.helo = "evil\r\nX-Injected: yes (fake [1.2.3.4]); by\\x \"q\" ü".into();
        let h = e.received_header("mx", "1", DATE);
        let first = h.lines().next().unwrap();
        assert_eq!(
            first,
            "Received: from evil??X-Injected:_yes__fake_[1.2.3.4]___by_x__q__? (client.example [192.0.2.1])"
        );
        assert_eq!(h.matches("\r\n").count(), 4);
        assert!(!h.contains("\r\nX-Injected"));
        e.helo = "\u{1}".repeat(1000);
        let h = e.received_header("mx", "1", DATE);
        assert!(h.len() < 600);
        e.helo = String::new();
        assert!(
            e.received_header("mx", "1", DATE)
                .starts_with("Received: from unknown (")
        );
    }

    #[test]
    fn reverse_name_and_date_are_sanitised() {
        let mut e = env();
        e.peer.reverse_name = Some("a (b)\r\n".into());
        let h = e.received_header("mx", "1", "x;\r\ny");
        assert!(h.starts_with("Received: from client.example (a__b_?? [192.0.2.1])\r\n"));
        assert!(h.ends_with("; x___y\r\n"));
    }

    #[test]
    fn protocols() {
        let mut e = env();
        assert_eq!(e.protocol(), "ESMTPS");
        e.auth_user = Some("u".into());
        assert_eq!(e.protocol(), "ESMTPSA");
        e.tls = None;
        assert_eq!(e.protocol(), "ESMTPA");
        e.auth_user = None;
        assert_eq!(e.protocol(), "ESMTP");
        e.esmtp = false;
        assert_eq!(e.protocol(), "SMTP");
        assert!(
            e.received_header("mx", "1", DATE)
                .contains(" with SMTP id 1")
        );
    }
}
