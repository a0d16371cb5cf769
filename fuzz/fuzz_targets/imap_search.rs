//! IMAP SEARCH evaluation (`hato_imap::search`): the same verdict along every path.
//!
//! Input: `[flags, date, <search keys>\n<message>]`. The first line is parsed as
//! `a SEARCH <keys>` (`a UID SEARCH` with `flags` bit 7) and compiled against a view of
//! three messages (UIDs 1, 4, 9 with assorted flags); the message is UID 4, with the
//! flags of `flags` bits 0-5 and an INTERNALDATE from `date`.
//!
//! The driver may take several shortcuts the module documents as giving the same answer:
//! phase one (metadata only) when it decides; the header block instead of the message when
//! `needs_headers_only`; cached `header_fields` instead of the message when
//! `header_keys_only`; raw bytes (`matches_raw`) or a parsed message (`matches_message`).
//! Checked: no panic, and all of these agree.
#![no_main]

use hato_imap::command::CommandBody;
use hato_imap::flag::Flag;
use hato_imap::search::header_fields;
use hato_imap::view::{Snapshot, ViewMessage};
use hato_imap::{
    Enabled, MessageMeta, ParseOptions, ParsedMessage, Search, SelectedView, Verdict, parse_command,
};
use libfuzzer_sys::fuzz_target;

/// 2024-01-01T00:00:00Z.
const JAN1: i64 = 1_704_067_200;

fn flags_of(bits: u8) -> Vec<Flag> {
    let mut f = Vec::new();
    for (bit, flag) in [
        Flag::Seen,
        Flag::Answered,
        Flag::Flagged,
        Flag::Deleted,
        Flag::Draft,
        Flag::Keyword("$Junk".into()),
    ]
    .into_iter()
    .enumerate()
    {
        if bits & (1 << bit) != 0 {
            f.push(flag);
        }
    }
    f
}

fuzz_target!(|data: &[u8]| {
    let Some((&[bits, date], rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let (keys, raw) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &b""[..]),
    };
    let mut line = if bits & 128 != 0 {
        b"a UID SEARCH ".to_vec()
    } else {
        b"a SEARCH ".to_vec()
    };
    line.extend_from_slice(keys);
    let utf8 = bits & 64 != 0;
    let Ok(cmd) = parse_command(
        &line,
        &ParseOptions {
            utf8,
            max_depth: 32,
        },
    ) else {
        return;
    };
    let CommandBody::Search(sc) = &cmd.body else {
        return;
    };
    let flags = flags_of(bits);
    let view = SelectedView::new(Snapshot {
        uidvalidity: 1,
        uidnext: 10,
        highest_modseq: 30,
        messages: vec![
            ViewMessage {
                uid: 1,
                flags: vec![Flag::Seen],
                modseq: 5,
            },
            ViewMessage {
                uid: 4,
                flags: flags.clone(),
                modseq: 17,
            },
            ViewMessage {
                uid: 9,
                flags: vec![],
                modseq: 30,
            },
        ],
    });
    let enabled = Enabled {
        imap4rev2: utf8,
        condstore: true,
        qresync: false,
    };
    let now = JAN1 + 40 * 86_400;
    let Ok(mut search) = Search::new(sc, &view, enabled, now) else {
        return;
    };
    let meta = MessageMeta {
        seq: 2,
        uid: 4,
        flags: &flags,
        modseq: 17,
        size: raw.len() as u64,
        internal_date: JAN1 + i64::from(date) * 86_400 / 4,
        recent: bits & 32 != 0,
    };
    let program = search.program().clone();
    let full = program.matches_raw(&meta, raw);
    let parsed = ParsedMessage::parse(raw);
    assert_eq!(
        program.matches_message(&meta, &parsed),
        full,
        "matches_message and matches_raw disagree"
    );
    match program.prefilter(&meta) {
        Verdict::Match => assert!(full, "phase one matched, the message does not"),
        Verdict::NoMatch => assert!(!full, "phase one refused, the message matches"),
        Verdict::NeedsMessage => assert!(
            program.needs_content() || program.needs_headers_only(),
            "phase one undecided, but no key reads the message"
        ),
    }
    if program.needs_headers_only() {
        assert_eq!(
            program.matches_raw(&meta, parsed.header()),
            full,
            "the header block gives another verdict than the message"
        );
    }
    if program.header_keys_only() {
        assert_eq!(
            search.check_fields(&meta, &header_fields(raw)),
            full,
            "header_fields give another verdict than the message"
        );
    }
});
