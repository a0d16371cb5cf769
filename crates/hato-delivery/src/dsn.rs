//! Delivery status notifications: RFC 3464 (message/delivery-status) inside an RFC 6522
//! multipart/report, with RFC 3461 semantics (NOTIFY, RET, ENVID, ORCPT), RFC 3463 status codes,
//! RFC 6533 for internationalised addresses and headers, and RFC 3834 `Auto-Submitted`.
//!
//! [`build`] is a pure function: it returns the message to submit with the null reverse-path
//! `<>` to the original envelope sender, or `None` when no DSN may be sent — above all for a
//! message that itself came with the null sender, so a bounce never causes another bounce
//! (RFC 5321 4.5.5, RFC 3464 2).

use std::fmt::Write as _;

use hato_wire::date::rfc5322;

/// RFC 3464 2.3.3 `Action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Failed,
    Delayed,
    Delivered,
    /// Delivered to a server that does not support DSN (NOTIFY=SUCCESS could not be relayed).
    Relayed,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
            Action::Delivered => "delivered",
            Action::Relayed => "relayed",
        }
    }
}

/// What of the original message the DSN returns (RFC 3461 4.3 `RET`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReturnContent {
    /// `RET=HDRS` and the default: the header only, as text/rfc822-headers.
    #[default]
    Headers,
    /// `RET=FULL`: the whole message as message/rfc822 (headers only if above the size limit).
    Full,
}

impl ReturnContent {
    /// From a stored `RET` parameter (None or anything but `FULL`: headers).
    pub fn from_ret(ret: Option<&str>) -> ReturnContent {
        match ret {
            Some(r) if r.eq_ignore_ascii_case("FULL") => ReturnContent::Full,
            _ => ReturnContent::Headers,
        }
    }
}

/// Whether a recipient's RFC 3461 `NOTIFY` asks for a DSN with this action. Not given: failures
/// and delays (RFC 3461 4.1); `NEVER`: none.
pub fn notify_wants(notify: Option<&str>, action: Action) -> bool {
    let Some(notify) = notify else {
        return matches!(action, Action::Failed | Action::Delayed);
    };
    let wanted = match action {
        Action::Failed => "FAILURE",
        Action::Delayed => "DELAY",
        Action::Delivered | Action::Relayed => "SUCCESS",
    };
    notify
        .split(',')
        .any(|item| item.trim().eq_ignore_ascii_case(wanted))
}

/// One recipient's entry of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientReport {
    /// The recipient address as delivered to (`Final-Recipient`).
    pub final_recipient: String,
    /// The stored ORCPT, `type;address` (e.g. `rfc822;bob@example.com`): `Original-Recipient`.
    pub original_recipient: Option<String>,
    pub action: Action,
    /// RFC 3463 status, e.g. `5.1.1`, `4.4.1`.
    pub status: String,
    /// The host name of the remote server that gave the reply (`Remote-MTA: dns; ...`).
    pub remote_mta: Option<String>,
    /// The remote SMTP reply, e.g. `550 5.1.1 <bob@example.net>: user unknown`
    /// (`Diagnostic-Code: smtp; ...`), or hato's own explanation when no server answered.
    pub diagnostic: Option<String>,
    /// Unix seconds of the last attempt (`Last-Attempt-Date`).
    pub last_attempt: Option<i64>,
    /// For `delayed`: until when hato keeps trying (`Will-Retry-Until`).
    pub will_retry_until: Option<i64>,
    /// One human-readable line with the TLS facts of the last attempt, e.g.
    /// `TLSv1.3 TLS_AES_256_GCM_SHA384, certificate verified (WebPKI), policy verify`.
    pub tls: Option<String>,
}

/// Everything [`build`] needs.
#[derive(Debug, Clone)]
pub struct DsnInput<'a> {
    /// hato's host name (`Reporting-MTA`, `From: MAILER-DAEMON@...`, Message-ID).
    pub reporting_mta: &'a str,
    /// The original envelope sender; "" (null) means no DSN at all.
    pub envelope_sender: &'a str,
    /// RFC 3461 ENVID (`Original-Envelope-Id`).
    pub envelope_id: Option<&'a str>,
    /// Unix seconds when hato accepted the message (`Arrival-Date`).
    pub arrival_date: i64,
    /// At least one.
    pub recipients: Vec<RecipientReport>,
    /// The original message (as queued).
    pub original: &'a [u8],
    pub ret: ReturnContent,
    /// With `RET=FULL`, messages larger than this return only their headers.
    pub max_full_size: usize,
    /// Unix seconds (`Date`).
    pub now: i64,
}

