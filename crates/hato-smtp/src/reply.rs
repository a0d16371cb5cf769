//! SMTP replies: RFC 5321 §4.2 (reply syntax, multi-line replies) with enhanced
//! status codes (RFC 3463, negotiated per RFC 2034).
//!
//! A [`Reply`] is a three-digit code, an optional enhanced status code and a text.
//! The text may contain several lines separated by `'\n'`; [`Reply::to_bytes`] renders
//! them as a multi-line reply (`250-...` continuation lines, `250 ...` last line) and
//! repeats the enhanced status code on *every* line, as RFC 2034 §4 requires.
//!
//! RFC 2034 §3 exempts the greeting and the replies to HELO/EHLO from carrying an
//! enhanced status code (EHLO lines are keywords a client parses); 334 and 354 have no
//! enhanced code class at all. Those replies use [`Reply::without_status`].

use std::fmt;

/// One SMTP reply (possibly multi-line).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reply {
    /// Three-digit reply code (RFC 5321 §4.2), e.g. `250`.
    pub code: u16,
    /// Enhanced status code `class.subject.detail` (RFC 3463), e.g. `(2, 0, 0)`.
    ///
    /// When rendered, the class digit is forced to agree with the reply code's first
    /// digit (RFC 3463 §2: they must match); replies whose code is not 2xx/4xx/5xx
    /// are rendered without an enhanced code.
    pub status: Option<(u8, u16, u16)>,
    /// Reply text. Lines are separated by `'\n'`; any `'\r'` and other control
    /// characters are stripped when rendering so that a reply can never inject an
    /// extra protocol line.
    pub text: String,
}

impl Reply {
    /// A reply with an enhanced status code.
    pub fn new(code: u16, status: (u8, u16, u16), text: impl Into<String>) -> Reply {
        Reply {
            code,
            status: Some(status),
            text: text.into(),
        }
    }

    /// A reply without an enhanced status code (greeting, HELO/EHLO, 334, 354).
    pub fn without_status(code: u16, text: impl Into<String>) -> Reply {
        Reply {
            code,
            status: None,
            text: text.into(),
        }
    }

    /// 2xx: positive completion.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 4xx: transient negative completion.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5xx: permanent negative completion.
    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }

    /// The enhanced status code as it will be rendered (class fixed up to match the
    /// reply code), or `None`.
    fn rendered_status(&self) -> Option<(u8, u16, u16)> {
        let (_, subject, detail) = self.status?;
        let class = match self.code / 100 {
            2 => 2,
            4 => 4,
            5 => 5,
            _ => return None,
        };
        Some((class, subject, detail))
    }

    /// Wire form: `"250-first\r\n250 2.0.0 last\r\n"` (every line CRLF-terminated,
    /// enhanced status code on every line).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }
}

impl fmt::Display for Reply {
    /// Same as [`Reply::to_bytes`], as a string.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = self.code.min(999);
        let status = self.rendered_status();
        let lines: Vec<&str> = self.text.split('\n').collect();
        let last = lines.len() - 1;
        for (i, line) in lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            write!(f, "{code:03}{sep}")?;
            let clean: String = line.chars().filter(|c| !c.is_control()).collect();
            match status {
                Some((c, s, d)) => {
                    write!(f, "{c}.{s}.{d}")?;
                    if !clean.is_empty() {
                        write!(f, " {clean}")?;
                    }
                }
                None => f.write_str(&clean)?,
            }
            f.write_str("\r\n")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_line() {
        let r = Reply::new(250, (2, 0, 0), "Ok");
        assert_eq!(r.to_bytes(), b"250 2.0.0 Ok\r\n");
    }

    #[test]
    fn multi_line_has_status_on_every_line() {
        let r = Reply::new(550, (5, 7, 1), "first\nsecond\nthird");
        assert_eq!(
            r.to_string(),
            "550-5.7.1 first\r\n550-5.7.1 second\r\n550 5.7.1 third\r\n"
        );
    }

    #[test]
    fn without_status() {
        let r = Reply::without_status(220, "mx.example ESMTP hato");
        assert_eq!(r.to_string(), "220 mx.example ESMTP hato\r\n");
        let r = Reply::without_status(250, "mx.example\nPIPELINING\nCHUNKING");
        assert_eq!(
            r.to_string(),
            "250-mx.example\r\n250-PIPELINING\r\n250 CHUNKING\r\n"
        );
    }

    #[test]
    fn empty_text() {
        assert_eq!(Reply::new(250, (2, 0, 0), "").to_string(), "250 2.0.0\r\n");
        assert_eq!(Reply::without_status(334, "").to_string(), "334 \r\n");
    }

    #[test]
    fn control_characters_cannot_inject_lines() {
        let r = Reply::new(550, (5, 1, 1), "bad\r\n250 2.0.0 fake\x00\x1b");
        assert_eq!(
            r.to_string(),
            "550-5.1.1 bad\r\n550 5.1.1 250 2.0.0 fake\r\n"
        );
    }

    #[test]
    fn status_class_follows_code() {
        let r = Reply::new(451, (5, 3, 0), "x");
        assert_eq!(r.to_string(), "451 4.3.0 x\r\n");
        let r = Reply::new(354, (2, 0, 0), "go");
        assert_eq!(r.to_string(), "354 go\r\n");
    }

    #[test]
    fn classification() {
        assert!(Reply::new(250, (2, 0, 0), "").is_positive());
        assert!(Reply::new(452, (4, 5, 3), "").is_transient());
        assert!(Reply::new(554, (5, 5, 0), "").is_permanent());
        assert!(!Reply::new(354, (2, 0, 0), "").is_permanent());
    }
}
