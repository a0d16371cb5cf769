use std::cell::Cell;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::*;
use crate::command::CommandBody;
use crate::encode::EncodeOptions;
use crate::parse::{ParseOptions, parse_command};
use crate::view::{Changes, Moment, Snapshot, Update, ViewMessage};

/// 2024-01-01T00:00:00Z.
const JAN1: i64 = 1_704_067_200;
const DAY: i64 = 86_400;

#[derive(Clone, Debug)]
struct Msg {
    uid: u32,
    flags: Vec<Flag>,
    modseq: u64,
    internal_date: i64,
    raw: Vec<u8>,
}

fn crlf(s: &str) -> Vec<u8> {
    s.replace('\n', "\r\n").into_bytes()
}

/// The fixture mailbox: five messages (UIDs 1 2 3 5 7), the last one recent.
fn fixture() -> Vec<Msg> {
    let m1 = crlf(
        "From: Alice Example <alice@example.com>\n\
         To: bob@example.org\n\
         Subject: Hello world\n\
         Date: Mon, 1 Jan 2024 10:00:00 +0000\n\
         Message-ID: <1@example.com>\n\
         \n\
         The quick brown fox\njumps over the lazy dog.\n",
    );
    let body2 = BASE64.encode("Ünïcödé body with the secret word ZEBRA\r\n".as_bytes());
    let m2 = crlf(&format!(
        "From: =?ISO-8859-1?Q?J=F6rg?= <jorg@example.de>\n\
         To: bob@example.org\n\
         Cc: Carol <carol@example.com>\n\
         Subject: =?UTF-8?B?{}?=\n\
         Date: Tue, 2 Jan 2024 23:30:00 -0800\n\
         MIME-Version: 1.0\n\
         Content-Type: text/plain; charset=utf-8\n\
         Content-Transfer-Encoding: base64\n\
         \n\
         {body2}\n",
        BASE64.encode("Grüße aus München".as_bytes())
    ));
    let attachment = BASE64.encode(b"a binary needle in here");
    let m3 = crlf(&format!(
        "From: dave@example.net\n\
         Bcc: Eve <eve@example.net>\n\
         Subject: Menu\n\
         X-Custom: Foo-Bar\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\n\
         \n\
         preamble\n\
         --b1\n\
         Content-Type: text/plain; charset=iso-8859-1\n\
         Content-Transfer-Encoding: quoted-printable\n\
         \n\
         Caf=E9 cr=E8me br=FBl=E9e, tr=\n\
         =E8s bon\n\
         --b1\n\
         Content-Type: application/octet-stream\n\
         Content-Transfer-Encoding: base64\n\
         \n\
         {attachment}\n\
         --b1--\n"
    ));
    let mut m4 = crlf(
        "From: Alice Example <alice@example.com>\n\
         To: Bob <bob@example.org>, carol@example.com\n\
         Subject: Re: Hello world\n\
         Date: 5 Jan 2024 08:00:00 +0200\n\
         \n",
    );
    m4.extend(std::iter::repeat_n(b'x', 5000));
    m4.extend_from_slice(b"\r\n");
    let m5 = crlf(
        "From: robot@example.com\n\
         Subject: New stuff\n\
         Date: not a date at all\n\
         \n\
         Nothing to see.\n",
    );
    vec![
        Msg {
            uid: 1,
            flags: vec![Flag::Seen, Flag::Answered],
            modseq: 10,
            internal_date: JAN1 + 12 * 3600,
            raw: m1,
        },
        Msg {
            uid: 2,
            flags: vec![Flag::Flagged, Flag::Keyword("$Important".into())],
            modseq: 20,
            internal_date: JAN1 + DAY + 3600,
            raw: m2,
        },
        Msg {
            uid: 3,
            flags: vec![Flag::Deleted, Flag::Draft, Flag::Seen],
            modseq: 30,
            // 23:59:59 UTC on 2 January: still 2 January whatever the zone.
            internal_date: JAN1 + 2 * DAY - 1,
            raw: m3,
        },
        Msg {
            uid: 5,
            flags: vec![Flag::Seen],
            modseq: 40,
            internal_date: JAN1 + 4 * DAY,
            raw: m4,
        },
        Msg {
            uid: 7,
            flags: vec![],
            modseq: 50,
            internal_date: JAN1 + 5 * DAY,
            raw: m5,
        },
    ]
}

fn view_msg(m: &Msg) -> ViewMessage {
    ViewMessage {
        uid: m.uid,
        flags: m.flags.clone(),
        modseq: m.modseq,
    }
}

/// A view of `msgs` where the last message arrived while selected (so it is `\Recent`).
fn view_of(msgs: &[Msg]) -> SelectedView {
    let (old, new) = msgs.split_at(msgs.len().saturating_sub(1));
    let mut view = SelectedView::new(Snapshot {
        uidvalidity: 1,
        uidnext: old.last().map_or(1, |m| m.uid + 1),
        highest_modseq: old.iter().map(|m| m.modseq).max().unwrap_or(1),
        messages: old.iter().map(view_msg).collect(),
    });
    if let Some(m) = new.first() {
        view.update(Update::Changes(Changes {
            highest_modseq: m.modseq,
            uidnext: m.uid + 1,
            changed: vec![view_msg(m)],
            vanished: vec![],
        }))
        .unwrap();
        // The session claimed it: `\Recent` for it.
        view.add_recent(m.uid, m.uid + 1);
        view.flush(Moment::Any, Enabled::default());
    }
    view
}

