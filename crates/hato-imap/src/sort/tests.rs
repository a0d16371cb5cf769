use super::*;
use crate::command::{CommandBody, SortCommand};
use crate::encode::EncodeOptions;
use crate::parse::{ParseErrorKind, ParseOptions, parse_command};

fn base(s: &str) -> (String, bool) {
    base_subject(s)
}

#[test]
fn base_subject_rfc5256_rules() {
    // Plain subjects are kept (case too: the comparison upper-cases).
    assert_eq!(base("Hello"), ("Hello".into(), false));
    // (1) blanks collapse; (2) trailing blanks and "(fwd)" go.
    assert_eq!(base("  a \t  b  "), ("a b".into(), false));
    assert_eq!(base("b (fWd)  (fwd)"), ("b".into(), true));
    // (3) Re:/Fw:/Fwd: leaders, with blobs before them and one blob inside.
    assert_eq!(base("Re: b"), ("b".into(), true));
    assert_eq!(base("RE: C"), ("C".into(), true));
    assert_eq!(base("fw: x"), ("x".into(), true));
    assert_eq!(base("Re[2]: x"), ("x".into(), true));
    assert_eq!(base("Re : x"), ("x".into(), true));
    assert_eq!(
        base("[foo] Fwd: [bar] Re: fw: b (fWd)  (fwd)"),
        ("b".into(), true)
    );
    // Not a leader: "Ad:", "Really:".
    assert_eq!(
        base("Ad: Re: Ad: Re: Ad: x"),
        ("Ad: Re: Ad: Re: Ad: x".into(), false)
    );
    assert_eq!(base("Really: x"), ("Really: x".into(), false));
    // (4) a blob goes unless nothing would remain; a blob alone is not a reply.
    assert_eq!(base("[list] topic"), ("topic".into(), false));
    assert_eq!(base("[xyz]"), ("[xyz]".into(), false));
    // (6) [fwd: ...] wrappers, nested with leaders.
    assert_eq!(base("Re: [FWD: c]"), ("c".into(), true));
    assert_eq!(
        base("re: [fwd: [fwd: re: [fwd: babylon]]]"),
        ("babylon".into(), true)
    );
    assert_eq!(base("[fwd: x]"), ("x".into(), true));
    // Empty and blank subjects.
    assert_eq!(base(""), ("".into(), false));
    assert_eq!(base(" "), ("".into(), false));
    assert_eq!(base("Re:"), ("".into(), true));
    // Non-ASCII text is kept and does not confuse the byte offsets.
    assert_eq!(base("Re: héllo (fwd)"), ("héllo".into(), true));
    assert_eq!(base("ü"), ("ü".into(), false));
}

#[test]
fn subject_key_decodes_encoded_words_and_upper_cases() {
    let m = SortMessage::new(1, 1, 0, 0, b"Subject: =?us-ascii?b?UmU6IGM=?=\r\n\r\n");
    assert_eq!((m.subject.as_str(), m.reply), ("C", true));
    let m = SortMessage::new(1, 1, 0, 0, b"Subject: =?iso-8859-1?q?RE:_caf=E9?=\r\n\r\n");
    assert_eq!(m.subject, "CAFÉ");
    let m = SortMessage::new(1, 1, 0, 0, b"Subject: =?iso-8859-1?q?_?=\r\n\r\n");
    assert_eq!(m.subject, "");
    let m = SortMessage::new(1, 1, 0, 0, b"Subject: Re:\r\n  folded\r\n\r\n");
    assert_eq!(m.subject, "FOLDED");
}

