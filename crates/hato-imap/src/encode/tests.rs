use super::*;
use crate::command::SectionText;
use crate::datetime::Date;
use crate::sequence::NumberSet;
use proptest::prelude::*;

fn enc(r: &Response) -> String {
    String::from_utf8(r.to_bytes(EncodeOptions::default())).unwrap()
}

fn enc_utf8(r: &Response) -> String {
    String::from_utf8(r.to_bytes(EncodeOptions { utf8: true })).unwrap()
}

fn data(d: Data) -> Response {
    Response::Data(d)
}

fn s(v: &str) -> String {
    v.to_string()
}

fn b(v: &str) -> Vec<u8> {
    v.as_bytes().to_vec()
}

#[test]
fn status_responses() {
    assert_eq!(
        enc(&Response::untagged(
            StatusKind::Ok,
            Some(Code::UidValidity(3857529045)),
            "UIDs valid"
        )),
        "* OK [UIDVALIDITY 3857529045] UIDs valid\r\n"
    );
    assert_eq!(
        enc(&Response::tagged(
            "A142",
            StatusKind::Ok,
            Some(Code::ReadWrite),
            "SELECT completed"
        )),
        "A142 OK [READ-WRITE] SELECT completed\r\n"
    );
    assert_eq!(
        enc(&Response::bad("a", None, "command unknown")),
        "a BAD command unknown\r\n"
    );
    assert_eq!(
        enc(&Response::untagged(StatusKind::PreAuth, None, "welcome")),
        "* PREAUTH welcome\r\n"
    );
    assert_eq!(
        enc(&Response::bye("Autologout; idle for too long")),
        "* BYE Autologout; idle for too long\r\n"
    );
    assert_eq!(
        enc(&Response::no("a", Some(Code::TryCreate), "no such mailbox")),
        "a NO [TRYCREATE] no such mailbox\r\n"
    );
}

#[test]
fn text_is_sanitised() {
    assert_eq!(
        enc(&Response::ok("a", "evil\r\nb OK injected")),
        "a OK evil  b OK injected\r\n"
    );
    assert_eq!(enc(&Response::ok("a", "")), "a OK done\r\n");
    assert_eq!(
        enc(&Response::ok("a", "[ALERT] fake")),
        "a OK - [ALERT] fake\r\n"
    );
    assert_eq!(enc(&Response::ok("a", "tab\there\0")), "a OK tab here \r\n");
    assert_eq!(
        enc(&Response::Continue(s("Ready for literal data"))),
        "+ Ready for literal data\r\n"
    );
    assert_eq!(enc(&Response::ContinueBase64(vec![])), "+ \r\n");
    assert_eq!(
        enc(&Response::ContinueBase64(b"abc".to_vec())),
        "+ YWJj\r\n"
    );
}