struct Outcome {
    wire: String,
    loads: usize,
    headers_only: Option<bool>,
}

/// The tag and the SEARCH command of `line`.
fn parse_search(line: &str) -> (String, SearchCommand) {
    let cmd = parse_command(line.as_bytes(), &ParseOptions::default())
        .unwrap_or_else(|e| panic!("{line}: {e:?}"));
    let CommandBody::Search(sc) = cmd.body else {
        panic!("not a search")
    };
    (cmd.tag, sc)
}

/// `a SEARCH <criteria>` compiled for `view`, nothing enabled, at `now`.
fn program(view: &SelectedView, criteria: &str, now: i64) -> SearchProgram {
    let (_, sc) = parse_search(&format!("a SEARCH {criteria}"));
    SearchProgram::new(&sc, view, Enabled::default(), now).unwrap()
}

/// What the driver knows of message `uid` (number `seq` in `view`) without loading it.
fn meta_of<'a>(msgs: &'a [Msg], view: &SelectedView, seq: u32, uid: u32) -> MessageMeta<'a> {
    let m = msgs.iter().find(|m| m.uid == uid).unwrap();
    MessageMeta {
        seq,
        uid,
        flags: &m.flags,
        modseq: m.modseq,
        size: m.raw.len() as u64,
        internal_date: m.internal_date,
        recent: view.is_recent(uid),
    }
}

fn run_with(
    msgs: &[Msg],
    view: &mut SelectedView,
    line: &str,
    enabled: Enabled,
) -> Result<Outcome, SearchError> {
    let (tag, sc) = parse_search(line);
    let now = JAN1 + 10 * DAY;
    let mut search = Search::new(&sc, view, enabled, now)?;
    let metas: Vec<MessageMeta<'_>> = view
        .messages()
        .map(|(seq, uid)| meta_of(msgs, view, seq, uid))
        .collect();
    let loads = Cell::new(0);
    let headers_only = Cell::new(None);
    search.run(metas, |meta, h| {
        loads.set(loads.get() + 1);
        headers_only.set(Some(h));
        let m = msgs.iter().find(|m| m.uid == meta.uid)?;
        Some(if h {
            ParsedMessage::parse(&m.raw).header().to_vec()
        } else {
            m.raw.clone()
        })
    })?;
    let responses = search.finish(&tag, view);
    let mut wire = String::new();
    for r in responses {
        wire.push_str(&String::from_utf8(r.to_bytes(EncodeOptions::default())).unwrap());
    }
    Ok(Outcome {
        wire,
        loads: loads.get(),
        headers_only: headers_only.get(),
    })
}

/// `a SEARCH <criteria>` over `msgs`: the view it ran on and the `* SEARCH` numbers.
fn searched(msgs: &[Msg], criteria: &str) -> (SelectedView, Vec<u32>) {
    let mut view = view_of(msgs);
    let out = run_with(
        msgs,
        &mut view,
        &format!("a SEARCH {criteria}"),
        Enabled::default(),
    )
    .unwrap();
    let line = out.wire.strip_prefix("* SEARCH").unwrap();
    let line = line.trim_end().split(" (MODSEQ").next().unwrap();
    let ids = line
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    (view, ids)
}

/// `* SEARCH` numbers (sequence numbers, or UIDs for `UID SEARCH`) of a search.
fn ids(criteria: &str) -> Vec<u32> {
    searched(&fixture(), criteria).1
}

#[track_caller]
fn check(criteria: &str, want: &[u32]) {
    assert_eq!(ids(criteria), want, "SEARCH {criteria}");
}

#[test]
fn flag_keys() {
    check("ALL", &[1, 2, 3, 4, 5]);
    check("ANSWERED", &[1]);
    check("UNANSWERED", &[2, 3, 4, 5]);
    check("DELETED", &[3]);
    check("UNDELETED", &[1, 2, 4, 5]);
    check("DRAFT", &[3]);
    check("UNDRAFT", &[1, 2, 4, 5]);
    check("FLAGGED", &[2]);
    check("UNFLAGGED", &[1, 3, 4, 5]);
    check("SEEN", &[1, 3, 4]);
    check("UNSEEN", &[2, 5]);
    check("KEYWORD $Important", &[2]);
    check("KEYWORD $important", &[2]);
    check("UNKEYWORD $Important", &[1, 3, 4, 5]);
    check("KEYWORD $Junk", &[]);
    check("RECENT", &[5]);
    check("NEW", &[5]);
    check("OLD", &[1, 2, 3, 4]);
}

