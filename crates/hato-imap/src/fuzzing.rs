//! Fixtures shared by this crate's tests and the fuzz targets in `fuzz/` (which enable
//! the `fuzzing` feature): one definition each, so that the two exercise the same limits
//! and message parts. Not part of the API.

pub use hato_wire::testing::tls_info;

use crate::command::SectionText;
use crate::framer::{Event, Limits, is_valid_tag};

/// Limits small enough that random input reaches every bound.
pub fn small_limits() -> Limits {
    Limits {
        max_line: 40,
        max_append_literal: 16,
        max_literal: 8,
        max_literals: 3,
        max_command: 60,
        max_depth: 4,
        literal_minus: false,
    }
}

/// Checks what the framer promises of every event under `limits`: a framed command starts
/// with its valid tag and stays within the command and literal-count bounds, an announced
/// literal within the larger literal limit, and an error names only a valid tag.
pub fn check_event(ev: &Event, limits: &Limits) {
    match ev {
        Event::Command(raw) => {
            assert!(is_valid_tag(raw.tag.as_bytes()), "invalid tag framed");
            assert!(raw.bytes.starts_with(raw.tag.as_bytes()));
            assert!(raw.bytes.len() as u64 <= limits.max_command + 2);
            assert!(raw.literals <= limits.max_literals);
        }
        Event::SyncLiteral { tag, size, .. } => {
            assert!(is_valid_tag(tag.as_bytes()));
            assert!(*size <= limits.max_append_literal.max(limits.max_literal));
        }
        Event::Error { tag: Some(t), .. } | Event::Fatal { tag: Some(t), .. } => {
            assert!(is_valid_tag(t.as_bytes()));
        }
        _ => {}
    }
}

/// Part numbers to fetch from arbitrary messages: the whole message, top-level parts,
/// and nested ones (which most messages lack).
pub const SAMPLE_PARTS: [&[u32]; 6] = [&[], &[1], &[2], &[1, 1], &[1, 2, 1], &[3, 1]];

/// Section texts to fetch from each of [`SAMPLE_PARTS`]: every kind, header fields with
/// and without `NOT`.
pub fn sample_section_texts() -> Vec<Option<SectionText>> {
    vec![
        None,
        Some(SectionText::Header),
        Some(SectionText::Text),
        Some(SectionText::Mime),
        Some(SectionText::HeaderFields {
            not: false,
            fields: vec!["Subject".into(), "from".into()],
        }),
        Some(SectionText::HeaderFields {
            not: true,
            fields: vec!["Subject".into()],
        }),
    ]
}