#[test]
fn codes() {
    let cases: Vec<(Code, &str)> = vec![
        (Code::Alert, "ALERT"),
        (Code::BadCharset(vec![]), "BADCHARSET"),
        (
            Code::BadCharset(vec![s("UTF-8"), s("US-ASCII")]),
            "BADCHARSET (UTF-8 US-ASCII)",
        ),
        (
            Code::Capability(vec![s("IMAP4rev2"), s("AUTH=PLAIN")]),
            "CAPABILITY IMAP4rev2 AUTH=PLAIN",
        ),
        (Code::Parse, "PARSE"),
        (
            Code::PermanentFlags {
                flags: vec![Flag::Deleted, Flag::Seen],
                any: true,
            },
            "PERMANENTFLAGS (\\Deleted \\Seen \\*)",
        ),
        (
            Code::PermanentFlags {
                flags: vec![],
                any: false,
            },
            "PERMANENTFLAGS ()",
        ),
        (Code::ReadOnly, "READ-ONLY"),
        (Code::UidNext(4392), "UIDNEXT 4392"),
        (Code::Unseen(12), "UNSEEN 12"),
        (
            Code::AppendUid {
                uidvalidity: 38505,
                uids: NumberSet::from_numbers([3955]),
            },
            "APPENDUID 38505 3955",
        ),
        (
            Code::CopyUid {
                uidvalidity: 38505,
                source: NumberSet::from_numbers([304, 319, 320]),
                destination: NumberSet::from_numbers([3956, 3957, 3958]),
            },
            "COPYUID 38505 304,319:320 3956:3958",
        ),
        (
            Code::HighestModSeq(715194045007),
            "HIGHESTMODSEQ 715194045007",
        ),
        (Code::NoModSeq, "NOMODSEQ"),
        (
            Code::Modified(NumberSet::from_numbers([7, 9])),
            "MODIFIED 7,9",
        ),
        (Code::Closed, "CLOSED"),
        (Code::TooBig, "TOOBIG"),
        (
            Code::BadUrl("/INBOX;UIDVALIDITY=5/;UID=3/;SECTION=\"]x".into()),
            "BADURL \"/INBOX;UIDVALIDITY=5/;UID=3/;SECTION=\\\"x\"",
        ),
        (Code::OverQuota, "OVERQUOTA"),
        (Code::AuthenticationFailed, "AUTHENTICATIONFAILED"),
        (Code::PrivacyRequired, "PRIVACYREQUIRED"),
        (Code::HasChildren, "HASCHILDREN"),
        (Code::NonExistent, "NONEXISTENT"),
        (Code::AlreadyExists, "ALREADYEXISTS"),
        (Code::Cannot, "CANNOT"),
        (Code::Limit, "LIMIT"),
        (Code::ServerBug, "SERVERBUG"),
        (Code::UseAttr, "USEATTR"),
    ];
    for (code, text) in cases {
        assert_eq!(
            enc(&Response::no("t", Some(code), "x")),
            format!("t NO [{text}] x\r\n")
        );
    }
}

#[test]
fn simple_data() {
    assert_eq!(
        enc(&data(Data::Capability(vec![
            s("IMAP4rev2"),
            s("STARTTLS"),
            s("LOGINDISABLED")
        ]))),
        "* CAPABILITY IMAP4rev2 STARTTLS LOGINDISABLED\r\n"
    );
    assert_eq!(enc(&data(Data::Enabled(vec![]))), "* ENABLED\r\n");
    assert_eq!(
        enc(&data(Data::Enabled(vec![s("CONDSTORE")]))),
        "* ENABLED CONDSTORE\r\n"
    );
    assert_eq!(enc(&data(Data::Exists(23))), "* 23 EXISTS\r\n");
    assert_eq!(enc(&data(Data::Recent(5))), "* 5 RECENT\r\n");
    assert_eq!(enc(&data(Data::Expunge(3))), "* 3 EXPUNGE\r\n");
    assert_eq!(
        enc(&data(Data::Vanished {
            earlier: true,
            uids: NumberSet::from_numbers([41, 43, 44, 45])
        })),
        "* VANISHED (EARLIER) 41,43:45\r\n"
    );
    assert_eq!(
        enc(&data(Data::Vanished {
            earlier: false,
            uids: NumberSet::from_numbers([405, 407, 410])
        })),
        "* VANISHED 405,407,410\r\n"
    );
    assert_eq!(
        enc(&data(Data::Flags(vec![
            Flag::Answered,
            Flag::Flagged,
            Flag::Deleted,
            Flag::Seen,
            Flag::Draft
        ]))),
        "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
    );
}