#[test]
fn size_and_number_keys() {
    check("LARGER 1000", &[4]);
    check("SMALLER 1000", &[1, 2, 3, 5]);
    check("LARGER 5000 SMALLER 6000", &[4]);
    check("2:3", &[2, 3]);
    check("4:*", &[4, 5]);
    check("*", &[5]);
    // Numbers beyond the mailbox match nothing; `n:*` beyond it is the last message.
    check("9", &[]);
    check("9:*", &[5]);
    check("1,3,100", &[1, 3]);
    check("UID 2:5", &[2, 3, 4]);
    check("UID 4", &[]);
    check("UID *", &[5]);
    check("UID 6:*", &[5]);
    check("UID 1:4294967295", &[1, 2, 3, 4, 5]);
}

#[test]
fn date_keys() {
    // Internal dates (UTC days): 1, 2, 2, 5, 6 January.
    check("BEFORE 2-Jan-2024", &[1]);
    check("ON 2-Jan-2024", &[2, 3]);
    check("SINCE 2-Jan-2024", &[2, 3, 4, 5]);
    check("SINCE 7-Jan-2024", &[]);
    check("BEFORE 1-Jan-2024", &[]);
    // Date: header, the date as written (zones ignored); messages 3 and 5 have none.
    check("SENTBEFORE 2-Jan-2024", &[1]);
    check("SENTON 2-Jan-2024", &[2]);
    check("SENTSINCE 2-Jan-2024", &[2, 4]);
    check("SENTON 5-Jan-2024", &[4]);
    check("NOT SENTBEFORE 2-Jan-2024", &[2, 3, 4, 5]);
    // RFC 5032, now = 11 January 00:00 UTC.
    check("OLDER 432000", &[1, 2, 3, 4]);
    check("OLDER 431999", &[1, 2, 3, 4, 5]);
    check("YOUNGER 432001", &[5]);
    check("YOUNGER 432000", &[5]);
}

#[test]
fn header_keys() {
    check("FROM alice", &[1, 4]);
    check("FROM ALICE@EXAMPLE.COM", &[1, 4]);
    check("FROM \"Alice Example\"", &[1, 4]);
    // Encoded word in ISO-8859-1, matched in Unicode, case-insensitively.
    check("CHARSET UTF-8 FROM \"jörg\"", &[2]);
    check("FROM \"JÖRG\"", &[2]);
    check("TO bob", &[1, 2, 4]);
    check("TO carol", &[4]);
    check("CC carol", &[2]);
    check("BCC eve", &[3]);
    check("SUBJECT hello", &[1, 4]);
    check("SUBJECT \"re: hello\"", &[4]);
    // Base64 encoded-word subject.
    check("SUBJECT \"münchen\"", &[2]);
    check("SUBJECT \"GRÜSSE\"", &[]);
    check("SUBJECT \"grüße\"", &[2]);
    check("HEADER X-Custom foo-bar", &[3]);
    check("HEADER x-custom \"\"", &[3]);
    check("HEADER Message-ID \"\"", &[1]);
    check("HEADER Message-ID <1@", &[1]);
    check("HEADER X-Missing \"\"", &[]);
    check("SUBJECT \"\"", &[1, 2, 3, 4, 5]);
}

#[test]
fn body_and_text_keys() {
    check("BODY fox", &[1]);
    check("BODY \"LAZY DOG\"", &[1]);
    // Base64 body, UTF-8 text.
    check("BODY zebra", &[2]);
    check("BODY \"ünïcödé\"", &[2]);
    // Quoted-printable ISO-8859-1 body with a soft line break.
    check("BODY \"crème brûlée, très\"", &[3]);
    // Attachments are not searched.
    check("BODY needle", &[]);
    // Header text is not body.
    check("BODY hello", &[]);
    check("TEXT hello", &[1, 4]);
    check("TEXT zebra", &[2]);
    check("TEXT x-custom", &[3]);
    check("TEXT \"subject: menu\"", &[3]);
    check("BODY \"\"", &[1, 2, 3, 4, 5]);
}

#[test]
fn boolean_nesting() {
    check("OR ANSWERED FLAGGED", &[1, 2]);
    check("NOT SEEN", &[2, 5]);
    check("NOT NOT SEEN", &[1, 3, 4]);
    check("OR (SEEN LARGER 1000) DELETED", &[3, 4]);
    check("(SEEN UNDELETED) FROM alice", &[1, 4]);
    check("OR OR 1 2 NOT (SEEN OR 3 4)", &[1, 2, 5]);
    check("NOT OR BODY fox SUBJECT \"münchen\"", &[3, 4, 5]);
    check("SEEN NOT BODY fox", &[3, 4]);
    check("1:* ALL UID 1:*", &[1, 2, 3, 4, 5]);
}