#[test]
fn sent_date_uses_the_zone_else_internal_date() {
    let m = SortMessage::new(1, 1, 7, 0, b"Date: Fri, 22 Feb 2008 02:00:00 +0200\r\n\r\n");
    assert_eq!(m.sent, 1_203_638_400);
    let m = SortMessage::new(1, 1, 7, 0, b"Date: garbage\r\nSubject: x\r\n\r\n");
    assert_eq!(m.sent, 7);
    let m = SortMessage::new(1, 1, 7, 0, b"Subject: x\r\n\r\n");
    assert_eq!(m.sent, 7);
    // Keys cached without metadata, placed on a message: the fallback follows.
    let cached = SortMessage::new(0, 0, 0, 0, b"Subject: x\r\n\r\n");
    let m = cached.at(3, 30, 9, 100);
    assert_eq!(
        (m.seq, m.uid, m.internal_date, m.size, m.sent),
        (3, 30, 9, 100, 9)
    );
    assert_eq!(m.subject, "X");
    let cached = SortMessage::new(0, 0, 0, 0, b"Date: Fri, 22 Feb 2008 02:00:00 +0200\r\n\r\n");
    assert_eq!(cached.at(1, 1, 9, 0).sent, 1_203_638_400);
    assert!(cached.footprint() >= std::mem::size_of::<SortMessage>());
}

#[test]
fn address_keys() {
    let m = SortMessage::new(
        1,
        1,
        0,
        0,
        b"From: foo bar <User2@domain2.org>, x@y\r\nTo: user2@domain2.org (foo bar)\r\n\
          Cc: user2: blah@domain1.org;\r\n\r\n",
    );
    assert_eq!(m.from, "USER2");
    assert_eq!(m.display_from, "FOO BAR");
    assert_eq!(m.to, "USER2");
    // A comment after the address is its name, as in the ENVELOPE (and Dovecot).
    assert_eq!(m.display_to, "FOO BAR");
    // A group: its name.
    assert_eq!(m.cc, "USER2");
    let m = SortMessage::new(
        1,
        1,
        0,
        0,
        b"To: empty:;\r\nFrom: =?iso-8859-1?q?foo_aar?= <e@f.g>\r\n\r\n",
    );
    assert_eq!(m.display_to, "EMPTY");
    assert_eq!(m.display_from, "FOO AAR");
    let m = SortMessage::new(1, 1, 0, 0, b"Subject: x\r\n\r\n");
    assert_eq!(
        (m.from.as_str(), m.display_from.as_str(), m.cc.as_str()),
        ("", "", "")
    );
}

#[test]
fn msg_id_parsing() {
    assert_eq!(
        msg_ids(b" <a@b> (comment <x@y>) <c@d>\r\n\t<e@f>"),
        ["a@b", "c@d", "e@f"]
    );
    assert_eq!(msg_ids(b"<a @ b>"), ["a@b"]);
    assert_eq!(msg_ids(b"<\"q >\"@b>"), ["\"q >\"@b"]);
    assert!(msg_ids(b"no ids here").is_empty());
    assert!(msg_ids(b"<>").is_empty());
    let m = SortMessage::new(
        1,
        1,
        0,
        0,
        b"Message-ID: <1@x>\r\nIn-Reply-To: <0@x> <9@x>\r\n\r\n",
    );
    assert_eq!(m.message_id.as_deref(), Some("1@x"));
    assert_eq!(m.references, ["0@x"]);
    let m = SortMessage::new(
        1,
        1,
        0,
        0,
        b"References: <a@x> <b@x>\r\nIn-Reply-To: <0@x>\r\n\r\n",
    );
    assert_eq!(m.references, ["a@x", "b@x"]);
}

fn parse_sort(line: &str) -> SortCommand {
    match parse_command(line.as_bytes(), &ParseOptions::default())
        .unwrap()
        .body
    {
        CommandBody::Sort(s) => s,
        other => panic!("{other:?}"),
    }
}

#[test]
fn parses_sort_commands() {
    let s = parse_sort("a SORT (REVERSE DATE subject displayfrom) UTF-8 ALL");
    assert!(!s.uid);
    assert_eq!(
        s.criteria,
        [
            SortCriterion {
                reverse: true,
                key: SortKey::Date
            },
            SortCriterion {
                reverse: false,
                key: SortKey::Subject
            },
            SortCriterion {
                reverse: false,
                key: SortKey::DisplayFrom
            },
        ]
    );
    assert_eq!(s.charset, "UTF-8");
    let s = parse_sort("a UID SORT (ARRIVAL) us-ascii UNSEEN FROM \"x\"");
    assert!(s.uid);
    assert_eq!(s.search.len(), 2);
    assert_eq!(s.search_command().criteria, s.search);
    let opts = ParseOptions::default();
    for bad in [
        "a SORT () UTF-8 ALL",
        "a SORT (REVERSE) UTF-8 ALL",
        "a SORT (BOGUS) UTF-8 ALL",
        "a SORT (DATE) UTF-8",
        "a SORT DATE UTF-8 ALL",
    ] {
        assert!(parse_command(bad.as_bytes(), &opts).is_err(), "{bad}");
    }
    let e = parse_command(b"a SORT (DATE) KOI8-R ALL", &opts).unwrap_err();
    assert_eq!(e.kind, ParseErrorKind::BadCharset);
}