#[test]
fn search_and_esearch() {
    assert_eq!(
        enc(&data(Data::Search {
            ids: vec![2, 84, 882],
            modseq: None
        })),
        "* SEARCH 2 84 882\r\n"
    );
    assert_eq!(
        enc(&data(Data::Search {
            ids: vec![],
            modseq: None
        })),
        "* SEARCH\r\n"
    );
    assert_eq!(
        enc(&data(Data::Search {
            ids: vec![2, 5],
            modseq: Some(917162500)
        })),
        "* SEARCH 2 5 (MODSEQ 917162500)\r\n"
    );
    // RFC 4731 §3.1 examples
    assert_eq!(
        enc(&data(Data::ESearch {
            tag: Some(s("A285")),
            uid: true,
            min: Some(7),
            max: Some(3800),
            all: None,
            count: None,
            modseq: None
        })),
        "* ESEARCH (TAG \"A285\") UID MIN 7 MAX 3800\r\n"
    );
    assert_eq!(
        enc(&data(Data::ESearch {
            tag: Some(s("A286")),
            uid: false,
            min: None,
            max: None,
            all: None,
            count: Some(15),
            modseq: None
        })),
        "* ESEARCH (TAG \"A286\") COUNT 15\r\n"
    );
    assert_eq!(
        enc(&data(Data::ESearch {
            tag: Some(s("A283")),
            uid: false,
            min: None,
            max: None,
            all: Some(NumberSet::from_numbers([2, 10, 11])),
            count: None,
            modseq: Some(5)
        })),
        "* ESEARCH (TAG \"A283\") ALL 2,10:11 MODSEQ 5\r\n"
    );
    // No match: just the tag (an empty ALL is never written).
    assert_eq!(
        enc(&data(Data::ESearch {
            tag: Some(s("A1")),
            uid: false,
            min: None,
            max: None,
            all: Some(NumberSet::new()),
            count: None,
            modseq: None
        })),
        "* ESEARCH (TAG \"A1\")\r\n"
    );
}

#[test]
fn list_status_and_names() {
    assert_eq!(
        enc(&data(Data::List(ListItem {
            attributes: vec![s("\\Noselect")],
            delimiter: Some('/'),
            name: s("~/Mail/foo"),
            ..ListItem::default()
        }))),
        "* LIST (\\Noselect) \"/\" \"~/Mail/foo\"\r\n"
    );
    assert_eq!(
        enc(&data(Data::List(ListItem {
            attributes: vec![],
            delimiter: None,
            name: s("INBOX"),
            ..ListItem::default()
        }))),
        "* LIST () NIL \"INBOX\"\r\n"
    );
    // RFC 5258 CHILDINFO, RFC 9051 OLDNAME.
    assert_eq!(
        enc(&data(Data::List(ListItem {
            attributes: vec![s("\\HasChildren")],
            delimiter: Some('/'),
            name: s("Foo"),
            child_info_subscribed: true,
            old_name: None,
        }))),
        "* LIST (\\HasChildren) \"/\" \"Foo\" (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n"
    );
    assert_eq!(
        enc(&data(Data::List(ListItem {
            attributes: vec![],
            delimiter: Some('/'),
            name: s("Bar"),
            child_info_subscribed: false,
            old_name: Some(s("Foo")),
        }))),
        "* LIST () \"/\" \"Bar\" (\"OLDNAME\" (\"Foo\"))\r\n"
    );
    // Modified UTF-7 for rev1 clients, UTF-8 for others.
    let item = data(Data::Lsub(ListItem {
        attributes: vec![s("\\Drafts")],
        delimiter: Some('/'),
        name: s("Entwürfe"),
        ..ListItem::default()
    }));
    assert_eq!(enc(&item), "* LSUB (\\Drafts) \"/\" \"Entw&APw-rfe\"\r\n");
    assert_eq!(enc_utf8(&item), "* LSUB (\\Drafts) \"/\" \"Entwürfe\"\r\n");
    // A name with a quote or backslash is escaped.
    assert_eq!(
        enc(&data(Data::List(ListItem {
            delimiter: Some('/'),
            name: s("a\"b\\c"),
            ..ListItem::default()
        }))),
        "* LIST () \"/\" \"a\\\"b\\\\c\"\r\n"
    );
    assert_eq!(
        enc(&data(Data::Status {
            mailbox: s("blurdybloop"),
            items: vec![
                StatusValue::Messages(231),
                StatusValue::UidNext(44292),
                StatusValue::Size(1_000_000_000_000),
                StatusValue::HighestModSeq(7),
                StatusValue::AppendLimit(None),
                StatusValue::AppendLimit(Some(1024)),
                StatusValue::Deleted(0),
            ]
        })),
        "* STATUS \"blurdybloop\" (MESSAGES 231 UIDNEXT 44292 SIZE 1000000000000 HIGHESTMODSEQ 7 APPENDLIMIT NIL APPENDLIMIT 1024 DELETED 0)\r\n"
    );
}