/// A DSN ready for submission: envelope sender is always the null sender `<>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dsn {
    /// Always "" (`MAIL FROM:<>`).
    pub mail_from: String,
    /// The original envelope sender.
    pub rcpt_to: String,
    /// The complete message, CRLF line endings.
    pub message: Vec<u8>,
}

/// Default for [`DsnInput::max_full_size`] (Postfix `bounce_size_limit`).
pub const DEFAULT_MAX_FULL_SIZE: usize = 50_000;

/// Builds the DSN, or `None` if none may be sent (null envelope sender, no recipients).
pub fn build(input: &DsnInput<'_>) -> Option<Dsn> {
    if input.envelope_sender.is_empty() || input.recipients.is_empty() {
        return None;
    }
    let host = clean(input.reporting_mta);
    let boundary = format!("hato-dsn-{:032x}", rand::random::<u128>());
    let message_id = format!("<{:032x}.dsn@{host}>", rand::random::<u128>());
    let failed = input.recipients.iter().any(|r| r.action == Action::Failed);
    let delayed = input.recipients.iter().any(|r| r.action == Action::Delayed);
    let subject = match (failed, delayed) {
        (true, false) => "Undelivered Mail Returned to Sender",
        (false, true) => "Delayed Mail (still being retried)",
        _ => "Delivery Status Notification",
    };
    let international = !input.envelope_sender.is_ascii()
        || input.recipients.iter().any(|r| {
            !r.final_recipient.is_ascii()
                || r.original_recipient
                    .as_deref()
                    .is_some_and(|o| !o.is_ascii())
        });

    let mut m = String::new();
    let _ = write!(
        m,
        "From: Mail Delivery System <MAILER-DAEMON@{host}>\r\n\
         To: <{to}>\r\n\
         Subject: {subject}\r\n\
         Date: {date}\r\n\
         Message-ID: {message_id}\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n\
         \tboundary=\"{boundary}\"\r\n\
         \r\n\
         This is a MIME-encapsulated message.\r\n\
         \r\n",
        to = clean(input.envelope_sender),
        date = rfc5322(input.now),
    );

    // 1. The human-readable part.
    let _ = write!(
        m,
        "--{boundary}\r\n\
         Content-Description: Notification\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\r\n"
    );
    m.push_str(&human_text(input, &host, failed, delayed));

    // 2. The machine-readable part.
    let (status_type, address_type) = if international {
        ("message/global-delivery-status", "utf-8")
    } else {
        ("message/delivery-status", "rfc822")
    };
    let _ = write!(
        m,
        "\r\n--{boundary}\r\n\
         Content-Description: Delivery report\r\n\
         Content-Type: {status_type}\r\n\r\n\
         Reporting-MTA: dns; {host}\r\n"
    );
    if let Some(envid) = input.envelope_id {
        let _ = write!(m, "Original-Envelope-Id: {}\r\n", clean(envid));
    }
    let _ = write!(m, "Arrival-Date: {}\r\n", rfc5322(input.arrival_date));
    for r in &input.recipients {
        let _ = write!(
            m,
            "\r\nFinal-Recipient: {address_type}; {}\r\n",
            clean(&r.final_recipient)
        );
        if let Some(orcpt) = &r.original_recipient {
            let _ = write!(m, "Original-Recipient: {}\r\n", clean(orcpt));
        }
        let _ = write!(
            m,
            "Action: {}\r\nStatus: {}\r\n",
            r.action.as_str(),
            clean(&r.status)
        );
        if let Some(remote) = &r.remote_mta {
            let _ = write!(m, "Remote-MTA: dns; {}\r\n", clean(remote));
        }
        if let Some(diagnostic) = &r.diagnostic {
            let _ = write!(m, "Diagnostic-Code: smtp; {}\r\n", clean(diagnostic));
        }
        if let Some(at) = r.last_attempt {
            let _ = write!(m, "Last-Attempt-Date: {}\r\n", rfc5322(at));
        }
        if let Some(until) = r.will_retry_until {
            let _ = write!(m, "Will-Retry-Until: {}\r\n", rfc5322(until));
        }
    }

    // 3. The original message or its header.
    let header = header_of(input.original);
    let full = input.ret == ReturnContent::Full && input.original.len() <= input.max_full_size;
    let mut out = m.into_bytes();
    // The message with its transfer encoding, or its header alone.
    let (description, content_type, encoding, body) = if full {
        let content_type = if international || !header.is_ascii() {
            "message/global"
        } else {
            "message/rfc822"
        };
        let encoding = if input.original.is_ascii() {
            "7bit"
        } else {
            "8bit"
        };
        (
            "Undelivered Message",
            content_type,
            Some(encoding),
            input.original,
        )
    } else {
        let content_type = if header.is_ascii() {
            "text/rfc822-headers"
        } else {
            "message/global-headers"
        };
        ("Undelivered Message Headers", content_type, None, header)
    };
    let _ = write!(
        Writer(&mut out),
        "\r\n--{boundary}\r\n\
         Content-Description: {description}\r\n\
         Content-Type: {content_type}\r\n"
    );
    if let Some(encoding) = encoding {
        let _ = write!(
            Writer(&mut out),
            "Content-Transfer-Encoding: {encoding}\r\n"
        );
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&crlf(body));
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    let _ = write!(Writer(&mut out), "\r\n--{boundary}--\r\n");
    Some(Dsn {
        mail_from: String::new(),
        rcpt_to: input.envelope_sender.to_owned(),
        message: out,
    })
}

