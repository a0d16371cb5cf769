//! Backend-neutral rules of the mailbox model: mailbox names (hierarchy, INBOX), special-use
//! attributes and message flags. Every backend validates its input with these functions so that
//! SQLite and PostgreSQL store exactly the same canonical forms; the IMAP server may call them
//! too, to reject bad input before it reaches the store.

use crate::{Result, StoreError};

/// The hierarchy delimiter of mailbox names (RFC 9051 5.1.2; LIST answers with it).
pub const HIERARCHY_DELIMITER: char = '/';
/// Longest mailbox name, in bytes of UTF-8.
pub const MAX_MAILBOX_NAME: usize = 1000;
/// Longest level of a mailbox name (between delimiters), in bytes of UTF-8.
pub const MAX_MAILBOX_NAME_LEVEL: usize = 255;
/// Most mailboxes one account may have (including the default ones and created parents).
pub const MAX_MAILBOXES: usize = 10_000;
/// Most keywords (flags that are not system flags) one message may carry.
pub const MAX_KEYWORDS: usize = 100;
/// Longest keyword, in bytes.
pub const MAX_KEYWORD_LEN: usize = 255;

/// The system flags the store keeps (RFC 9051 2.3.2), in their canonical spelling and in the
/// order they are stored and returned. `\Recent` is not stored: IMAP4rev2 dropped it and an
/// IMAP4rev1 server derives it per session.
pub const SYSTEM_FLAGS: [&str; 5] = ["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"];

/// The RFC 6154 special-use attributes a mailbox may carry. `\All` and `\Flagged` (virtual
/// mailboxes) are not accepted: the store has no virtual mailboxes.
pub const SPECIAL_USES: [&str; 5] = ["\\Archive", "\\Drafts", "\\Junk", "\\Sent", "\\Trash"];

/// The canonical form of a mailbox name, or [`StoreError::Invalid`].
///
/// * Levels are separated by [`HIERARCHY_DELIMITER`]; no empty level (no leading, trailing or
///   doubled delimiter).
/// * A first level equal to `INBOX` in any case is written `INBOX` (RFC 9051 5.1: INBOX is
///   case-insensitive), so `inbox/Lists` is `INBOX/Lists`. Every other level is case-sensitive.
/// * No control characters, no `*` or `%` (the LIST wildcards), at most [`MAX_MAILBOX_NAME`]
///   bytes and [`MAX_MAILBOX_NAME_LEVEL`] bytes per level.
///
/// Names are Unicode (IMAP4rev2 uses UTF-8; an IMAP4rev1 server converts from modified UTF-7
/// before calling the store).
pub fn canonical_mailbox_name(name: &str) -> Result<String> {
    let invalid = |why: &str| Err(StoreError::Invalid(format!("mailbox name {name:?}: {why}")));
    if name.is_empty() {
        return invalid("empty");
    }
    if name.len() > MAX_MAILBOX_NAME {
        return invalid("too long");
    }
    if let Some(c) = name
        .chars()
        .find(|&c| c.is_control() || c == '*' || c == '%')
    {
        return invalid(&format!("contains {c:?}"));
    }
    let mut canonical = String::with_capacity(name.len());
    for (i, level) in name.split(HIERARCHY_DELIMITER).enumerate() {
        if level.is_empty() {
            return invalid("empty hierarchy level");
        }
        if level.len() > MAX_MAILBOX_NAME_LEVEL {
            return invalid("hierarchy level too long");
        }
        if i == 0 {
            if level.eq_ignore_ascii_case("INBOX") {
                canonical.push_str("INBOX");
                continue;
            }
        } else {
            canonical.push(HIERARCHY_DELIMITER);
        }
        canonical.push_str(level);
    }
    Ok(canonical)
}

/// Whether a canonical name is INBOX itself (not one of its children).
pub fn is_inbox(canonical: &str) -> bool {
    canonical == "INBOX"
}