#[test]
fn id_namespace_quota() {
    assert_eq!(
        enc(&data(Data::Id(Some(vec![
            (s("name"), Some(s("hato"))),
            (s("support-url"), None)
        ])))),
        "* ID (\"name\" \"hato\" \"support-url\" NIL)\r\n"
    );
    assert_eq!(enc(&data(Data::Id(None))), "* ID NIL\r\n");
    assert_eq!(
        enc(&data(Data::Namespace {
            personal: vec![NamespaceDesc {
                prefix: s(""),
                delimiter: Some('/')
            }],
            other: vec![],
            shared: vec![]
        })),
        "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n"
    );
    assert_eq!(
        enc(&data(Data::Quota {
            root: s(""),
            resources: vec![QuotaResource {
                name: s("STORAGE"),
                usage: 10,
                limit: 512
            }]
        })),
        "* QUOTA \"\" (STORAGE 10 512)\r\n"
    );
    assert_eq!(
        enc(&data(Data::QuotaRoot {
            mailbox: s("INBOX"),
            roots: vec![s("")]
        })),
        "* QUOTAROOT \"INBOX\" \"\"\r\n"
    );
}

#[test]
fn quota_responses() {
    let res = |name: &str, usage: u64, limit: u64| QuotaResource {
        name: s(name),
        usage,
        limit,
    };
    // RFC 9208 §4.1.1 / §4.1.2 examples.
    assert_eq!(
        enc(&data(Data::Quota {
            root: s("!partition/sda4"),
            resources: vec![res("STORAGE", 104, 10923847)]
        })),
        "* QUOTA !partition/sda4 (STORAGE 104 10923847)\r\n"
    );
    assert_eq!(
        enc(&data(Data::Quota {
            root: s("#user/alice"),
            resources: vec![res("STORAGE", 54, 111), res("MESSAGE", 42, 1000)]
        })),
        "* QUOTA #user/alice (STORAGE 54 111 MESSAGE 42 1000)\r\n"
    );
    assert_eq!(
        enc(&data(Data::QuotaRoot {
            mailbox: s("INBOX"),
            roots: vec![s("#user/alice"), s("!partition/sda4")]
        })),
        "* QUOTAROOT \"INBOX\" #user/alice !partition/sda4\r\n"
    );
    // Root names are astrings: quoted when needed, never the atom NIL, literals for 8-bit
    // names unless the client takes UTF-8.
    for (root, wire) in [
        ("User quota", "\"User quota\""),
        ("NIL", "\"NIL\""),
        ("a\"b", "\"a\\\"b\""),
        ("", "\"\""),
    ] {
        assert_eq!(
            enc(&data(Data::Quota {
                root: s(root),
                resources: vec![res("STORAGE", 0, 1)]
            })),
            format!("* QUOTA {wire} (STORAGE 0 1)\r\n")
        );
    }
    let r = data(Data::Quota {
        root: s("Benutzerkontingent ä"),
        resources: vec![res("STORAGE", 0, 1)],
    });
    assert_eq!(
        enc(&r),
        "* QUOTA {21}\r\nBenutzerkontingent ä (STORAGE 0 1)\r\n"
    );
    assert_eq!(
        enc_utf8(&r),
        "* QUOTA \"Benutzerkontingent ä\" (STORAGE 0 1)\r\n"
    );
    // number64: never more than 2^63-1 on the wire.
    assert_eq!(
        enc(&data(Data::Quota {
            root: s(""),
            resources: vec![res("STORAGE", u64::MAX, i64::MAX as u64)]
        })),
        "* QUOTA \"\" (STORAGE 9223372036854775807 9223372036854775807)\r\n"
    );
    // QUOTAROOT: a mailbox without roots; mailbox names in modified UTF-7 or UTF-8.
    assert_eq!(
        enc(&data(Data::QuotaRoot {
            mailbox: s("Archive"),
            roots: vec![]
        })),
        "* QUOTAROOT \"Archive\"\r\n"
    );
    let r = data(Data::QuotaRoot {
        mailbox: s("Entwürfe/台北"),
        roots: vec![s("")],
    });
    assert_eq!(enc(&r), "* QUOTAROOT \"Entw&APw-rfe/&U,BTFw-\" \"\"\r\n");
    assert_eq!(enc_utf8(&r), "* QUOTAROOT \"Entwürfe/台北\" \"\"\r\n");
    // STATUS DELETED-STORAGE (RFC 9208 §4.1.4 example).
    assert_eq!(
        enc(&data(Data::Status {
            mailbox: s("INBOX"),
            items: vec![
                StatusValue::Messages(12),
                StatusValue::Deleted(4),
                StatusValue::DeletedStorage(8)
            ]
        })),
        "* STATUS \"INBOX\" (MESSAGES 12 DELETED 4 DELETED-STORAGE 8)\r\n"
    );
    assert_eq!(
        enc(&data(Data::Status {
            mailbox: s("INBOX"),
            items: vec![StatusValue::DeletedStorage(u64::MAX)]
        })),
        "* STATUS \"INBOX\" (DELETED-STORAGE 9223372036854775807)\r\n"
    );
    assert_eq!(
        StatusValue::DeletedStorage(1).item(),
        crate::command::StatusItem::DeletedStorage
    );
    // RFC 9208 §4.3.1.
    assert_eq!(
        enc(&Response::no(
            "A003",
            Some(Code::OverQuota),
            "APPEND Failed"
        )),
        "A003 NO [OVERQUOTA] APPEND Failed\r\n"
    );
    assert_eq!(
        enc(&Response::untagged(
            StatusKind::No,
            Some(Code::OverQuota),
            "Soft quota has been exceeded"
        )),
        "* NO [OVERQUOTA] Soft quota has been exceeded\r\n"
    );
    assert_eq!(
        enc(&data(Data::Capability(vec![
            s("QUOTA"),
            s("QUOTA=RES-STORAGE")
        ]))),
        "* CAPABILITY QUOTA QUOTA=RES-STORAGE\r\n"
    );
}

