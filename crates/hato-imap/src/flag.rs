//! Message flags (RFC 9051 §2.3.2, §9 `flag`).

use std::fmt;

/// A message flag as it appears on the wire. System flags are recognised
/// case-insensitively and shown in their canonical spelling.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Flag {
    Seen,
    Answered,
    Flagged,
    Deleted,
    Draft,
    /// `\Recent` (IMAP4rev1 only; never settable by a client).
    Recent,
    /// A keyword (`flag-keyword = atom`), e.g. `$Forwarded`, `$Junk`. Case is kept;
    /// comparisons are the store's business (case-insensitive).
    Keyword(String),
    /// An unknown `\`-flag (`flag-extension`), kept with its backslash, e.g. `\Foo`.
    Extension(String),
}

impl Flag {
    /// Classifies a flag's text (`\Seen`, `$Junk`, ...). The caller has checked the
    /// syntax (an atom, optionally after one backslash).
    pub fn from_wire(s: &str) -> Flag {
        match s.strip_prefix('\\') {
            Some(sys) => match sys.to_ascii_lowercase().as_str() {
                "seen" => Flag::Seen,
                "answered" => Flag::Answered,
                "flagged" => Flag::Flagged,
                "deleted" => Flag::Deleted,
                "draft" => Flag::Draft,
                "recent" => Flag::Recent,
                _ => Flag::Extension(s.to_string()),
            },
            None => Flag::Keyword(s.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Flag::Seen => "\\Seen",
            Flag::Answered => "\\Answered",
            Flag::Flagged => "\\Flagged",
            Flag::Deleted => "\\Deleted",
            Flag::Draft => "\\Draft",
            Flag::Recent => "\\Recent",
            Flag::Keyword(k) => k,
            Flag::Extension(e) => e,
        }
    }

    /// Whether this is a system flag (starts with `\`).
    pub fn is_system(&self) -> bool {
        !matches!(self, Flag::Keyword(_))
    }
}

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify() {
        assert_eq!(Flag::from_wire("\\SEEN"), Flag::Seen);
        assert_eq!(Flag::from_wire("\\seen").to_string(), "\\Seen");
        assert_eq!(Flag::from_wire("\\Recent"), Flag::Recent);
        assert_eq!(
            Flag::from_wire("\\Foo"),
            Flag::Extension("\\Foo".to_string())
        );
        assert_eq!(Flag::from_wire("$Junk"), Flag::Keyword("$Junk".to_string()));
        assert!(Flag::Deleted.is_system());
        assert!(!Flag::Keyword("x".into()).is_system());
    }
}
