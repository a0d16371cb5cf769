use super::*;
use crate::encode::EncodeOptions;
use crate::response::{Data, FetchValue, Response};

/// The wire form of one FETCH item, without `* 1 FETCH (` and `)\r\n`.
fn wire(item: FetchValue, utf8: bool) -> String {
    let r = Response::Data(Data::Fetch {
        seq: 1,
        items: vec![item],
    });
    let b = r.to_bytes(EncodeOptions { utf8 });
    let s = String::from_utf8_lossy(&b).into_owned();
    s.strip_prefix("* 1 FETCH (")
        .unwrap()
        .strip_suffix(")\r\n")
        .unwrap()
        .to_string()
}

fn bodystructure(raw: &[u8]) -> String {
    let m = ParsedMessage::parse(raw);
    wire(
        FetchValue::BodyStructure(Box::new(m.body_structure(false))),
        false,
    )
}

fn body(raw: &[u8]) -> String {
    let m = ParsedMessage::parse(raw);
    wire(FetchValue::Body(Box::new(m.body_structure(false))), false)
}

fn env(raw: &[u8], utf8: bool) -> String {
    let m = ParsedMessage::parse(raw);
    wire(FetchValue::Envelope(Box::new(m.envelope(utf8))), utf8)
}

fn sect(raw: &[u8], spec: &str) -> Option<String> {
    let section = parse_section(spec);
    ParsedMessage::parse(raw)
        .section(&section)
        .map(|d| String::from_utf8_lossy(&d).into_owned())
}

/// Parses a section spec through the command parser.
fn parse_section(spec: &str) -> Section {
    let line = format!("a FETCH 1 BODY.PEEK[{spec}]");
    let cmd = crate::parse::parse_command(line.as_bytes(), &Default::default()).unwrap();
    let crate::command::CommandBody::Fetch(f) = cmd.body else {
        panic!()
    };
    match &f.items[0] {
        crate::command::FetchAttr::BodySection { section, .. } => section.clone(),
        other => panic!("{other:?}"),
    }
}

// RFC 9051 §6.4.5's example message structure (RFC 3501 §6.4.5).
const COMPLEX: &[u8] = b"From: a@example.com\r\n\
Subject: complex\r\n\
MIME-Version: 1.0\r\n\
Content-Type: MULTIPART/MIXED; boundary=\"outer\"\r\n\
\r\n\
preamble\r\n\
--outer\r\n\
Content-Type: TEXT/PLAIN; charset=us-ascii\r\n\
\r\n\
part one\r\n\
--outer\r\n\
Content-Type: APPLICATION/OCTET-STREAM\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
AAECAw==\r\n\
--outer\r\n\
Content-Type: MESSAGE/RFC822\r\n\
\r\n\
From: inner@example.com\r\n\
Subject: inner\r\n\
Content-Type: MULTIPART/ALTERNATIVE; boundary=in\r\n\
\r\n\
--in\r\n\
Content-Type: TEXT/PLAIN\r\n\
\r\n\
inner plain\r\n\
--in\r\n\
Content-Type: TEXT/RICHTEXT\r\n\
\r\n\
inner rich\r\n\
--in--\r\n\
--outer\r\n\
Content-Type: IMAGE/GIF\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
R0lG\r\n\
--outer\r\n\
Content-Type: MULTIPART/MIXED; boundary=\"x\"\r\n\
\r\n\
--x\r\n\
Content-Type: IMAGE/JPEG\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
/9j/\r\n\
--x\r\n\
Content-Type: MESSAGE/RFC822\r\n\
\r\n\
Subject: deep\r\n\
\r\n\
deep body\r\n\
--x--\r\n\
--outer--\r\n\
epilogue\r\n";