fn sample_envelope() -> Envelope {
    let addr = |name: Option<&str>, mb: &str, host: &str| Address {
        name: name.map(b),
        adl: None,
        mailbox: Some(b(mb)),
        host: Some(b(host)),
    };
    let terry = addr(Some("Terry Gray"), "gray", "cac.washington.edu");
    Envelope {
        date: Some(b("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)")),
        subject: Some(b("IMAP4rev1 WG mtg summary and minutes")),
        from: vec![terry.clone()],
        sender: vec![terry.clone()],
        reply_to: vec![terry],
        to: vec![addr(None, "imap", "cac.washington.edu")],
        cc: vec![
            addr(None, "minutes", "CNRI.Reston.VA.US"),
            addr(Some("John Klensin"), "KLENSIN", "MIT.EDU"),
        ],
        bcc: vec![],
        in_reply_to: None,
        message_id: Some(b("<B27397-0100000@cac.washington.edu>")),
    }
}

#[test]
fn fetch_rfc_example() {
    // RFC 3501 §8 sample (FETCH 12 FULL), our quoting.
    let text_plain = BodyStructure::Single {
        media_type: b("TEXT"),
        subtype: b("PLAIN"),
        fields: BodyFields {
            params: vec![(b("CHARSET"), b("US-ASCII"))],
            id: None,
            description: None,
            encoding: b("7BIT"),
            octets: 3028,
        },
        specific: SinglePartKind::Text { lines: 92 },
        ext: SinglePartExt::default(),
    };
    let r = data(Data::Fetch {
        seq: 12,
        items: vec![
            FetchValue::Flags(vec![Flag::Seen]),
            FetchValue::InternalDate(DateTime {
                date: Date::new(1996, 7, 17).unwrap(),
                hour: 2,
                minute: 44,
                second: 25,
                offset_minutes: -420,
            }),
            FetchValue::Rfc822Size(4286),
            FetchValue::Envelope(Box::new(sample_envelope())),
            FetchValue::Body(Box::new(text_plain.clone())),
        ],
    });
    assert_eq!(
        enc(&r),
        "* 12 FETCH (FLAGS (\\Seen) INTERNALDATE \"17-Jul-1996 02:44:25 -0700\" \
         RFC822.SIZE 4286 ENVELOPE (\"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\" \
         \"IMAP4rev1 WG mtg summary and minutes\" \
         ((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) \
         ((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) \
         ((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) \
         ((NIL NIL \"imap\" \"cac.washington.edu\")) \
         ((NIL NIL \"minutes\" \"CNRI.Reston.VA.US\")\
         (\"John Klensin\" NIL \"KLENSIN\" \"MIT.EDU\")) NIL NIL \
         \"<B27397-0100000@cac.washington.edu>\") \
         BODY (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 3028 92))\r\n"
    );
    // BODYSTRUCTURE adds the extension data.
    let r = data(Data::Fetch {
        seq: 1,
        items: vec![FetchValue::BodyStructure(Box::new(text_plain))],
    });
    assert_eq!(
        enc(&r),
        "* 1 FETCH (BODYSTRUCTURE (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 3028 92 NIL NIL NIL NIL))\r\n"
    );
}

