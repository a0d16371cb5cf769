//! Generation of the RFC 5322 test messages.

use std::time::SystemTime;

use crate::common::{XorShift, rfc5322_date};

/// Longest body line, excluding CRLF (RFC 5322 recommends at most 78).
const LINE_WIDTH: usize = 72;

const WORDS: &[&str] = &[
    "mail",
    "server",
    "queue",
    "latency",
    "throughput",
    "delivery",
    "message",
    "secure",
    "default",
    "rust",
    "tokio",
    "storage",
    "durable",
    "fsync",
    "envelope",
    "header",
    "benchmark",
    "transaction",
    "mailbox",
    "recipient",
    "sender",
    "submission",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "the",
    "lazy",
    "dog",
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
    "0",
    "1",
    "42",
    "1024",
    "2026",
    "and",
    "or",
    "with",
    "without",
    "a",
    "an",
    "of",
];

/// Everything that is the same in all messages of a run; renders message `n` on demand.
pub struct MessageTemplate {
    from: String,
    to_header: String,
    id_prefix: String,
    id_domain: String,
    /// Dot-stuffed body, CRLF line endings, ends with CRLF.
    body: Vec<u8>,
}

impl MessageTemplate {
    /// Prepares messages of roughly `total_size` bytes (headers included).
    pub fn new(from: &str, to: &[String], total_size: usize, run_id: &str) -> Self {
        let id_domain = from
            .rsplit_once('@')
            .map(|(_, d)| d)
            .filter(|d| !d.is_empty())
            .unwrap_or("hato-load.invalid")
            .to_owned();
        let mut tmpl = MessageTemplate {
            from: from.to_owned(),
            to_header: to.join(",\r\n "),
            id_prefix: format!("hato-load.{run_id}"),
            id_domain,
            body: Vec::new(),
        };
        // Size the body so that header + body of a typical message is about total_size.
        let mut sample = Vec::new();
        tmpl.render(999_999, &mut sample);
        let header_len = sample.len() - b".\r\n".len();
        tmpl.body = generate_body(total_size.saturating_sub(header_len));
        tmpl
    }

    /// Renders message `n` as DATA payload: dot-stuffed, terminated by `.\r\n`.
    pub fn render(&self, n: u64, out: &mut Vec<u8>) {
        out.clear();
        let header = format!(
            "Date: {date}\r\n\
             From: <{from}>\r\n\
             To: {to}\r\n\
             Subject: hato-load test message {n}\r\n\
             Message-ID: <{prefix}.{n}@{domain}>\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: text/plain; charset=us-ascii\r\n\
             \r\n",
            date = rfc5322_date(SystemTime::now()),
            from = self.from,
            to = self.to_header,
            prefix = self.id_prefix,
            domain = self.id_domain,
        );
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(&self.body);
        out.extend_from_slice(b".\r\n");
    }
}

/// Formats the To: header value: every recipient in angle brackets.
pub fn to_header_list(to: &[String]) -> Vec<String> {
    to.iter().map(|a| format!("<{a}>")).collect()
}

/// Printable US-ASCII text lines of at most [`LINE_WIDTH`] characters, `len` bytes in all
/// (at least one short line). No line starts with '.', so no dot-stuffing is needed; this
/// is asserted rather than assumed.
fn generate_body(len: usize) -> Vec<u8> {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut body = Vec::with_capacity(len + LINE_WIDTH);
    let mut line = String::with_capacity(LINE_WIDTH);
    while body.len() + 3 <= len.max(3) {
        let room = len.max(3) - body.len() - 2; // bytes left for this line's text
        let width = room.min(LINE_WIDTH);
        line.clear();
        loop {
            let word = WORDS[(rng.next() % WORDS.len() as u64) as usize];
            let extra = word.len() + usize::from(!line.is_empty());
            if line.len() + extra > width {
                break;
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        if line.is_empty() {
            // Less room than the shortest word: pad with letters.
            line.extend(std::iter::repeat_n('x', width.max(1)));
        }
        body.extend_from_slice(line.as_bytes());
        body.extend_from_slice(b"\r\n");
    }
    debug_assert!(!body.starts_with(b".") && !body.windows(3).any(|w| w == b"\n.".as_slice()));
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_lines() {
        for size in [0, 10, 100, 4096, 100_000] {
            let t = MessageTemplate::new("a@example.test", &["<b@example.test>".into()], size, "x");
            let mut m = Vec::new();
            t.render(1, &mut m);
            let text = std::str::from_utf8(&m).unwrap();
            assert!(text.ends_with("\r\n.\r\n"));
            for line in text.split("\r\n") {
                assert!(line.len() <= 78, "{line:?}");
                assert!(line.bytes().all(|b| (b' '..=b'~').contains(&b)));
            }
            if size >= 1000 {
                let diff = (m.len() as i64 - 3 - size as i64).abs();
                assert!(diff < 16, "size {size}: got {}", m.len());
            }
        }
    }
}