#[test]
fn rfc_part_numbering() {
    assert_eq!(sect(COMPLEX, "1").unwrap(), "part one");
    assert_eq!(sect(COMPLEX, "2").unwrap(), "AAECAw==");
    assert!(
        sect(COMPLEX, "3")
            .unwrap()
            .starts_with("From: inner@example.com\r\n")
    );
    assert_eq!(
        sect(COMPLEX, "3.HEADER").unwrap(),
        "From: inner@example.com\r\nSubject: inner\r\nContent-Type: MULTIPART/ALTERNATIVE; boundary=in\r\n\r\n"
    );
    assert!(sect(COMPLEX, "3.TEXT").unwrap().starts_with("--in\r\n"));
    assert_eq!(sect(COMPLEX, "3.1").unwrap(), "inner plain");
    assert_eq!(sect(COMPLEX, "3.2").unwrap(), "inner rich");
    assert_eq!(sect(COMPLEX, "4").unwrap(), "R0lG");
    assert_eq!(sect(COMPLEX, "4.1"), None);
    assert_eq!(sect(COMPLEX, "5.1").unwrap(), "/9j/");
    assert_eq!(
        sect(COMPLEX, "5.2.HEADER").unwrap(),
        "Subject: deep\r\n\r\n"
    );
    assert_eq!(sect(COMPLEX, "5.2.TEXT").unwrap(), "deep body");
    assert_eq!(sect(COMPLEX, "5.2.1").unwrap(), "deep body");
    assert_eq!(
        sect(COMPLEX, "5.MIME").unwrap(),
        "Content-Type: MULTIPART/MIXED; boundary=\"x\"\r\n\r\n"
    );
    assert_eq!(sect(COMPLEX, "6"), None);
    assert_eq!(ParsedMessage::parse(COMPLEX).binary(&[0]), Ok(None));
    // HEADER of a part that is not a message: NIL.
    assert_eq!(sect(COMPLEX, "1.HEADER"), None);
    assert_eq!(sect(COMPLEX, "").unwrap().len(), COMPLEX.len());
    assert!(
        sect(COMPLEX, "TEXT")
            .unwrap()
            .starts_with("preamble\r\n--outer")
    );
    assert!(
        sect(COMPLEX, "HEADER")
            .unwrap()
            .ends_with("boundary=\"outer\"\r\n\r\n")
    );
}

#[test]
fn complex_bodystructure() {
    let bs = bodystructure(COMPLEX);
    assert!(
        bs.starts_with(
            "BODYSTRUCTURE ((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 8 1 NIL NIL NIL NIL)\
(\"APPLICATION\" \"OCTET-STREAM\" NIL NIL NIL \"BASE64\" 8 NIL NIL NIL NIL)\
(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" "
        ),
        "{bs}"
    );
    assert!(
        bs.contains("((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 11 1 NIL NIL NIL NIL)(\"TEXT\" \"RICHTEXT\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 10 1 NIL NIL NIL NIL) \"ALTERNATIVE\" (\"BOUNDARY\" \"in\") NIL NIL NIL)"),
        "{bs}"
    );
    assert!(
        bs.ends_with(" \"MIXED\" (\"BOUNDARY\" \"outer\") NIL NIL NIL)"),
        "{bs}"
    );
    // BODY has no extension data.
    let b = body(COMPLEX);
    assert!(b.ends_with(" \"MIXED\")"), "{b}");
    assert!(!b.contains("BOUNDARY"));
}