fn msg(seq: u32, header: &str, internal_date: i64, size: u64) -> SortMessage {
    SortMessage::new(seq, seq * 10, internal_date, size, header.as_bytes())
}

fn order(criteria: &str, msgs: &[SortMessage]) -> Vec<u32> {
    let s = parse_sort(&format!("a SORT ({criteria}) UTF-8 ALL"));
    let mut v = msgs.to_vec();
    sort(&s.criteria, &mut v);
    v.iter().map(|m| m.seq).collect()
}

#[test]
fn sort_orders_with_reverse_and_sequence_ties() {
    // The imaptest sort-arrival fixture: ties stay in sequence order under REVERSE.
    let msgs = [
        msg(1, "\r\n", 0, 1),
        msg(2, "\r\n", 2, 1),
        msg(3, "\r\n", 1, 2),
        msg(4, "\r\n", 2, 2),
        msg(5, "\r\n", 2, 4),
    ];
    assert_eq!(order("ARRIVAL", &msgs), [1, 3, 2, 4, 5]);
    assert_eq!(order("REVERSE ARRIVAL", &msgs), [2, 4, 5, 3, 1]);
    assert_eq!(order("ARRIVAL REVERSE SIZE", &msgs), [1, 3, 5, 4, 2]);
    assert_eq!(order("SIZE", &msgs), [1, 2, 3, 4, 5]);
}

#[test]
fn sort_by_subject_date_and_addresses() {
    let msgs = [
        msg(
            1,
            "Subject: a\r\nDate: Fri, 22 Feb 2008 00:00:00 +0200\r\n\r\n",
            0,
            0,
        ),
        msg(
            2,
            "Subject: C\r\nFrom: user2@domain2.org\r\n\r\n",
            1_203_638_000,
            0,
        ),
        msg(
            3,
            "Subject: Re: b\r\nDate: Fri, 22 Feb 2008 01:00:00 +0100\r\nFrom: User1@x\r\n\r\n",
            0,
            0,
        ),
        msg(4, "Subject: _\r\nFrom: Zed <a@b>\r\n\r\n", 5, 0),
        msg(
            5,
            "Subject: [xyz]\r\nFrom: user1@y\r\n\r\n",
            1_203_638_000,
            0,
        ),
    ];
    assert_eq!(order("SUBJECT", &msgs), [1, 3, 2, 5, 4]);
    assert_eq!(order("REVERSE SUBJECT", &msgs), [4, 5, 2, 3, 1]);
    // Sent dates: 1 = 21st 22:00Z, 2/5 internal 1_203_638_000 (21st 23:53:20Z), then
    // 3 = 22nd 00:00Z = 1_203_638_400), 4 = 5.
    assert_eq!(order("DATE", &msgs), [4, 1, 2, 5, 3]);
    assert_eq!(order("REVERSE DATE", &msgs), [3, 2, 5, 1, 4]);
    // FROM: "" (1), USER2, USER1, A, USER1.
    assert_eq!(order("FROM", &msgs), [1, 4, 3, 5, 2]);
    // DISPLAYFROM: "", USER2@DOMAIN2.ORG, USER1@X, ZED, USER1@Y.
    assert_eq!(order("DISPLAYFROM", &msgs), [1, 3, 5, 2, 4]);
    assert_eq!(order("TO", &msgs), [1, 2, 3, 4, 5]);
}