#[test]
fn modseq_key_and_responses() {
    let msgs = fixture();
    let mut view = view_of(&msgs);
    let e = Enabled {
        condstore: true,
        ..Enabled::default()
    };
    let mut run = |line: &str| run_with(&msgs, &mut view, line, e).unwrap().wire;
    assert_eq!(run("a SEARCH MODSEQ 25"), "* SEARCH 3 4 5 (MODSEQ 50)\r\n");
    // Entry forms are accepted and ignored.
    assert_eq!(
        run("a SEARCH MODSEQ \"/flags/\\\\draft\" all 20 NOT 5"),
        "* SEARCH 2 3 4 (MODSEQ 40)\r\n"
    );
    // No match: no MODSEQ.
    assert_eq!(run("a SEARCH MODSEQ 1000"), "* SEARCH\r\n");
    // ESEARCH: the highest MODSEQ of what is returned (RFC 4731 §3.2).
    assert_eq!(
        run("t UID SEARCH RETURN (MIN) MODSEQ 15"),
        "* ESEARCH (TAG \"t\") UID MIN 2 MODSEQ 20\r\n"
    );
    assert_eq!(
        run("t SEARCH RETURN (MIN MAX) MODSEQ 15 NOT 5"),
        "* ESEARCH (TAG \"t\") MIN 2 MAX 4 MODSEQ 40\r\n"
    );
    assert_eq!(
        run("t SEARCH RETURN (COUNT) MODSEQ 15"),
        "* ESEARCH (TAG \"t\") COUNT 4 MODSEQ 50\r\n"
    );
    // No MODSEQ key: no MODSEQ in the result.
    assert_eq!(run("a SEARCH SEEN"), "* SEARCH 1 3 4\r\n");
}

#[test]
fn esearch_forms() {
    let msgs = fixture();
    let mut view = view_of(&msgs);
    let e = Enabled::default();
    let run = |view: &mut SelectedView, line: &str| run_with(&msgs, view, line, e).unwrap().wire;
    assert_eq!(
        run(&mut view, "t SEARCH RETURN (MIN MAX COUNT ALL) UNDELETED"),
        "* ESEARCH (TAG \"t\") MIN 1 MAX 5 ALL 1:2,4:5 COUNT 4\r\n"
    );
    assert_eq!(
        run(&mut view, "t UID SEARCH RETURN (ALL) UNDELETED"),
        "* ESEARCH (TAG \"t\") UID ALL 1:2,5,7\r\n"
    );
    // RETURN () means ALL.
    assert_eq!(
        run(&mut view, "t SEARCH RETURN () 2:4"),
        "* ESEARCH (TAG \"t\") ALL 2:4\r\n"
    );
    // No match: MIN/MAX/ALL left out, COUNT 0 (RFC 4731 §3.1).
    assert_eq!(
        run(
            &mut view,
            "t SEARCH RETURN (MIN MAX ALL COUNT) KEYWORD $Junk"
        ),
        "* ESEARCH (TAG \"t\") COUNT 0\r\n"
    );
    assert_eq!(
        run(&mut view, "t SEARCH RETURN (MIN) KEYWORD $Junk"),
        "* ESEARCH (TAG \"t\")\r\n"
    );
    // Plain SEARCH.
    assert_eq!(run(&mut view, "a SEARCH DELETED"), "* SEARCH 3\r\n");
    assert_eq!(run(&mut view, "a UID SEARCH UNSEEN"), "* SEARCH 2 7\r\n");
    assert_eq!(run(&mut view, "a SEARCH KEYWORD $Junk"), "* SEARCH\r\n");
    // IMAP4rev2: always ESEARCH; a plain SEARCH means RETURN (ALL).
    let rev2 = Enabled {
        imap4rev2: true,
        ..Enabled::default()
    };
    assert_eq!(
        run_with(&msgs, &mut view, "x SEARCH SEEN", rev2)
            .unwrap()
            .wire,
        "* ESEARCH (TAG \"x\") ALL 1,3:4\r\n"
    );
    assert_eq!(
        run_with(&msgs, &mut view, "x UID SEARCH KEYWORD $Junk", rev2)
            .unwrap()
            .wire,
        "* ESEARCH (TAG \"x\") UID\r\n"
    );
}

#[test]
fn save_and_dollar() {
    let msgs = fixture();
    let mut view = view_of(&msgs);
    let e = Enabled::default();
    // SAVE alone: no response, the UIDs are saved.
    let out = run_with(&msgs, &mut view, "t SEARCH RETURN (SAVE) SEEN", e).unwrap();
    assert_eq!(out.wire, "");
    assert_eq!(view.saved().to_string(), "1,3,5");
    let wire = |view: &mut SelectedView, line: &str| run_with(&msgs, view, line, e).unwrap().wire;
    assert_eq!(wire(&mut view, "a SEARCH $"), "* SEARCH 1 3 4\r\n");
    assert_eq!(wire(&mut view, "a UID SEARCH $"), "* SEARCH 1 3 5\r\n");
    assert_eq!(wire(&mut view, "a SEARCH UID $ DELETED"), "* SEARCH 3\r\n");
    assert_eq!(wire(&mut view, "a SEARCH NOT $"), "* SEARCH 2 5\r\n");
    // `$` is read before this command saves (RFC 5182 §2.1).
    assert_eq!(
        wire(&mut view, "t SEARCH RETURN (SAVE ALL) OR $ FLAGGED"),
        "* ESEARCH (TAG \"t\") ALL 1:4\r\n"
    );
    assert_eq!(view.saved().to_string(), "1:3,5");
    // SAVE with MIN/MAX only saves those (RFC 5182 §2.4).
    assert_eq!(
        wire(&mut view, "t SEARCH RETURN (SAVE MIN MAX) ALL"),
        "* ESEARCH (TAG \"t\") MIN 1 MAX 5\r\n"
    );
    assert_eq!(view.saved().to_string(), "1,7");
    assert_eq!(
        wire(&mut view, "t UID SEARCH RETURN (SAVE MIN) UNSEEN"),
        "* ESEARCH (TAG \"t\") UID MIN 2\r\n"
    );
    assert_eq!(view.saved().to_string(), "2");
    // With COUNT too, everything is saved.
    wire(&mut view, "t SEARCH RETURN (SAVE MIN COUNT) UNSEEN");
    assert_eq!(view.saved().to_string(), "2,7");
    // An empty result saves the empty set.
    wire(&mut view, "t SEARCH RETURN (SAVE) KEYWORD $Junk");
    assert!(view.saved().is_empty());
    assert_eq!(wire(&mut view, "a SEARCH $"), "* SEARCH\r\n");
}