#[test]
fn simple_text_message_rfc_example() {
    let raw = b"Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\r\n\
From: Terry Gray <gray@cac.washington.edu>\r\n\
Subject: IMAP4rev1 WG mtg summary and minutes\r\n\
To: imap@cac.washington.edu\r\n\
cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>\r\n\
Message-Id: <B27397-0100000@cac.washington.edu>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\
\r\n\
line 1\r\nline 2\r\n";
    assert_eq!(
        env(raw, false),
        "ENVELOPE (\"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\" \"IMAP4rev1 WG mtg summary and minutes\" \
((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) ((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) \
((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) ((NIL NIL \"imap\" \"cac.washington.edu\")) \
((NIL NIL \"minutes\" \"CNRI.Reston.VA.US\")(\"John Klensin\" NIL \"KLENSIN\" \"MIT.EDU\")) NIL NIL \
\"<B27397-0100000@cac.washington.edu>\")"
    );
    assert_eq!(
        bodystructure(raw),
        "BODYSTRUCTURE (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 16 2 NIL NIL NIL NIL)"
    );
    assert_eq!(sect(raw, "1").unwrap(), "line 1\r\nline 2\r\n");
    assert_eq!(sect(raw, "1.MIME").unwrap().len(), raw.len() - 16);
    assert_eq!(
        sect(raw, "HEADER.FIELDS (subject FROM)").unwrap(),
        "From: Terry Gray <gray@cac.washington.edu>\r\nSubject: IMAP4rev1 WG mtg summary and minutes\r\n\r\n"
    );
    let not = sect(
        raw,
        "HEADER.FIELDS.NOT (Date Subject From To cc Message-Id)",
    )
    .unwrap();
    assert_eq!(
        not,
        "MIME-Version: 1.0\r\nContent-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\r\n"
    );
}

#[test]
fn envelope_groups_encoded_words_and_defaults() {
    let raw = "From: =?ISO-8859-1?Q?Andr=E9?= <andre@example.com>\r\n\
Sender: sec@example.com\r\n\
To: Friends: a@example.com, \"B\" <b@example.com>;, c@example.com\r\n\
Subject: =?UTF-8?B?w6lsw6h2ZQ==?=\r\n\
In-Reply-To: <x@y>\r\n\
\r\nbody"
        .as_bytes();
    let raw_env = env(raw, false);
    assert!(
        raw_env.contains("\"=?UTF-8?B?QW5kcsOp?=\" NIL \"andre\" \"example.com\""),
        "{raw_env}"
    );
    assert!(
        raw_env.contains("\"=?UTF-8?B?w6lsw6h2ZQ==?=\""),
        "{raw_env}"
    );
    assert!(
        raw_env.contains("((NIL NIL \"Friends\" NIL)(NIL NIL \"a\" \"example.com\")(\"B\" NIL \"b\" \"example.com\")(NIL NIL NIL NIL)(NIL NIL \"c\" \"example.com\"))"),
        "{raw_env}"
    );
    assert!(raw_env.contains("((NIL NIL \"sec\" \"example.com\"))"));
    assert!(raw_env.contains("\"<x@y>\""));
    let utf8_env = env(raw, true);
    assert!(utf8_env.contains("\"André\" NIL \"andre\""), "{utf8_env}");
    assert!(utf8_env.contains("\"élève\""), "{utf8_env}");
    // Reply-To defaults to From, Sender given.
    let e = ParsedMessage::parse(raw).envelope(false);
    assert_eq!(e.reply_to, e.from);
    assert_ne!(e.sender, e.from);
    assert!(e.cc.is_empty() && e.bcc.is_empty() && e.date.is_none());
}

#[test]
fn eight_bit_headers_kept_raw() {
    let raw = b"Subject: caf\xe9 \xff\r\nFrom: \xc3\xa9 <x@example.com>\r\n\r\nbody";
    let e = ParsedMessage::parse(raw).envelope(false);
    assert_eq!(e.subject.as_deref(), Some(&b"caf\xe9 \xff"[..]));
    // 8-bit data goes out as a literal.
    let w = env(raw, false);
    assert!(w.contains("{6}\r\ncaf"), "{w}");
}

