//! IMAP message structure: `hato_imap::ParsedMessage` (ENVELOPE, BODYSTRUCTURE, sections,
//! BINARY, SEARCH texts) on arbitrary messages.
//!
//! Input: `<fetch items>\n<message>`. The first line is parsed as the item list of a
//! `FETCH 1 (...)` command (so the fuzzer explores section specifiers and partials); when
//! it does not parse, a fixed set of items is used. Each item is fetched with
//! `ParsedMessage::fetch_item` (with and without UTF-8), and the FETCH response is encoded.
//!
//! Checked: no panic; `BODY[]`/`BINARY[]` are the message itself; `BINARY.SIZE` is the
//! length of `BINARY`; a partial is a slice of the full section; and every encoded FETCH
//! response frames (with hato's own framer) as exactly one command whose bytes are the
//! response: no stored value can break the response's line structure or its literals.
#![no_main]

use hato_imap::command::{CommandBody, FetchAttr, Section};
use hato_imap::fuzzing::{SAMPLE_PARTS, sample_section_texts};
use hato_imap::response::FetchValue;
use hato_imap::{
    Data, EncodeOptions, Event, Framer, Limits, ParseOptions, ParsedMessage, Response,
    parse_command,
};
use libfuzzer_sys::fuzz_target;

fn default_items() -> Vec<FetchAttr> {
    let mut items = vec![
        FetchAttr::Envelope,
        FetchAttr::Body,
        FetchAttr::BodyStructure,
        FetchAttr::Rfc822,
        FetchAttr::Rfc822Header,
        FetchAttr::Rfc822Text,
    ];
    for part in SAMPLE_PARTS {
        for text in sample_section_texts() {
            items.push(FetchAttr::BodySection {
                peek: true,
                section: Section {
                    part: part.to_vec(),
                    text,
                },
                partial: None,
            });
        }
        items.push(FetchAttr::Binary {
            peek: true,
            part: part.to_vec(),
            partial: None,
        });
        items.push(FetchAttr::BinarySize {
            part: part.to_vec(),
        });
    }
    items
}

/// The encoded response must be one well-framed line (literals included).
fn check_framing(response: &[u8]) {
    let body = response
        .strip_prefix(b"* ")
        .expect("FETCH response is untagged");
    let mut line = b"x ".to_vec();
    line.extend_from_slice(body);
    let mut f = Framer::new(Limits {
        max_line: usize::MAX,
        max_append_literal: u64::MAX >> 1,
        max_literal: u64::MAX >> 1,
        max_literals: usize::MAX,
        max_command: u64::MAX >> 1,
        max_depth: 10_000,
        literal_minus: false,
    });
    f.feed(&line);
    let mut events = Vec::new();
    while let Some(ev) = f.next_event() {
        if matches!(ev, Event::SyncLiteral { .. }) {
            f.accept_literal();
            continue;
        }
        events.push(ev);
    }
    match events.as_slice() {
        [Event::Command(raw)] => {
            assert_eq!(
                raw.bytes,
                line[..line.len() - 2],
                "response framed differently"
            );
        }
        other => panic!(
            "response does not frame as one line: {other:?} {:?}",
            String::from_utf8_lossy(response)
        ),
    }
    assert_eq!(f.buffered(), 0, "bytes after the response's end");
}

fuzz_target!(|data: &[u8]| {
    let (first, raw) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b""[..], data),
    };
    let mut cmd = b"a FETCH 1 (".to_vec();
    cmd.extend_from_slice(first);
    cmd.push(b')');
    let items = match parse_command(&cmd, &ParseOptions::default()) {
        Ok(c) => match c.body {
            CommandBody::Fetch(f) => f.items,
            _ => default_items(),
        },
        Err(_) => default_items(),
    };

    let m = ParsedMessage::parse(raw);
    assert!(raw.starts_with(m.header()));
    for t in m.texts() {
        let _ = t.len();
    }
    for utf8 in [false, true] {
        for item in &items {
            // Only ENVELOPE and BODYSTRUCTURE depend on UTF-8 (and on the encoding of their
            // strings); the rest is fetched once.
            let structural = matches!(
                item,
                FetchAttr::Envelope | FetchAttr::Body | FetchAttr::BodyStructure
            );
            if utf8 && !structural {
                continue;
            }
            let Some(v) = m.fetch_item(item, utf8) else {
                continue;
            };
            let Ok(v) = v else { continue };
            match (&v, item) {
                (
                    FetchValue::BodySection {
                        data: Some(d),
                        section,
                        ..
                    },
                    FetchAttr::BodySection { partial, .. },
                ) => {
                    if *section == Section::default() && partial.is_none() {
                        assert_eq!(d.as_slice(), raw, "BODY[] is not the message");
                    }
                    if partial.is_some() {
                        let full = m.section(section).expect("partial of a missing section");
                        assert!(full.windows(d.len().max(1)).any(|w| w == &d[..]) || d.is_empty());
                    }
                }
                (
                    FetchValue::Binary {
                        data: Some(d),
                        part,
                        ..
                    },
                    FetchAttr::Binary { partial, .. },
                ) => {
                    if part.is_empty() && partial.is_none() {
                        assert_eq!(d.as_slice(), raw, "BINARY[] is not the message");
                    }
                    if partial.is_none() {
                        let size = m.binary_size(part).unwrap().unwrap();
                        assert_eq!(size, d.len() as u64, "BINARY.SIZE differs from BINARY");
                    }
                }
                _ => {}
            }
            let r = Response::Data(Data::Fetch {
                seq: 1,
                items: vec![v],
            });
            check_framing(&r.to_bytes(EncodeOptions { utf8 }));
        }
    }
});