fn human_text(input: &DsnInput<'_>, host: &str, failed: bool, delayed: bool) -> String {
    let mut t = format!("This is the mail system at host {host}.\r\n\r\n");
    if failed {
        t.push_str(
            "Your message could not be delivered to one or more recipients. It is attached\r\n\
             below. The recipients marked \"failed\" will not receive it.\r\n\r\n",
        );
    }
    if delayed {
        t.push_str(
            "Your message has not been delivered yet to the recipients marked \"delayed\".\r\n\
             Delivery is being retried; you do not need to send it again.\r\n\r\n",
        );
    }
    for r in &input.recipients {
        let _ = write!(
            t,
            "<{}> ({}):\r\n",
            clean(&r.final_recipient),
            r.action.as_str()
        );
        match (&r.remote_mta, &r.diagnostic) {
            (Some(remote), Some(d)) => {
                let _ = write!(
                    t,
                    "    host {} said:\r\n    {}\r\n",
                    clean(remote),
                    clean(d)
                );
            }
            (None, Some(d)) => {
                let _ = write!(t, "    {}\r\n", clean(d));
            }
            (Some(remote), None) => {
                let _ = write!(t, "    host {}\r\n", clean(remote));
            }
            (None, None) => {
                let _ = write!(t, "    status {}\r\n", clean(&r.status));
            }
        }
        if let Some(tls) = &r.tls {
            let _ = write!(t, "    TLS of the last attempt: {}\r\n", clean(tls));
        }
        if let Some(until) = r.will_retry_until {
            let _ = write!(t, "    will retry until {}\r\n", rfc5322(until));
        }
    }
    t
}

/// One header-field-safe line: control characters (CR, LF, NUL, ...) become spaces, runs of
/// whitespace collapse, and the text is cut to keep lines well below 998 octets.
fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if c == ' ' && (out.is_empty() || out.ends_with(' ')) {
            continue;
        }
        if out.len() + c.len_utf8() > 900 {
            break;
        }
        out.push(c);
    }
    out.trim_end().to_owned()
}

/// The header of a message: up to (excluding) the empty line, or all of it.
pub fn header_of(message: &[u8]) -> &[u8] {
    let crlf = message.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = message.windows(2).position(|w| w == b"\n\n");
    match (crlf, lf) {
        (Some(a), Some(b)) if b + 1 < a + 2 => &message[..b + 1],
        (Some(a), _) => &message[..a + 2],
        (None, Some(b)) => &message[..b + 1],
        (None, None) => message,
    }
}