#[test]
fn two_phases_load_only_what_is_needed() {
    let msgs = fixture();
    let mut view = view_of(&msgs);
    let e = Enabled::default();
    let run = |view: &mut SelectedView, line: &str| run_with(&msgs, view, line, e).unwrap();
    let out = run(
        &mut view,
        "a SEARCH SEEN LARGER 10 UID 1:* 1:* MODSEQ 1 SINCE 1-Jan-2000",
    );
    assert_eq!(out.loads, 0);
    // Only the deleted message is loaded.
    let out = run(&mut view, "a SEARCH DELETED BODY \"crème\"");
    assert_eq!((out.loads, out.headers_only), (1, Some(false)));
    assert_eq!(out.wire, "* SEARCH 3\r\n");
    // OR with a known-true side needs no bytes.
    let out = run(&mut view, "a SEARCH OR SEEN BODY zebra");
    assert_eq!(out.loads, 2);
    assert_eq!(out.wire, "* SEARCH 1 2 3 4\r\n");
    // NOT of an unknown stays unknown, NOT of a known is known.
    let out = run(&mut view, "a SEARCH NOT (FLAGGED SUBJECT x)");
    assert_eq!((out.loads, out.headers_only), (1, Some(true)));
    assert_eq!(out.wire, "* SEARCH 1 2 3 4 5\r\n");
    // Header keys load headers only.
    let out = run(&mut view, "a SEARCH SUBJECT hello");
    assert_eq!((out.loads, out.headers_only), (5, Some(true)));
    assert_eq!(out.wire, "* SEARCH 1 4\r\n");
}

#[test]
fn program_needs() {
    let msgs = fixture();
    let view = view_of(&msgs);
    let program = |criteria: &str| program(&view, criteria, 0);
    let p = program("SEEN 1:3 UID 5 LARGER 3 BEFORE 1-Jan-2030 MODSEQ 3");
    assert!(!p.needs_content() && !p.needs_headers_only() && p.uses_modseq());
    let p = program("OR FROM x SENTON 1-Jan-2020");
    assert!(!p.needs_content() && p.needs_headers_only());
    let p = program("NOT (SUBJECT x OR SEEN TEXT y)");
    assert!(p.needs_content() && !p.needs_headers_only() && !p.uses_modseq());
    assert!(!p.reads_size_or_date());
    for criteria in [
        "UNSEEN",
        "OR SEEN UID 1:4",
        "NOT (DELETED SUBJECT x)",
        "MODSEQ 1",
        "SENTON 1-Jan-2020",
    ] {
        assert!(!program(criteria).reads_size_or_date(), "{criteria}");
    }
    for criteria in [
        "LARGER 3",
        "NOT SMALLER 3",
        "OR SEEN ON 1-Jan-2020",
        "BEFORE 1-Jan-2020",
        "SINCE 1-Jan-2020",
        "OLDER 5",
        "YOUNGER 5",
    ] {
        assert!(program(criteria).reads_size_or_date(), "{criteria}");
    }
}