/// The superior names of a canonical name, outermost first: `a/b/c` → `a`, `a/b`.
pub fn parent_names(canonical: &str) -> impl Iterator<Item = &str> {
    canonical
        .match_indices(HIERARCHY_DELIMITER)
        .map(move |(i, _)| &canonical[..i])
}

/// Whether `name` is `ancestor` itself or below it in the hierarchy.
pub fn is_same_or_below(name: &str, ancestor: &str) -> bool {
    name == ancestor
        || (name.len() > ancestor.len()
            && name.starts_with(ancestor)
            && name[ancestor.len()..].starts_with(HIERARCHY_DELIMITER))
}

/// The canonical spelling of an RFC 6154 special-use attribute (matched case-insensitively
/// against [`SPECIAL_USES`]), or [`StoreError::Invalid`].
pub fn canonical_special_use(attribute: &str) -> Result<&'static str> {
    SPECIAL_USES
        .iter()
        .copied()
        .find(|known| known.eq_ignore_ascii_case(attribute))
        .ok_or_else(|| StoreError::Invalid(format!("unknown special-use attribute {attribute:?}")))
}

/// A message's flags: a set of system flags plus keywords.
///
/// Normalised: system flags in canonical spelling and [`SYSTEM_FLAGS`] order, then keywords
/// sorted case-insensitively. Keywords keep the spelling they were first set with and are
/// unique case-insensitively (RFC 9051: flags are case-insensitive), so adding `$label1` to a
/// message with `$Label1` changes nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlagSet {
    /// Bit `i` set: `SYSTEM_FLAGS[i]` present.
    system: u8,
    /// Sorted by ASCII-lower-case; unique case-insensitively.
    keywords: Vec<String>,
}

impl FlagSet {
    /// Validates and normalises flags given by a client: system flags in any case (`\seen`),
    /// keywords as IMAP atoms (printable ASCII without `(){%*"\]` and space). `\Recent` and
    /// unknown `\` flags are [`StoreError::Invalid`]; more than [`MAX_KEYWORDS`] distinct
    /// keywords or a keyword longer than [`MAX_KEYWORD_LEN`] is [`StoreError::Limit`].
    /// Duplicates (in any case) are dropped, the first spelling wins.
    pub fn parse<S: AsRef<str>>(flags: &[S]) -> Result<FlagSet> {
        let mut set = FlagSet::default();
        for flag in flags {
            let flag = flag.as_ref();
            if let Some(index) = system_flag_index(flag) {
                set.system |= 1 << index;
            } else if flag.starts_with('\\') {
                return Err(StoreError::Invalid(format!(
                    "flag {flag:?} cannot be stored"
                )));
            } else {
                check_keyword(flag)?;
                set.insert_keyword(flag);
            }
        }
        set.check_limits()?;
        Ok(set)
    }

    /// Reads flags as stored by a backend (space separated, as [`FlagSet::to_stored`] wrote
    /// them). Lenient: anything unexpected is skipped rather than failing a read.
    pub fn from_stored(stored: &str) -> FlagSet {
        let mut set = FlagSet::default();
        for flag in stored.split_ascii_whitespace() {
            if let Some(index) = system_flag_index(flag) {
                set.system |= 1 << index;
            } else if !flag.starts_with('\\') {
                set.insert_keyword(flag);
            }
        }
        set
    }

    /// The stored form: canonical flags separated by one space.
    pub fn to_stored(&self) -> String {
        self.iter().collect::<Vec<_>>().join(" ")
    }

    /// The flags in canonical order.
    pub fn to_vec(&self) -> Vec<String> {
        self.iter().map(str::to_owned).collect()
    }