#[test]
fn sort_response_encoding() {
    let msgs = [msg(2, "\r\n", 0, 0), msg(1, "\r\n", 0, 0)];
    let r = response(false, &msgs).to_bytes(EncodeOptions::default());
    assert_eq!(r, b"* SORT 2 1\r\n");
    let r = response(true, &msgs).to_bytes(EncodeOptions::default());
    assert_eq!(r, b"* SORT 20 10\r\n");
    let r = response(true, &[]).to_bytes(EncodeOptions::default());
    assert_eq!(r, b"* SORT\r\n");
    assert!(needs_header(
        &parse_sort("a SORT (SIZE DATE) UTF-8 ALL").criteria
    ));
    assert!(!needs_header(
        &parse_sort("a SORT (SIZE REVERSE ARRIVAL) UTF-8 ALL").criteria
    ));
}

#[test]
fn parses_esort_return_options() {
    let s = parse_sort("a SORT RETURN (MIN max ALL count) (DATE) UTF-8 ALL");
    assert_eq!(
        s.returns,
        Some(vec![
            SearchReturn::Min,
            SearchReturn::Max,
            SearchReturn::All,
            SearchReturn::Count
        ])
    );
    assert_eq!(s.criteria.len(), 1);
    assert_eq!(s.charset, "UTF-8");
    // The selecting SEARCH stays a plain one.
    assert_eq!(s.search_command().returns, None);
    let s = parse_sort("a UID SORT return () (REVERSE ARRIVAL) US-ASCII 1:5");
    assert!(s.uid);
    assert_eq!(s.returns, Some(vec![]));
    assert_eq!(parse_sort("a SORT (DATE) UTF-8 ALL").returns, None);
    let opts = ParseOptions::default();
    for bad in [
        "a SORT RETURN (SAVE) (DATE) UTF-8 ALL",
        "a SORT RETURN (BOGUS) (DATE) UTF-8 ALL",
        "a SORT RETURN MIN (DATE) UTF-8 ALL",
        "a SORT RETURN (MIN)(DATE) UTF-8 ALL",
        "a SORT RETURN (MIN) UTF-8 ALL",
        "a SORT (DATE) RETURN (MIN) UTF-8 ALL",
    ] {
        assert!(parse_command(bad.as_bytes(), &opts).is_err(), "{bad}");
    }
}

#[test]
fn esort_response_in_sort_order() {
    let enc = |tag: &str, uid: bool, returns: Option<&[SearchReturn]>, msgs: &[SortMessage]| {
        String::from_utf8(sort_response(tag, uid, returns, msgs).to_bytes(EncodeOptions::default()))
            .unwrap()
    };
    use SearchReturn::*;
    // Sorted order 3 4 5 1 2 7: MIN/MAX are the first and last in that order, and ALL
    // keeps the order, with ranges only where it ascends by one.
    let msgs: Vec<SortMessage> = [3, 4, 5, 1, 2, 7]
        .into_iter()
        .map(|n| msg(n, "\r\n", 0, 0))
        .collect();
    assert_eq!(
        enc("a1", false, Some(&[Min, Max, Count, All]), &msgs),
        "* ESEARCH (TAG \"a1\") MIN 3 MAX 7 ALL 3:5,1:2,7 COUNT 6\r\n"
    );
    assert_eq!(
        enc("a2", true, Some(&[]), &msgs),
        "* ESEARCH (TAG \"a2\") UID ALL 30,40,50,10,20,70\r\n"
    );
    assert_eq!(
        enc("a3", false, Some(&[Max]), &msgs),
        "* ESEARCH (TAG \"a3\") MAX 7\r\n"
    );
    // Descending runs are not ranges (5:3 would be the set 3:5, in ascending order).
    let desc: Vec<SortMessage> = [5, 4, 3]
        .into_iter()
        .map(|n| msg(n, "\r\n", 0, 0))
        .collect();
    assert_eq!(
        enc("a4", false, Some(&[All]), &desc),
        "* ESEARCH (TAG \"a4\") ALL 5,4,3\r\n"
    );
    // No match: COUNT 0, nothing else.
    assert_eq!(
        enc("a5", false, Some(&[Min, Max, All, Count]), &[]),
        "* ESEARCH (TAG \"a5\") COUNT 0\r\n"
    );
    // A plain SORT stays `* SORT`.
    assert_eq!(enc("a6", false, None, &msgs), "* SORT 3 4 5 1 2 7\r\n");
}