#[test]
fn charset_and_limit() {
    let msgs = fixture();
    let mut view = view_of(&msgs);
    let sc = SearchCommand {
        uid: false,
        returns: None,
        charset: Some("ISO-8859-1".into()),
        criteria: vec![SearchKey::All],
    };
    let err = Search::new(&sc, &view, Enabled::default(), 0).unwrap_err();
    assert_eq!(err, SearchError::BadCharset);
    assert_eq!(
        err.response("a").to_bytes(EncodeOptions::default()),
        b"a NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset\r\n"
    );
    let sc = SearchCommand {
        charset: Some("us-ascii".into()),
        criteria: vec![SearchKey::Body("fox".into())],
        ..sc
    };
    // The byte budget: enough for the first two messages only.
    let budget = (msgs[0].raw.len() + msgs[1].raw.len()) as u64;
    let mut search = Search::new(&sc, &view, Enabled::default(), 0)
        .unwrap()
        .with_scan_limit(budget);
    let metas: Vec<_> = msgs
        .iter()
        .enumerate()
        .map(|(i, m)| MessageMeta {
            seq: i as u32 + 1,
            uid: m.uid,
            flags: &m.flags,
            modseq: m.modseq,
            size: m.raw.len() as u64,
            internal_date: m.internal_date,
            recent: false,
        })
        .collect();
    let loads = Cell::new(0);
    let err = search
        .run(metas.clone(), |meta, _| {
            loads.set(loads.get() + 1);
            msgs.iter().find(|m| m.uid == meta.uid).map(|m| &m.raw)
        })
        .unwrap_err();
    assert_eq!(err, SearchError::Limit);
    // The third message is not even read.
    assert_eq!((search.scanned(), loads.get()), (budget, 2));
    assert!(search.over_budget(1));
    // Handing bytes over directly is checked too.
    let mut search = Search::new(&sc, &view, Enabled::default(), 0)
        .unwrap()
        .with_scan_limit(10);
    assert_eq!(
        search.check_message(&metas[0], &msgs[0].raw),
        Err(SearchError::Limit)
    );
    assert_eq!(search.scanned(), 0);
    assert_eq!(
        err.response("a").to_bytes(EncodeOptions::default()),
        b"a NO [LIMIT] Search would scan too much data; narrow it down\r\n"
    );
    // A vanished message (loader returns None) does not match and costs nothing.
    let mut search = Search::new(&sc, &view, Enabled::default(), 0).unwrap();
    search.run(metas, |_, _| None::<Vec<u8>>).unwrap();
    assert!(search.hits().is_empty());
    assert_eq!(search.finish("a", &mut view).len(), 1);
}

#[test]
fn empty_mailbox() {
    let mut view = view_of(&[]);
    for line in [
        "a SEARCH ALL",
        "a SEARCH 1:*",
        "a SEARCH *",
        "a SEARCH UID *",
        "a SEARCH $",
    ] {
        let out = run_with(&[], &mut view, line, Enabled::default()).unwrap();
        assert_eq!(out.wire, "* SEARCH\r\n", "{line}");
    }
}

// ---------------------------------------------------------------------------------------
// Properties

use proptest::prelude::*;

fn leaf() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("ALL".to_string()),
        Just("SEEN".to_string()),
        Just("UNSEEN".to_string()),
        Just("FLAGGED".to_string()),
        Just("DELETED".to_string()),
        Just("RECENT".to_string()),
        Just("NEW".to_string()),
        Just("KEYWORD $Important".to_string()),
        (1u32..8).prop_map(|n| format!("LARGER {}", n * 300)),
        (1u32..8).prop_map(|n| format!("SMALLER {}", n * 300)),
        (1u32..7).prop_map(|d| format!("SINCE {d}-Jan-2024")),
        (1u32..7).prop_map(|d| format!("ON {d}-Jan-2024")),
        (1u32..7).prop_map(|d| format!("SENTBEFORE {d}-Jan-2024")),
        (1u32..6, 1u32..6).prop_map(|(a, b)| format!("{a}:{b}")),
        (1u32..8).prop_map(|a| format!("UID {a}:*")),
        (1u64..6).prop_map(|m| format!("MODSEQ {}", m * 10)),
        prop::sample::select(vec!["alice", "bob", "carol", "hello", "jörg", "x"])
            .prop_map(|s| format!("TEXT \"{s}\"")),
        prop::sample::select(vec!["alice", "bob", "jörg", "robot"])
            .prop_map(|s| format!("FROM \"{s}\"")),
        prop::sample::select(vec!["fox", "zebra", "crème", "nothing"])
            .prop_map(|s| format!("BODY \"{s}\"")),
        prop::sample::select(vec!["hello", "münchen", "new"])
            .prop_map(|s| format!("SUBJECT \"{s}\"")),
    ]
}