    /// The flags in canonical order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        SYSTEM_FLAGS
            .iter()
            .enumerate()
            .filter(|(i, _)| self.system & (1 << i) != 0)
            .map(|(_, f)| *f)
            .chain(self.keywords.iter().map(String::as_str))
    }

    pub fn is_empty(&self) -> bool {
        self.system == 0 && self.keywords.is_empty()
    }

    /// Whether the set holds `flag` (case-insensitively).
    pub fn contains(&self, flag: &str) -> bool {
        match system_flag_index(flag) {
            Some(index) => self.system & (1 << index) != 0,
            None => self.keyword_position(flag).is_ok(),
        }
    }

    /// Same flags, ignoring the spelling of keywords.
    pub fn same_flags(&self, other: &FlagSet) -> bool {
        self.system == other.system
            && self.keywords.len() == other.keywords.len()
            && self
                .keywords
                .iter()
                .zip(&other.keywords)
                .all(|(a, b)| a.eq_ignore_ascii_case(b))
    }

    /// `self` plus `other`; keywords already present keep their spelling. Fails with
    /// [`StoreError::Limit`] when the result would exceed [`MAX_KEYWORDS`].
    pub fn union(&self, other: &FlagSet) -> Result<FlagSet> {
        let mut result = self.clone();
        result.system |= other.system;
        for keyword in &other.keywords {
            result.insert_keyword(keyword);
        }
        result.check_limits()?;
        Ok(result)
    }

    /// `self` without the flags of `other` (compared case-insensitively).
    pub fn difference(&self, other: &FlagSet) -> FlagSet {
        FlagSet {
            system: self.system & !other.system,
            keywords: self
                .keywords
                .iter()
                .filter(|k| other.keyword_position(k).is_err())
                .cloned()
                .collect(),
        }
    }

    fn keyword_position(&self, keyword: &str) -> std::result::Result<usize, usize> {
        self.keywords
            .binary_search_by(|k| cmp_ignore_ascii_case(k, keyword))
    }

    fn insert_keyword(&mut self, keyword: &str) {
        if let Err(at) = self.keyword_position(keyword) {
            self.keywords.insert(at, keyword.to_owned());
        }
    }

    fn check_limits(&self) -> Result<()> {
        if self.keywords.len() > MAX_KEYWORDS {
            return Err(StoreError::Limit(format!(
                "more than {MAX_KEYWORDS} keywords on one message"
            )));
        }
        Ok(())
    }
}

fn system_flag_index(flag: &str) -> Option<usize> {
    SYSTEM_FLAGS
        .iter()
        .position(|known| known.eq_ignore_ascii_case(flag))
}

fn cmp_ignore_ascii_case(a: &str, b: &str) -> std::cmp::Ordering {
    a.bytes()
        .map(|c| c.to_ascii_lowercase())
        .cmp(b.bytes().map(|c| c.to_ascii_lowercase()))
}