#[test]
fn multipart_and_message_bodystructure() {
    let part = |sub: &str, n: u64| BodyStructure::Single {
        media_type: b("TEXT"),
        subtype: b(sub),
        fields: BodyFields {
            params: vec![],
            id: None,
            description: None,
            encoding: b("QUOTED-PRINTABLE"),
            octets: n,
        },
        specific: SinglePartKind::Text { lines: 1 },
        ext: SinglePartExt {
            md5: None,
            disposition: Some((b("inline"), vec![])),
            language: vec![b("en"), b("de")],
            location: None,
        },
    };
    let inner = BodyStructure::Multi {
        parts: vec![part("PLAIN", 10), part("HTML", 20)],
        subtype: b("ALTERNATIVE"),
        ext: MultiPartExt {
            params: vec![(b("BOUNDARY"), b("xyz"))],
            disposition: None,
            language: vec![b("en")],
            location: Some(b("http://x/")),
        },
    };
    let msg = BodyStructure::Single {
        media_type: b("MESSAGE"),
        subtype: b("RFC822"),
        fields: BodyFields {
            params: vec![],
            id: None,
            description: None,
            encoding: b("7BIT"),
            octets: 300,
        },
        specific: SinglePartKind::Message {
            envelope: Box::new(Envelope::default()),
            body: Box::new(inner.clone()),
            lines: 12,
        },
        ext: SinglePartExt::default(),
    };
    let r = data(Data::Fetch {
        seq: 2,
        items: vec![FetchValue::Body(Box::new(msg.clone()))],
    });
    assert_eq!(
        enc(&r),
        "* 2 FETCH (BODY (\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 300 \
         (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) \
         ((\"TEXT\" \"PLAIN\" NIL NIL NIL \"QUOTED-PRINTABLE\" 10 1)\
         (\"TEXT\" \"HTML\" NIL NIL NIL \"QUOTED-PRINTABLE\" 20 1) \"ALTERNATIVE\") 12))\r\n"
    );
    let r = data(Data::Fetch {
        seq: 2,
        items: vec![FetchValue::BodyStructure(Box::new(inner))],
    });
    assert_eq!(
        enc(&r),
        "* 2 FETCH (BODYSTRUCTURE (\
         (\"TEXT\" \"PLAIN\" NIL NIL NIL \"QUOTED-PRINTABLE\" 10 1 NIL (\"inline\" NIL) (\"en\" \"de\") NIL)\
         (\"TEXT\" \"HTML\" NIL NIL NIL \"QUOTED-PRINTABLE\" 20 1 NIL (\"inline\" NIL) (\"en\" \"de\") NIL) \
         \"ALTERNATIVE\" (\"BOUNDARY\" \"xyz\") NIL \"en\" \"http://x/\"))\r\n"
    );
}