fn key() -> impl Strategy<Value = String> {
    leaf().prop_recursive(4, 24, 3, |inner| {
        prop_oneof![
            inner.clone().prop_map(|k| format!("NOT {k}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("OR {a} {b}")),
            prop::collection::vec(inner, 1..4).prop_map(|v| format!("({})", v.join(" "))),
        ]
    })
}

fn flags() -> impl Strategy<Value = Vec<Flag>> {
    prop::sample::subsequence(
        vec![
            Flag::Seen,
            Flag::Answered,
            Flag::Flagged,
            Flag::Deleted,
            Flag::Draft,
            Flag::Keyword("$Important".into()),
        ],
        0..=6,
    )
}

/// The fixture with random flags, and a random number of its messages.
fn mailbox() -> impl Strategy<Value = Vec<Msg>> {
    (prop::collection::vec(flags(), 5), 0usize..=5).prop_map(|(f, n)| {
        let mut msgs = fixture();
        for (m, f) in msgs.iter_mut().zip(f) {
            m.flags = f;
        }
        msgs.truncate(n);
        msgs
    })
}

fn all_seqs(msgs: &[Msg]) -> Vec<u32> {
    (1..=msgs.len() as u32).collect()
}

fn seqs(msgs: &[Msg], view: &mut SelectedView, criteria: &str) -> Vec<u32> {
    let out = run_with(
        msgs,
        view,
        &format!("a SEARCH {criteria}"),
        Enabled::default(),
    )
    .unwrap();
    out.wire
        .strip_prefix("* SEARCH")
        .unwrap()
        .split(" (MODSEQ")
        .next()
        .unwrap()
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn all_is_every_message(msgs in mailbox()) {
        let mut view = view_of(&msgs);
        let all = seqs(&msgs, &mut view, "ALL");
        prop_assert_eq!(&all, &all_seqs(&msgs));
        prop_assert_eq!(&seqs(&msgs, &mut view, "1:*"), &all);
        prop_assert_eq!(&seqs(&msgs, &mut view, "UID 1:*"), &all);
    }

    #[test]
    fn not_is_complement(msgs in mailbox(), k in key()) {
        let mut view = view_of(&msgs);
        let hits = seqs(&msgs, &mut view, &k);
        let not = seqs(&msgs, &mut view, &format!("NOT {k}"));
        let mut union: Vec<u32> = hits.iter().chain(&not).copied().collect();
        union.sort_unstable();
        prop_assert_eq!(union, all_seqs(&msgs), "{} / NOT {}", hits.len(), not.len());
    }

    #[test]
    fn or_and_are_union_and_intersection(msgs in mailbox(), a in key(), b in key()) {
        let mut view = view_of(&msgs);
        let ha = seqs(&msgs, &mut view, &a);
        let hb = seqs(&msgs, &mut view, &b);
        let or = seqs(&msgs, &mut view, &format!("OR {a} {b}"));
        let and = seqs(&msgs, &mut view, &format!("{a} {b}"));
        let want_or: Vec<u32> = all_seqs(&msgs).into_iter().filter(|n| ha.contains(n) || hb.contains(n)).collect();
        let want_and: Vec<u32> = ha.iter().copied().filter(|n| hb.contains(n)).collect();
        prop_assert_eq!(or, want_or);
        prop_assert_eq!(and, want_and);
    }

    /// A metadata-only verdict is never contradicted by the full evaluation.
    #[test]
    fn prefilter_agrees_with_full(msgs in mailbox(), k in key()) {
        let view = view_of(&msgs);
        let p = program(&view, &k, JAN1 + 10 * DAY);
        for (seq, uid) in view.messages() {
            let m = msgs.iter().find(|m| m.uid == uid).unwrap();
            let meta = meta_of(&msgs, &view, seq, uid);
            let full = p.matches_message(&meta, &ParsedMessage::parse(&m.raw));
            match p.prefilter(&meta) {
                Verdict::Match => prop_assert!(full),
                Verdict::NoMatch => prop_assert!(!full),
                Verdict::NeedsMessage => prop_assert!(p.needs_content() || p.needs_headers_only()),
            }
        }
    }

    /// Cached header fields give the same verdicts as the message itself.
    #[test]
    fn cached_fields_agree_with_the_message(msgs in mailbox(), k in key()) {
        let view = view_of(&msgs);
        let (_, sc) = parse_search(&format!("a SEARCH {k}"));
        let enabled = Enabled::default();
        let mut by_raw = Search::new(&sc, &view, enabled, JAN1 + 10 * DAY).unwrap();
        let mut by_fields = Search::new(&sc, &view, enabled, JAN1 + 10 * DAY).unwrap();
        prop_assume!(by_raw.program().header_keys_only());
        for (seq, uid) in view.messages() {
            let m = msgs.iter().find(|m| m.uid == uid).unwrap();
            let meta = meta_of(&msgs, &view, seq, uid);
            if by_raw.check(&meta) == Verdict::NeedsMessage {
                prop_assert_eq!(by_fields.check(&meta), Verdict::NeedsMessage);
                let a = by_raw.check_message(&meta, &m.raw).unwrap();
                let b = by_fields.check_fields(&meta, &header_fields(&m.raw));
                prop_assert_eq!(a, b, "uid {}", uid);
            } else {
                by_fields.check(&meta);
            }
        }
        prop_assert_eq!(by_raw.hits(), by_fields.hits());
    }
}

#[test]
fn nested_messages_charsets_and_encoded_headers() {
    let raw = crlf(
        "From: a@example.com\n\
         X-Note: =?windows-1252?Q?=93quoted=94_na=EFve?=\n\
         Subject: fwd\n\
         Content-Type: multipart/mixed; boundary=zz\n\
         \n\
         --zz\n\
         Content-Type: text/plain; charset=x-unknown-charset\n\
         \n\
         Plain words, unknown charset.\n\
         --zz\n\
         Content-Type: message/rfc822\n\
         \n\
         Subject: inner subject\n\
         Content-Type: text/html; charset=koi8-r\n\
         Content-Transfer-Encoding: base64\n\
         \n\
         8NLJ18XU\n\
         --zz--\n",
    );
    let msg = ParsedMessage::parse(&raw);
    let texts: Vec<String> = msg.texts().collect();
    assert_eq!(texts, ["Plain words, unknown charset.", "Привет"]);
    let view = view_of(&[]);
    let meta = MessageMeta {
        seq: 1,
        uid: 1,
        flags: &[],
        modseq: 1,
        size: raw.len() as u64,
        internal_date: 0,
        recent: false,
    };
    let matches = |criteria: &str| program(&view, criteria, 0).matches_message(&meta, &msg);
    assert!(matches("BODY \"ПРИВЕТ\""));
    assert!(matches("BODY \"unknown charset\""));
    assert!(matches("HEADER X-Note \"\u{201c}quoted\u{201d} naïve\""));
    assert!(matches("TEXT \"x-note: \u{201c}quoted\""));
    // Only the top-level header is searched by header keys.
    assert!(!matches("SUBJECT inner"));
    assert!(matches("SUBJECT FWD"));
    // A key given only the header block (headers-only load) still works.
    let header_only = ParsedMessage::parse(msg.header());
    let p = program(&view, "FROM EXAMPLE.com", 0);
    assert!(p.needs_headers_only());
    assert!(p.matches_message(&meta, &header_only));
}

proptest! {
    /// The ASCII fast path of header matching reads a field exactly as the decoder does.
    #[test]
    fn fold_value_fast_path_agrees_with_the_decoder(
        value in "[ -~\t]{0,40}(\r\n[ \t]{1,3}[ -~\t]{0,20}){0,3}",
    ) {
        prop_assume!(!value.contains("=?"));
        prop_assert_eq!(fold_value(value.as_bytes()), fold(&decode_unstructured(value.as_bytes())));
    }
}

#[test]
fn header_keys_decode_only_what_they_read() {
    let raw = b"From: =?UTF-8?B?w4lsaXNl?= <e@example.test>\r\nSubject: Hello  World\r\n\tagain\r\n\r\nbody\r\n";
    let c = Content::from_raw(raw);
    assert!(c.header_contains("subject", "hello  world"));
    assert!(c.header_contains("from", "élise"));
    assert!(!c.header_contains("to", ""));
    // Nothing forced the whole header to be decoded.
    assert!(c.headers.get().is_none());
    assert!(c.header_text().contains("élise"));
    assert!(c.header_contains("from", "élise"));
    assert!(
        c.parsed.get().is_none(),
        "header keys don't split the message"
    );
    assert!(c.body_contains("body"));
}

/// imaptest `search-addresses`: FROM/TO/CC/BCC match the raw field text and each address's
/// canonical form (comments and blanks left out); HEADER reads the text only.
#[test]
fn address_keys_match_canonical_addresses() {
    let headers = [
        "From: user-from@domain.org\nTo: user-to@domain.org\n",
        "From: RealFrom <user-from@domain.org>\nTo: RealTo <user-to@domain.org>\n",
        "From: <user-from (comment)@ (comment) domain.org>\nTo: <@route:user-to@domain.org>\n",
        "From: user-from@domain.org (RealFrom)\nCc: group: (c) x@y, <user-cc (c)@ domain.org>;\n",
        "From: user-from1@domain.org, user-from2@domain.org\n\
         Bcc: =?UTF-8?Q?B=C3=A9?= <USER-BCC@\n (folded) Domain.ORG>\n",
    ];
    let msgs: Vec<Msg> = headers
        .iter()
        .zip(1..)
        .map(|(h, uid)| Msg {
            uid,
            flags: vec![],
            modseq: 1,
            internal_date: JAN1,
            raw: crlf(&format!("{h}\nbody\n")),
        })
        .collect();
    let search = |criteria: &str| {
        let (view, got) = searched(&msgs, criteria);
        // The same verdicts from cached fields.
        let (_, sc) = parse_search(&format!("a SEARCH {criteria}"));
        let mut by_fields = Search::new(&sc, &view, Enabled::default(), JAN1).unwrap();
        for (seq, uid) in view.messages() {
            let meta = meta_of(&msgs, &view, seq, uid);
            let raw = &msgs[uid as usize - 1].raw;
            if by_fields.check(&meta) == Verdict::NeedsMessage {
                by_fields.check_fields(&meta, &header_fields(raw));
            }
        }
        let hits: Vec<u32> = by_fields.hits().iter().map(|h| h.seq).collect();
        assert_eq!(got, hits, "SEARCH {criteria}: message and cached fields");
        got
    };
    assert_eq!(search("FROM user-from@domain.org"), [1, 2, 3, 4]);
    assert_eq!(search("FROM USER-FROM@DOMAIN"), [1, 2, 3, 4]);
    assert_eq!(search("FROM ser-fro"), [1, 2, 3, 4, 5]);
    assert_eq!(search("FROM comment"), [3]);
    assert_eq!(search("FROM realfrom"), [2, 4]);
    assert_eq!(search("FROM user-from2@domain.org"), [5]);
    // A source route is left out of the canonical form.
    assert_eq!(search("TO user-to@domain.org"), [1, 2, 3]);
    assert_eq!(search("CC user-cc@domain.org"), [4]);
    assert_eq!(search("CC x@y"), [4]);
    assert_eq!(search("BCC user-bcc@domain.org"), [5]);
    assert_eq!(search("BCC \"bé\""), [5]);
    // HEADER reads the field's text, not the canonical addresses.
    assert_eq!(search("HEADER From user-from@domain.org"), [1, 2, 4]);
    assert_eq!(search("HEADER From \"\""), [1, 2, 3, 4, 5]);
    // TEXT doesn't see the canonical address entries.
    assert_eq!(search("TEXT address:"), Vec::<u32>::new());
}