/// A keyword must be an IMAP atom (RFC 9051 `flag-keyword`).
fn check_keyword(keyword: &str) -> Result<()> {
    if keyword.is_empty() {
        return Err(StoreError::Invalid("empty flag".into()));
    }
    if keyword.len() > MAX_KEYWORD_LEN {
        return Err(StoreError::Limit(format!(
            "keyword longer than {MAX_KEYWORD_LEN} bytes"
        )));
    }
    let atom_char = |b: u8| (0x21..=0x7e).contains(&b) && !b"(){%*\"\\]".contains(&b);
    if !keyword.bytes().all(atom_char) {
        return Err(StoreError::Invalid(format!(
            "flag {keyword:?} is not an IMAP atom"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(canonical_mailbox_name("inbox").unwrap(), "INBOX");
        assert_eq!(
            canonical_mailbox_name("iNbOx/Lists").unwrap(),
            "INBOX/Lists"
        );
        assert_eq!(canonical_mailbox_name("Inboxes").unwrap(), "Inboxes");
        assert_eq!(canonical_mailbox_name("a/inbox").unwrap(), "a/inbox");
        assert_eq!(canonical_mailbox_name("Sent Items").unwrap(), "Sent Items");
        assert_eq!(
            canonical_mailbox_name("Ünïcode/日本").unwrap(),
            "Ünïcode/日本"
        );
        for bad in [
            "", "/", "/a", "a/", "a//b", "a*", "a%b", "a\r\nb", "a\0", "a\u{7f}",
        ] {
            assert!(
                matches!(canonical_mailbox_name(bad), Err(StoreError::Invalid(_))),
                "{bad:?}"
            );
        }
        assert!(canonical_mailbox_name(&"x".repeat(255)).is_ok());
        assert!(canonical_mailbox_name(&"x".repeat(256)).is_err());
        assert!(canonical_mailbox_name(&"x/".repeat(500)).is_err());
    }

    #[test]
    fn hierarchy() {
        assert_eq!(parent_names("a/b/c").collect::<Vec<_>>(), ["a", "a/b"]);
        assert_eq!(parent_names("a").count(), 0);
        assert!(is_same_or_below("a/b", "a"));
        assert!(is_same_or_below("a", "a"));
        assert!(!is_same_or_below("ab", "a"));
        assert!(!is_same_or_below("a", "a/b"));
    }

    #[test]
    fn special_use() {
        assert_eq!(canonical_special_use("\\sent").unwrap(), "\\Sent");
        assert!(canonical_special_use("\\All").is_err());
        assert!(canonical_special_use("Sent").is_err());
    }

    #[test]
    fn flags_normalise() {
        let set = FlagSet::parse(&[
            "$Label1",
            "\\seen",
            "\\ANSWERED",
            "$label1",
            "Junk",
            "\\Seen",
        ])
        .unwrap();
        // Keywords sort case-insensitively: '$' < 'J'.
        assert_eq!(
            set.to_vec(),
            ["\\Answered", "\\Seen", "$Label1", "Junk"].map(String::from)
        );
        assert_eq!(set.to_stored(), "\\Answered \\Seen $Label1 Junk");
        assert_eq!(FlagSet::from_stored(&set.to_stored()), set);
        assert!(set.contains("\\SEEN") && set.contains("$LABEL1") && !set.contains("\\Deleted"));
        assert!(FlagSet::parse::<&str>(&[]).unwrap().is_empty());
    }

    #[test]
    fn flags_order_is_canonical() {
        let set = FlagSet::parse(&["b", "\\Draft", "A", "\\Flagged", "c"]).unwrap();
        assert_eq!(set.to_stored(), "\\Flagged \\Draft A b c");
    }

    #[test]
    fn flags_reject() {
        for bad in [
            "\\Recent", "\\Foo", "", "a b", "(x", "x]", "a\"b", "ä", "x%", "a\\b",
        ] {
            assert!(
                matches!(FlagSet::parse(&[bad]), Err(StoreError::Invalid(_))),
                "{bad:?}"
            );
        }
        let long = "k".repeat(MAX_KEYWORD_LEN + 1);
        assert!(matches!(FlagSet::parse(&[long]), Err(StoreError::Limit(_))));
        let many: Vec<String> = (0..=MAX_KEYWORDS).map(|i| format!("k{i}")).collect();
        assert!(matches!(FlagSet::parse(&many), Err(StoreError::Limit(_))));
        assert!(FlagSet::parse(&many[..MAX_KEYWORDS]).is_ok());
    }

    #[test]
    fn flag_set_operations() {
        let a = FlagSet::parse(&["\\Seen", "$Work"]).unwrap();
        let b = FlagSet::parse(&["$WORK", "\\Flagged", "todo"]).unwrap();
        let u = a.union(&b).unwrap();
        assert_eq!(u.to_stored(), "\\Flagged \\Seen $Work todo");
        assert_eq!(u.difference(&b).to_stored(), "\\Seen");
        assert!(a.same_flags(&FlagSet::parse(&["$work", "\\SEEN"]).unwrap()));
        assert!(!a.same_flags(&b));
        let many: Vec<String> = (0..MAX_KEYWORDS).map(|i| format!("k{i}")).collect();
        let full = FlagSet::parse(&many).unwrap();
        assert!(matches!(full.union(&b), Err(StoreError::Limit(_))));
        assert!(
            full.union(&FlagSet::parse(&["K1", "\\Seen"]).unwrap())
                .is_ok()
        );
    }
}