#[test]
fn alternative_with_attachments() {
    let raw = b"Content-Type: multipart/mixed; boundary=\"m\"\r\n\r\n\
--m\r\n\
Content-Type: multipart/alternative; boundary=\"a\"\r\n\r\n\
--a\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
caf=C3=A9 =\r\nsoft\r\n\
--a\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>caf\xc3\xa9</p>\r\n--a--\r\n\
--m\r\n\
Content-Type: application/pdf; name=\"r.pdf\"\r\n\
Content-Disposition: attachment; filename=\"r.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\
Content-ID: <pdf@x>\r\n\
Content-Description: The report\r\n\
Content-Language: en, de\r\n\
Content-Location: http://x/r.pdf\r\n\r\n\
JVBERi0x\r\nLjQK\r\n\
--m\r\n\
Content-Type: application/x-odd\r\n\
Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin\r\n\
--m--\r\n";
    let bs = bodystructure(raw);
    assert!(bs.contains("(\"APPLICATION\" \"PDF\" (\"NAME\" \"r.pdf\") \"<pdf@x>\" \"The report\" \"BASE64\" 14 NIL (\"ATTACHMENT\" (\"FILENAME\" \"r.pdf\")) (\"en\" \"de\") \"http://x/r.pdf\")"), "{bs}");
    assert!(
        bs.contains("\"ALTERNATIVE\" (\"BOUNDARY\" \"a\") NIL NIL NIL)"),
        "{bs}"
    );
    let m = ParsedMessage::parse(raw);
    assert_eq!(m.binary(&[1, 1]).unwrap().unwrap(), "café soft".as_bytes());
    assert_eq!(m.binary(&[2]).unwrap().unwrap(), &b"%PDF-1.4\n"[..]);
    assert_eq!(m.binary_size(&[2]).unwrap(), Some(9));
    assert_eq!(
        m.binary(&[1, 2]).unwrap().unwrap(),
        "<p>café</p>".as_bytes()
    );
    assert_eq!(m.binary(&[3]), Err(BinaryError::UnknownCte));
    assert_eq!(m.binary(&[9]), Ok(None));
    assert_eq!(m.binary(&[]).unwrap().unwrap().len(), raw.len());
}

#[test]
fn missing_boundary_and_unclosed_multipart() {
    // No boundary parameter: plain text.
    let raw = b"Content-Type: multipart/mixed\r\n\r\nhello\r\n";
    assert!(bodystructure(raw).starts_with("BODYSTRUCTURE (\"TEXT\" \"PLAIN\""));
    // Boundary that never occurs: plain text.
    let raw = b"Content-Type: multipart/mixed; boundary=zz\r\n\r\nhello\r\n";
    assert!(bodystructure(raw).starts_with("BODYSTRUCTURE (\"TEXT\" \"PLAIN\""));
    assert_eq!(sect(raw, "1").unwrap(), "hello\r\n");
    // No close delimiter: the last part runs to the end.
    let raw =
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\none\r\n--b\r\n\r\ntwo\r\n";
    assert_eq!(sect(raw, "1").unwrap(), "one");
    assert_eq!(sect(raw, "2").unwrap(), "two\r\n");
    // Boundary-like lines that are not delimiters.
    let raw =
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n--bx\r\n--b --\r\n--b--\r\n";
    assert_eq!(sect(raw, "1").unwrap(), "--bx\r\n--b --");
}

#[test]
fn malformed_headers() {
    // No blank line: everything is header.
    let raw = b"Subject: x\r\nnot a header line\r\n";
    let m = ParsedMessage::parse(raw);
    assert_eq!(m.section(&parse_section("TEXT")).unwrap(), &b""[..]);
    assert_eq!(m.envelope(false).subject.as_deref(), Some(&b"x"[..]));
    // Garbage content type.
    let raw = b"Content-Type: ;;;\r\nContent-Transfer-Encoding:\r\n\r\nx";
    assert!(bodystructure(raw).starts_with("BODYSTRUCTURE (\"TEXT\" \"PLAIN\""));
    // LF-only line ends.
    let raw = b"Subject: lf\nContent-Type: multipart/mixed; boundary=q\n\n--q\n\nA\n--q--\n";
    assert_eq!(sect(raw, "1").unwrap(), "A");
    assert_eq!(
        sect(raw, "HEADER.FIELDS (SUBJECT)").unwrap(),
        "Subject: lf\n\r\n"
    );
    // Empty message.
    let m = ParsedMessage::parse(b"");
    assert!(bodystructure(b"").starts_with("BODYSTRUCTURE (\"TEXT\" \"PLAIN\""));
    assert_eq!(m.envelope(false), Envelope::default());
    // Folded header values are unfolded.
    let raw = b"Subject: a\r\n b\r\n\r\n";
    assert_eq!(
        ParsedMessage::parse(raw).envelope(false).subject.as_deref(),
        Some(&b"a b"[..])
    );
}