/// Normalises bare LF (and bare CR) to CRLF.
fn crlf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 50);
    let mut i = 0;
    while i < data.len() {
        match data[i] {
            b'\r' if data.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 2;
                continue;
            }
            b'\r' | b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

struct Writer<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Writer<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::{MessageParser, MessagePart, MimeHeaders};

    const ORIGINAL: &[u8] = b"Received: from client by mail.example.com\r\n\
        From: Alice <alice@example.com>\r\n\
        To: bob@example.net\r\n\
        Subject: lunch\r\n\
        Message-ID: <orig@example.com>\r\n\
        \r\n\
        Shall we meet at noon?\r\n";

    fn failed(recipient: &str) -> RecipientReport {
        RecipientReport {
            final_recipient: recipient.into(),
            original_recipient: Some(format!("rfc822;{recipient}")),
            action: Action::Failed,
            status: "5.1.1".into(),
            remote_mta: Some("mx.example.net".into()),
            diagnostic: Some("550 5.1.1 <bob@example.net>: Recipient address rejected".into()),
            last_attempt: Some(1_700_000_100),
            will_retry_until: None,
            tls: Some("TLSv1.3 TLS_AES_256_GCM_SHA384, verified (WebPKI), policy verify".into()),
        }
    }

    fn input(recipients: Vec<RecipientReport>, ret: ReturnContent) -> DsnInput<'static> {
        DsnInput {
            reporting_mta: "mail.example.com",
            envelope_sender: "alice@example.com",
            envelope_id: Some("QQ314159"),
            arrival_date: 1_700_000_000,
            recipients,
            original: ORIGINAL,
            ret,
            max_full_size: DEFAULT_MAX_FULL_SIZE,
            now: 1_700_000_200,
        }
    }

    /// The fields of a delivery-status body: per-message group, then per-recipient groups.
    fn groups(body: &str) -> Vec<Vec<(String, String)>> {
        body.split("\r\n\r\n")
            .filter(|g| !g.trim().is_empty())
            .map(|g| {
                g.lines()
                    .filter_map(|l| l.split_once(": "))
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect()
            })
            .collect()
    }

    fn field<'a>(group: &'a [(String, String)], name: &str) -> Option<&'a str> {
        group
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A part's content type and subtype.
    fn mime_type<'a>(part: &'a MessagePart<'_>) -> (&'a str, Option<&'a str>) {
        let ct = part.content_type().expect("a content type");
        (ct.ctype(), ct.subtype())
    }

    #[test]
    fn failure_report_structure() {
        let dsn = build(&input(
            vec![failed("bob@example.net"), failed("carol@example.net")],
            ReturnContent::Headers,
        ))
        .expect("a DSN");
        assert_eq!(dsn.mail_from, "", "DSNs are sent with the null sender");
        assert_eq!(dsn.rcpt_to, "alice@example.com");
        let text = String::from_utf8(dsn.message.clone()).unwrap();
        assert!(
            !text.replace("\r\n", "").contains('\n'),
            "bare LF in {text}"
        );
        assert!(text.lines().all(|l| l.len() < 998));

        let msg = MessageParser::default()
            .parse(&dsn.message)
            .expect("parses");
        let ct = msg.content_type().expect("content type");
        assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("report")));
        assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
        assert_eq!(msg.subject(), Some("Undelivered Mail Returned to Sender"));
        assert_eq!(
            msg.header_raw("Auto-Submitted").map(str::trim),
            Some("auto-replied")
        );
        assert!(msg.message_id().unwrap().ends_with("@mail.example.com"));
        let from = msg.from().unwrap().first().unwrap();
        assert_eq!(from.address(), Some("MAILER-DAEMON@mail.example.com"));

        let parts = msg.root_part().sub_parts().expect("multipart");
        assert_eq!(parts.len(), 3);
        let human = msg.part(parts[0]).unwrap();
        assert_eq!(human.content_type().unwrap().ctype(), "text");
        let human_text = human.text_contents().unwrap();
        assert!(human_text.contains("<bob@example.net> (failed)"));
        assert!(human_text.contains("host mx.example.net said:\r\n    550 5.1.1"));
        assert!(human_text.contains("TLS of the last attempt: TLSv1.3"));

        let status = msg.part(parts[1]).unwrap();
        assert_eq!(mime_type(status), ("message", Some("delivery-status")));
        let body = std::str::from_utf8(status.contents()).unwrap();
        let g = groups(body);
        assert_eq!(g.len(), 3, "{body}");
        for (group, name, value) in [
            (0, "Reporting-MTA", "dns; mail.example.com"),
            (0, "Original-Envelope-Id", "QQ314159"),
            (0, "Arrival-Date", "Tue, 14 Nov 2023 22:13:20 +0000"),
            (1, "Final-Recipient", "rfc822; bob@example.net"),
            (1, "Original-Recipient", "rfc822;bob@example.net"),
            (1, "Action", "failed"),
            (1, "Status", "5.1.1"),
            (1, "Remote-MTA", "dns; mx.example.net"),
            (
                1,
                "Diagnostic-Code",
                "smtp; 550 5.1.1 <bob@example.net>: Recipient address rejected",
            ),
            (1, "Last-Attempt-Date", "Tue, 14 Nov 2023 22:15:00 +0000"),
            (2, "Final-Recipient", "rfc822; carol@example.net"),
        ] {
            assert_eq!(
                field(&g[group], name),
                Some(value),
                "{name} of group {group}"
            );
        }

        let headers = msg.part(parts[2]).unwrap();
        assert_eq!(mime_type(headers), ("text", Some("rfc822-headers")));
        let returned = std::str::from_utf8(headers.contents()).unwrap();
        assert!(returned.contains("Subject: lunch"));
        assert!(!returned.contains("noon"), "RET=HDRS returns no body");
    }

    #[test]
    fn ret_full_returns_the_message_unless_too_large() {
        let dsn = build(&input(vec![failed("bob@example.net")], ReturnContent::Full)).unwrap();
        let msg = MessageParser::default().parse(&dsn.message).unwrap();
        let parts = msg.root_part().sub_parts().unwrap();
        let original = msg.part(parts[2]).unwrap();
        assert_eq!(mime_type(original), ("message", Some("rfc822")));
        let inner = original.message().expect("nested message");
        assert_eq!(inner.subject(), Some("lunch"));
        assert!(inner.body_text(0).unwrap().contains("noon"));

        let mut small = input(vec![failed("bob@example.net")], ReturnContent::Full);
        small.max_full_size = 10;
        let dsn = build(&small).unwrap();
        let msg = MessageParser::default().parse(&dsn.message).unwrap();
        let parts = msg.root_part().sub_parts().unwrap();
        let ct = msg.part(parts[2]).unwrap().content_type().unwrap();
        assert_eq!(ct.subtype(), Some("rfc822-headers"));
    }

    #[test]
    fn never_a_bounce_for_a_bounce() {
        let mut i = input(vec![failed("bob@example.net")], ReturnContent::Headers);
        i.envelope_sender = "";
        assert_eq!(build(&i), None);
        let mut none = input(vec![], ReturnContent::Headers);
        none.envelope_sender = "alice@example.com";
        assert_eq!(build(&none), None);
    }

    #[test]
    fn delayed_report() {
        let mut r = failed("bob@example.net");
        r.action = Action::Delayed;
        r.status = "4.4.1".into();
        r.remote_mta = None;
        r.diagnostic = Some("connection refused by 192.0.2.1:25".into());
        r.will_retry_until = Some(1_700_432_000);
        let dsn = build(&input(vec![r], ReturnContent::Headers)).unwrap();
        let msg = MessageParser::default().parse(&dsn.message).unwrap();
        assert_eq!(msg.subject(), Some("Delayed Mail (still being retried)"));
        let parts = msg.root_part().sub_parts().unwrap();
        let body = std::str::from_utf8(msg.part(parts[1]).unwrap().contents()).unwrap();
        let g = groups(body);
        assert_eq!(field(&g[1], "Action"), Some("delayed"));
        assert_eq!(field(&g[1], "Status"), Some("4.4.1"));
        assert_eq!(field(&g[1], "Remote-MTA"), None);
        assert!(field(&g[1], "Will-Retry-Until").is_some());
        let human = msg.part(parts[0]).unwrap().text_contents().unwrap();
        assert!(human.contains("do not need to send it again"));
    }

    #[test]
    fn hostile_text_cannot_inject_fields() {
        let mut r = failed("bob@example.net");
        r.diagnostic = Some("550 nope\r\nAction: delivered\r\n\r\nX: y".into());
        let dsn = build(&input(vec![r], ReturnContent::Headers)).unwrap();
        let msg = MessageParser::default().parse(&dsn.message).unwrap();
        let parts = msg.root_part().sub_parts().unwrap();
        let body = std::str::from_utf8(msg.part(parts[1]).unwrap().contents()).unwrap();
        let g = groups(body);
        assert_eq!(g.len(), 2, "{body}");
        assert_eq!(field(&g[1], "Action"), Some("failed"));
        assert_eq!(
            field(&g[1], "Diagnostic-Code"),
            Some("smtp; 550 nope Action: delivered X: y")
        );
    }

    #[test]
    fn lines_stay_below_998_octets_whatever_the_input() {
        let long = "x".repeat(5000);
        let r = RecipientReport {
            final_recipient: format!("{long}@example.net"),
            original_recipient: Some(format!("rfc822;{long}")),
            action: Action::Failed,
            status: "5.0.0".into(),
            remote_mta: Some(long.clone()),
            diagnostic: Some(long.clone()),
            last_attempt: None,
            will_retry_until: Some(1_700_000_000),
            tls: Some(long.clone()),
        };
        let mut i = input(vec![r], ReturnContent::Headers);
        let sender = format!("{long}@example.com");
        i.envelope_sender = &sender;
        i.reporting_mta = &long;
        let dsn = build(&i).unwrap();
        let text = String::from_utf8(dsn.message).unwrap();
        for line in text.split("\r\n") {
            assert!(
                line.len() < 998,
                "{} octets: {}...",
                line.len(),
                &line[..60]
            );
        }
    }

    #[test]
    fn international_addresses_use_rfc6533_types() {
        let mut r = failed("jürgen@example.net");
        r.original_recipient = Some("utf-8;jürgen@example.net".into());
        let mut i = input(vec![r], ReturnContent::Headers);
        i.envelope_sender = "zoë@example.com";
        let dsn = build(&i).unwrap();
        let msg = MessageParser::default().parse(&dsn.message).unwrap();
        let parts = msg.root_part().sub_parts().unwrap();
        let ct = msg.part(parts[1]).unwrap().content_type().unwrap();
        assert_eq!(ct.subtype(), Some("global-delivery-status"));
        let body = String::from_utf8_lossy(msg.part(parts[1]).unwrap().contents()).into_owned();
        assert!(
            body.contains("Final-Recipient: utf-8; jürgen@example.net"),
            "{body}"
        );
    }

    #[test]
    fn notify_and_ret_parameters() {
        assert!(notify_wants(None, Action::Failed));
        assert!(notify_wants(None, Action::Delayed));
        assert!(!notify_wants(None, Action::Delivered));
        assert!(!notify_wants(Some("NEVER"), Action::Failed));
        assert!(notify_wants(Some("SUCCESS,FAILURE"), Action::Failed));
        assert!(!notify_wants(Some("SUCCESS,FAILURE"), Action::Delayed));
        assert!(notify_wants(Some("delay"), Action::Delayed));
        assert!(notify_wants(Some("SUCCESS"), Action::Relayed));
        assert_eq!(ReturnContent::from_ret(Some("full")), ReturnContent::Full);
        assert_eq!(
            ReturnContent::from_ret(Some("HDRS")),
            ReturnContent::Headers
        );
        assert_eq!(ReturnContent::from_ret(None), ReturnContent::Headers);
    }

    #[test]
    fn header_extraction_and_line_endings() {
        assert_eq!(header_of(b"A: 1\r\nB: 2\r\n\r\nbody"), b"A: 1\r\nB: 2\r\n");
        assert_eq!(header_of(b"A: 1\nB: 2\n\nbody"), b"A: 1\nB: 2\n");
        assert_eq!(header_of(b"A: 1\r\n"), b"A: 1\r\n");
        assert_eq!(crlf(b"a\nb\r\nc\rd"), b"a\r\nb\r\nc\r\nd");
    }
}