#[test]
fn fetch_sections_use_literals() {
    let r = data(Data::Fetch {
        seq: 3,
        items: vec![
            FetchValue::Uid(4827313),
            FetchValue::BodySection {
                section: Section {
                    part: vec![],
                    text: Some(SectionText::HeaderFields {
                        not: false,
                        fields: vec![s("DATE"), s("FROM")],
                    }),
                },
                origin: None,
                data: Some(b("Date: x\r\n\r\n")),
            },
            FetchValue::BodySection {
                section: Section::default(),
                origin: Some(0),
                data: Some(b("abc")),
            },
            FetchValue::BodySection {
                section: Section {
                    part: vec![1, 2],
                    text: Some(SectionText::Mime),
                },
                origin: None,
                data: None,
            },
            FetchValue::ModSeq(12121231000),
        ],
    });
    assert_eq!(
        enc(&r),
        "* 3 FETCH (UID 4827313 BODY[HEADER.FIELDS (DATE FROM)] {11}\r\nDate: x\r\n\r\n \
         BODY[]<0> {3}\r\nabc BODY[1.2.MIME] NIL MODSEQ (12121231000))\r\n"
    );
    let r = data(Data::Fetch {
        seq: 1,
        items: vec![
            FetchValue::Binary {
                part: vec![1],
                origin: None,
                data: Some(b"a\0c".to_vec()),
            },
            FetchValue::Binary {
                part: vec![],
                origin: Some(5),
                data: Some(b("abc")),
            },
            FetchValue::BinarySize {
                part: vec![2, 1],
                size: 42,
            },
            FetchValue::Rfc822Header(Some(b("X: y\r\n\r\n"))),
            FetchValue::Rfc822(None),
        ],
    });
    assert_eq!(
        r.to_bytes(EncodeOptions::default()),
        b"* 1 FETCH (BINARY[1] ~{3}\r\na\0c BINARY[]<5> {3}\r\nabc BINARY.SIZE[2.1] 42 \
          RFC822.HEADER {8}\r\nX: y\r\n\r\n RFC822 NIL)\r\n"
            .to_vec()
    );
}

#[test]
fn string_choice() {
    let mut out = Vec::new();
    string(&mut out, b"plain", false);
    assert_eq!(out, b"\"plain\"");
    for (value, utf8, expected) in [
        (&b"a\"b"[..], false, &b"\"a\\\"b\""[..]),
        (b"line\r\nbreak", false, b"{11}\r\nline\r\nbreak"),
        (b"nul\0", false, b"{4}\r\nnul\0"),
        ("ü".as_bytes(), false, "{2}\r\nü".as_bytes()),
        ("ü".as_bytes(), true, "\"ü\"".as_bytes()),
        (b"\xff", true, b"{1}\r\n\xff"),
        (b"", false, b"\"\""),
    ] {
        let mut out = Vec::new();
        string(&mut out, value, utf8);
        assert_eq!(out, expected, "{:?}", String::from_utf8_lossy(value));
    }
    let long = vec![b'x'; MAX_QUOTED + 1];
    let mut out = Vec::new();
    string(&mut out, &long, false);
    assert!(out.starts_with(b"{1025}\r\n"));
    let mut out = Vec::new();
    astring(&mut out, b"INBOX", false);
    astring(&mut out, b" ", false);
    astring(&mut out, b"NIL", false);
    astring(&mut out, b"", false);
    assert_eq!(out, b"INBOX\" \"\"NIL\"\"\"");
    let mut out = Vec::new();
    nstring(&mut out, None, false);
    assert_eq!(out, b"NIL");
}

#[test]
fn atoms_from_storage_cannot_inject() {
    let r = data(Data::Flags(vec![Flag::Keyword(s("bad\r\n* BYE"))]));
    assert_eq!(enc(&r), "* FLAGS (bad*BYE)\r\n");
    let r = data(Data::Capability(vec![s("X\r\nY")]));
    assert_eq!(enc(&r), "* CAPABILITY XY\r\n");
}