#[test]
fn huge_header_counts_are_linear() {
    let mut raw = Vec::new();
    for i in 0..50_000 {
        raw.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    raw.extend_from_slice(b"To: ");
    for i in 0..5000 {
        raw.extend_from_slice(format!("u{i}@example.com, ").as_bytes());
    }
    raw.extend_from_slice(b"z@example.com\r\nSubject: s\r\n\r\nbody\r\n");
    let start = std::time::Instant::now();
    let m = ParsedMessage::parse(&raw);
    let e = m.envelope(false);
    assert_eq!(e.to.len(), MAX_ADDRESSES);
    assert_eq!(e.subject.as_deref(), Some(&b"s"[..]));
    let h = m
        .section(&parse_section("HEADER.FIELDS (SUBJECT)"))
        .unwrap();
    assert_eq!(h, &b"Subject: s\r\n\r\n"[..]);
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn deep_nesting_is_bounded() {
    let mut raw = Vec::new();
    for i in 0..200 {
        raw.extend_from_slice(
            format!("Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n")
                .as_bytes(),
        );
    }
    raw.extend_from_slice(b"\r\nleaf\r\n");
    let m = ParsedMessage::parse(&raw);
    // Below the limit the text is not split out, but it is still searched (flat).
    assert!(
        m.texts().any(|t| t.contains("leaf")),
        "deep text hidden from SEARCH"
    );
    fn depth(b: &BodyStructure) -> usize {
        match b {
            BodyStructure::Multi { parts, .. } => 1 + parts.iter().map(depth).max().unwrap_or(0),
            BodyStructure::Single {
                specific: SinglePartKind::Message { body, .. },
                ..
            } => 1 + depth(body),
            _ => 1,
        }
    }
    assert!(depth(&m.body_structure(false)) <= MAX_DEPTH + 1);
    // Nested messages too.
    let mut raw = Vec::new();
    for _ in 0..200 {
        raw.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
    }
    raw.extend_from_slice(b"Subject: inner\r\n\r\nhidden words\r\n");
    let m = ParsedMessage::parse(&raw);
    assert!(m.texts().any(|t| t.contains("hidden words")));
    assert!(depth(&m.body_structure(false)) <= MAX_DEPTH + 1);
    let _ = wire(
        FetchValue::BodyStructure(Box::new(m.body_structure(true))),
        true,
    );
}

#[test]
fn many_parts_are_bounded() {
    let mut raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n".to_vec();
    for _ in 0..(MAX_PARTS * 2) {
        raw.extend_from_slice(b"--b\r\n\r\nx\r\n");
    }
    let m = ParsedMessage::parse(&raw);
    let BodyStructure::Multi { parts, .. } = m.body_structure(false) else {
        panic!()
    };
    assert!(parts.len() <= MAX_PARTS + 1);
}

#[test]
fn digest_children_default_to_message() {
    let raw = b"Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nSubject: in digest\r\n\r\nhi\r\n--d--\r\n";
    let bs = bodystructure(raw);
    assert!(
        bs.starts_with("BODYSTRUCTURE ((\"MESSAGE\" \"RFC822\""),
        "{bs}"
    );
    assert!(bs.contains("\"in digest\""), "{bs}");
    assert_eq!(sect(raw, "1.HEADER").unwrap(), "Subject: in digest\r\n\r\n");
}

#[test]
fn partial_ranges() {
    let d = b"0123456789";
    let p = |offset, length| Some(Partial { offset, length });
    assert_eq!(apply_partial(d, None), (&d[..], None));
    assert_eq!(apply_partial(d, p(2, 3)), (&b"234"[..], Some(2)));
    assert_eq!(apply_partial(d, p(8, 100)), (&b"89"[..], Some(8)));
    assert_eq!(apply_partial(d, p(20, 1)), (&b""[..], Some(20)));
    assert_eq!(
        apply_partial(d, p(u32::MAX, u32::MAX)),
        (&b""[..], Some(u32::MAX))
    );
}

#[test]
fn transfer_decodings() {
    assert_eq!(decode_base64(b"aGVs\r\nbG8=\r\n"), b"hello");
    assert_eq!(decode_base64(b"aGVsbG8"), b"hello");
    assert_eq!(decode_base64(b"!!"), b"");
    assert_eq!(decode_qp(b"a=3Db=\r\nc  \r\n=ZZ="), b"a=bc\r\n=ZZ");
    assert_eq!(text_out("plain", false), b"plain");
    assert_eq!(text_out("é", false), b"=?UTF-8?B?w6k=?=");
    assert_eq!(text_out("é", true), "é".as_bytes());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
    #[test]
    fn random_bytes_never_panic(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2000)) {
        exercise(&raw);
    }

    #[test]
    fn mime_like_input_never_panics(chunks in proptest::collection::vec(
        proptest::sample::select(vec![
            &b"Content-Type: multipart/mixed; boundary=b\r\n"[..],
            b"Content-Type: message/rfc822\r\n", b"Content-Type: multipart/digest; boundary=c\r\n",
            b"Content-Transfer-Encoding: base64\r\n", b"Content-Transfer-Encoding: quoted-printable\r\n",
            b"From: a <b@c>, g: x@y;\r\n", b"Subject: =?utf-8?q?x?=\r\n", b"\r\n", b"\n", b"--b\r\n",
            b"--b--\r\n", b"--c\r\n", b"text=\r\n", b"=E9", b"\xff\xfe", b" folded\r\n", b"x",
        ]), 0..60)) {
        exercise(&chunks.concat());
    }
}

fn exercise(raw: &[u8]) {
    let m = ParsedMessage::parse(raw);
    for utf8 in [false, true] {
        let _ = wire(FetchValue::Envelope(Box::new(m.envelope(utf8))), utf8);
        let _ = wire(
            FetchValue::BodyStructure(Box::new(m.body_structure(utf8))),
            utf8,
        );
    }
    for path in crate::fuzzing::SAMPLE_PARTS {
        for text in crate::fuzzing::sample_section_texts() {
            let _ = m.section(&Section {
                part: path.to_vec(),
                text,
            });
        }
        let _ = m.binary(path);
    }
}

#[test]
fn encoded_or_empty_encapsulated_messages() {
    // Base64 message/rfc822 (not allowed by RFC 2046): an opaque leaf, no envelope.
    let raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\nU3ViamVjdDogeA0KDQp5\r\n--b--\r\n";
    let bs = bodystructure(raw);
    assert!(
        bs.starts_with("BODYSTRUCTURE ((\"MESSAGE\" \"RFC822\" NIL NIL NIL \"BASE64\" 20 NIL"),
        "{bs}"
    );
    assert_eq!(
        ParsedMessage::parse(raw).binary(&[1]).unwrap().unwrap(),
        &b"Subject: x\r\n\r\ny"[..]
    );
    // An empty message/global part still has an envelope and a body.
    let raw = b"Content-Type: message/global\r\n\r\n";
    let bs = bodystructure(raw);
    assert_eq!(
        bs,
        "BODYSTRUCTURE (\"MESSAGE\" \"GLOBAL\" NIL NIL NIL \"7BIT\" 0 (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) \
(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 0 0 NIL NIL NIL NIL) 0 NIL NIL NIL NIL)"
    );
    assert_eq!(sect(raw, "1.HEADER").unwrap(), "");
    assert_eq!(sect(raw, "1.TEXT").unwrap(), "");
}

fn fetch(raw: &[u8], items: &str) -> Result<Vec<String>, BinaryError> {
    let line = format!("a FETCH 1 ({items})");
    let cmd = crate::parse::parse_command(line.as_bytes(), &Default::default()).unwrap();
    let crate::command::CommandBody::Fetch(f) = cmd.body else {
        panic!()
    };
    let m = ParsedMessage::parse(raw);
    let mut out = Vec::new();
    for attr in &f.items {
        if let Some(v) = m.fetch_item(attr, false) {
            out.push(wire(v?, false));
        }
    }
    Ok(out)
}

#[test]
fn fetch_items_with_partials() {
    let raw = b"Subject: s\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
Content-Transfer-Encoding: base64\r\n\r\nAAEC\r\n--b\r\nContent-Transfer-Encoding: x-weird\r\n\r\nq\r\n--b--\r\n";
    assert_eq!(
        fetch(
            raw,
            "FLAGS BODY.PEEK[1]<1.2> BINARY.PEEK[1] BINARY.SIZE[1] BODY[9]"
        )
        .unwrap(),
        [
            "BODY[1]<1> {2}\r\nAE",
            "BINARY[1] ~{3}\r\n\u{0}\u{1}\u{2}",
            "BINARY.SIZE[1] 3",
            "BODY[9] NIL",
        ]
    );
    assert_eq!(
        fetch(raw, "RFC822.HEADER BODY[HEADER.FIELDS (SUBJECT)]<0.5>").unwrap(),
        [
            "RFC822.HEADER {57}\r\nSubject: s\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n",
            "BODY[HEADER.FIELDS (SUBJECT)]<0> {5}\r\nSubje",
        ]
    );
    assert_eq!(fetch(raw, "BINARY[2]"), Err(BinaryError::UnknownCte));
    assert_eq!(fetch(raw, "BINARY.SIZE[2]"), Err(BinaryError::UnknownCte));
    assert_eq!(
        Response::no(
            "a",
            Some(crate::response::Code::UnknownCte),
            "Unknown encoding"
        )
        .to_bytes(EncodeOptions::default()),
        b"a NO [UNKNOWN-CTE] Unknown encoding\r\n"
    );
}

/// NUL never leaves in a plain literal: BODY[1] of a binary leaf comes base64-encoded, the
/// whole message and RFC822 with each NUL as 0x80 (sizes kept); BINARY[1] is untouched.
#[test]
fn nul_bytes_are_encoded_outside_binary() {
    let raw = b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n\0-\xe4\r\n";
    let m = ParsedMessage::parse(raw);
    let body = |part: Vec<u32>| {
        let attr = FetchAttr::BodySection {
            peek: true,
            section: Section { part, text: None },
            partial: None,
        };
        match m.fetch_item(&attr, false) {
            Some(Ok(FetchValue::BodySection { data, .. })) => data.unwrap(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(body(vec![1]), b"AC3kDQo=\r\n");
    let whole = body(vec![]);
    assert_eq!(whole.len(), raw.len());
    assert!(!whole.contains(&0) && whole.ends_with(b"\r\n\x80-\xe4\r\n"));
    let binary = FetchAttr::Binary {
        peek: true,
        part: vec![1],
        partial: None,
    };
    match m.fetch_item(&binary, false) {
        Some(Ok(FetchValue::Binary { data, .. })) => assert_eq!(data.unwrap(), b"\0-\xe4\r\n"),
        other => panic!("{other:?}"),
    }
}

/// imaptest `fetch-envelope`: groups (empty, or with only a comment) and source routes.
#[test]
fn envelope_groups_comments_and_routes() {
    let raw = b"From: user@domain (Real Name)\r\n\
To: group: g1@d1.org, g2@d2.org;, group2: g3@d3.org;\r\n\
Cc: group:;, group2: (foo) ;\r\n\r\nbody";
    let w = env(raw, false);
    assert!(
        w.contains("((\"Real Name\" NIL \"user\" \"domain\"))"),
        "{w}"
    );
    assert!(
        w.contains(
            "((NIL NIL \"group\" NIL)(NIL NIL \"g1\" \"d1.org\")(NIL NIL \"g2\" \"d2.org\")\
(NIL NIL NIL NIL)(NIL NIL \"group2\" NIL)(NIL NIL \"g3\" \"d3.org\")(NIL NIL NIL NIL))"
        ),
        "{w}"
    );
    assert!(
        w.contains(
            "((NIL NIL \"group\" NIL)(NIL NIL NIL NIL)(NIL NIL \"group2\" NIL)(NIL NIL NIL NIL))"
        ),
        "{w}"
    );

    let w = env(b"From: <@route:user@domain>\r\n\r\n", false);
    assert!(w.contains("((NIL \"@route\" \"user\" \"domain\"))"), "{w}");
    let w = env(b"To: Name <@r1,@r2:u@d>, x@y\r\n\r\n", false);
    assert!(
        w.contains("((\"Name\" \"@r1,@r2\" \"u\" \"d\")(NIL NIL \"x\" \"y\"))"),
        "{w}"
    );

    // A comment-only member is no address, in a group or not; a bare phrase still is
    // one (as before), and comments around an address stay its display name.
    let w = env(b"To: a@b, (c), g: (c1), d@e (c2);\r\n\r\n", false);
    assert!(
        w.contains(
            "((NIL NIL \"a\" \"b\")(NIL NIL \"g\" NIL)(\"c2\" NIL \"d\" \"e\")(NIL NIL NIL NIL))"
        ),
        "{w}"
    );
    let w = env(b"To: (only a comment)\r\nCc: undisclosed\r\n\r\n", false);
    assert_eq!(
        w,
        "ENVELOPE (NIL NIL NIL NIL NIL NIL ((\"undisclosed\" NIL \"\" \"\")) NIL NIL NIL)"
    );
    // Commas and colons inside quotes, comments and angle brackets don't split members.
    let w = env(
        b"To: \"a,b:c\" (x,y;z) <a@b>, (q,r), <@r:s@t>\r\n\r\n",
        false,
    );
    assert!(
        w.contains("((\"a,b:c (x,y;z)\" NIL \"a\" \"b\")(NIL \"@r\" \"s\" \"t\"))"),
        "{w}"
    );
}

#[test]
fn comment_only_member_scan() {
    assert_eq!(comment_only_members(b"group:;, group2: (foo) ;"), [true]);
    assert_eq!(
        comment_only_members(b"a@b, , (c), \"q(\" <x@y>, g: (c1) d;"),
        [false, true, false, false]
    );
    assert_eq!(comment_only_members(b"(a (nested\\) b) c)"), [true]);
    assert_eq!(comment_only_members(b"<user (c)@ (c) domain>"), [false]);
    assert!(comment_only_members(b"").is_empty());
}

#[test]
fn canonical_address_forms() {
    assert_eq!(
        canonical_addresses(b" <user-from (comment)@ (comment) domain.org>"),
        ["user-from@domain.org"]
    );
    assert_eq!(
        canonical_addresses(b" g: (c) x@y, <u (c)@ d.org>;, N <@r1,@r2:v@e>, (only)"),
        ["x@y", "u@d.org", "v@e"]
    );
    assert!(canonical_addresses(b" undisclosed-recipients:;").is_empty());
    assert_eq!(without_blanks("\"a b\"@ c"), "\"a b\"@c");
    assert_eq!(without_blanks("\"a\\\" b\" @c"), "\"a\\\" b\"@c");
    // The ENVELOPE's mailbox and host lose such blanks too.
    let w = env(b"From: <u (c)@ (c) d.org>\r\n\r\n", false);
    assert!(w.contains("NIL \"u\" \"d.org\")"), "{w}");
}