// ---- property: the line structure cannot be broken ------------------------------------

/// Checks that CR/LF occur only at the end or inside literals whose announcement is
/// correct, i.e. a client reading the stream sees exactly one response.
fn single_response(bytes: &[u8]) -> bool {
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\r' | b'\n' => {
                // Either the final CRLF ...
                if i + 2 == bytes.len() && &bytes[i..] == b"\r\n" {
                    return true;
                }
                // ... or the end of a literal announcement `{n}` / `~{n}`.
                let Some(open) = bytes[..i].iter().rposition(|&b| b == b'{') else {
                    return false;
                };
                let digits = &bytes[open + 1..i.saturating_sub(1)];
                if bytes[i] != b'\r'
                    || bytes.get(i + 1) != Some(&b'\n')
                    || bytes[i - 1] != b'}'
                    || digits.is_empty()
                    || !digits.iter().all(u8::is_ascii_digit)
                {
                    return false;
                }
                let n: usize = std::str::from_utf8(digits).unwrap().parse().unwrap();
                i += 2 + n;
            }
            _ => i += 1,
        }
    }
    false
}

fn bytes_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..40),
        "[ -~]{0,20}".prop_map(String::into_bytes),
        Just(b"x\r\n* BYE".to_vec()),
        Just(b"{3}\r\nabc".to_vec()),
    ]
}

proptest! {
    #[test]
    fn responses_never_break_lines(
        text in "\\PC{0,30}|.{0,30}",
        tag in "[a-z0-9]{1,5}",
        subject in bytes_strategy(),
        name in "\\PC{0,20}",
        body in bytes_strategy(),
        param in bytes_strategy(),
        utf8 in any::<bool>(),
    ) {
        let opts = EncodeOptions { utf8 };
        let env = Envelope { subject: Some(subject.clone()), from: vec![Address { name: Some(param.clone()), ..Address::default() }], ..Envelope::default() };
        let responses = vec![
            Response::ok(&tag, &text),
            Response::no(&tag, Some(Code::Alert), &text),
            Response::Continue(text.clone()),
            data(Data::List(ListItem { delimiter: Some('/'), name: name.clone(), old_name: Some(name.clone()), ..ListItem::default() })),
            data(Data::Status { mailbox: name.clone(), items: vec![StatusValue::Messages(1)] }),
            data(Data::Id(Some(vec![(text.clone(), Some(text.clone()))]))),
            data(Data::Fetch { seq: 1, items: vec![
                FetchValue::Envelope(Box::new(env.clone())),
                FetchValue::BodySection { section: Section::default(), origin: None, data: Some(body.clone()) },
                FetchValue::Binary { part: vec![1], origin: None, data: Some(body.clone()) },
                FetchValue::BodyStructure(Box::new(BodyStructure::Single {
                    media_type: param.clone(), subtype: subject.clone(),
                    fields: BodyFields { params: vec![(param.clone(), subject.clone())], encoding: param.clone(), ..BodyFields::default() },
                    specific: SinglePartKind::Message { envelope: Box::new(env), body: Box::new(BodyStructure::Multi { parts: vec![], subtype: body.clone(), ext: MultiPartExt::default() }), lines: 1 },
                    ext: SinglePartExt { location: Some(body.clone()), language: vec![param.clone()], ..SinglePartExt::default() },
                })),
            ]}),
            data(Data::Namespace { personal: vec![NamespaceDesc { prefix: name.clone(), delimiter: Some('/') }], other: vec![], shared: vec![] }),
            data(Data::QuotaRoot { mailbox: name.clone(), roots: vec![text.clone()] }),
            data(Data::Quota { root: text.clone(), resources: vec![QuotaResource { name: text.clone(), usage: 1, limit: 2 }] }),
        ];
        for r in responses {
            let bytes = r.to_bytes(opts);
            prop_assert!(single_response(&bytes), "{:?}", String::from_utf8_lossy(&bytes));
        }
    }
}
