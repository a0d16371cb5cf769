use super::*;
use crate::datetime::{Date, DateTime};
use crate::flag::Flag;
use crate::sequence::{SeqNo::Largest, SeqNo::Value as V, SeqRange, SequenceSet};

fn parse(input: &[u8]) -> Result<Command> {
    parse_command(input, &ParseOptions::default())
}

fn ok(input: &[u8]) -> CommandBody {
    ok_with(input, &ParseOptions::default())
}

/// [`ok`] for a client that uses UTF-8 mailbox names.
fn ok_utf8(input: &[u8]) -> CommandBody {
    let utf8 = ParseOptions {
        utf8: true,
        ..ParseOptions::default()
    };
    ok_with(input, &utf8)
}

/// Parsed both ways ([`parse_command`] and [`parse_command_owned`]), which must agree.
fn ok_with(input: &[u8], opts: &ParseOptions) -> CommandBody {
    match parse_command(input, opts) {
        Ok(c) => {
            let owned = parse_command_owned(input.to_vec(), opts).expect("owned parse");
            assert_eq!(owned, c, "owned parse differs");
            c.body
        }
        Err(e) => panic!("{:?}: {e:?}", String::from_utf8_lossy(input)),
    }
}

/// A single APPEND message is cut out of the command's own buffer: no second copy.
#[test]
fn owned_append_is_not_copied() {
    let mut input = b"a APPEND INBOX (\\Seen) {5}\r\nhello".to_vec();
    input.reserve(100);
    let at = input.as_ptr();
    let c = parse_command_owned(input, &ParseOptions::default()).unwrap();
    let CommandBody::Append { messages, .. } = c.body else {
        panic!()
    };
    assert_eq!(messages[0].data, b"hello");
    assert_eq!(messages[0].data.as_ptr(), at, "the message was copied");
}

fn bad(input: &[u8]) -> ParseError {
    match parse(input) {
        Ok(c) => panic!("{:?} parsed: {c:?}", String::from_utf8_lossy(input)),
        Err(e) => e,
    }
}

fn set(ranges: &[(crate::sequence::SeqNo, crate::sequence::SeqNo)]) -> SequenceSet {
    SequenceSet::Ranges(
        ranges
            .iter()
            .map(|&(start, end)| SeqRange { start, end })
            .collect(),
    )
}

fn s(v: &str) -> String {
    v.to_string()
}

/// A LIST command with this reference and these patterns, nothing selected or returned.
fn list_command(reference: &str, patterns: &[&str]) -> ListCommand {
    ListCommand {
        reference: s(reference),
        patterns: patterns.iter().copied().map(s).collect(),
        ..ListCommand::default()
    }
}

/// `LIST reference pattern`: the basic form.
fn list(reference: &str, pattern: &str) -> CommandBody {
    CommandBody::List(list_command(reference, &[pattern]))
}

fn lsub(reference: &str, pattern: &str) -> CommandBody {
    CommandBody::Lsub {
        reference: s(reference),
        pattern: s(pattern),
    }
}

// ---- tag and command name ----------------------------------------------------------

#[test]
fn tags_and_simple_commands() {
    for (input, body) in [
        (&b"a001 CAPABILITY"[..], CommandBody::Capability),
        (b"a NOOP", CommandBody::Noop),
        (b"A023 LOGOUT", CommandBody::Logout),
        (b"a STARTTLS", CommandBody::StartTls),
        (b"a NAMESPACE", CommandBody::Namespace),
        (b"a IDLE", CommandBody::Idle),
        (b"a CHECK", CommandBody::Check),
        (b"a CLOSE", CommandBody::Close),
        (b"a UNSELECT", CommandBody::Unselect),
        (b"a EXPUNGE", CommandBody::Expunge { uids: None }),
        (b"a noop", CommandBody::Noop),
        (b"a CaPaBiLiTy", CommandBody::Capability),
    ] {
        assert_eq!(ok(input), body);
    }
    let c = parse(b"x.y]z NOOP").unwrap();
    assert_eq!(c.tag, "x.y]z");
}

#[test]
fn tag_and_name_errors() {
    let e = bad(b"+a NOOP");
    assert_eq!((e.tag, e.kind), (None, ParseErrorKind::Syntax));
    let e = bad(b"a");
    assert_eq!(e.tag.as_deref(), Some("a"));
    let e = bad(b"a FROB");
    assert_eq!(
        (e.tag.as_deref(), e.kind),
        (Some("a"), ParseErrorKind::UnknownCommand)
    );
    assert_eq!(bad(b"a UID FROB 1").kind, ParseErrorKind::UnknownCommand);
    assert_eq!(
        bad(b"a UID EXPUNGEX 1").kind,
        ParseErrorKind::UnknownCommand
    );
    // Arguments where none are allowed; double spaces; trailing space.
    bad(b"a NOOP x");
    bad(b"a  NOOP");
    bad(b"a NOOP ");
    bad(b"a LOGOUT\r\n");
    bad(b"a (NOOP)");
}

// ---- authentication -------------------------------------------------------------------

#[test]
fn login() {
    // RFC 9051 §6.2.3
    assert_eq!(
        ok(b"a001 LOGIN SMITH SESAME"),
        CommandBody::Login {
            username: s("SMITH"),
            password: Secret::new(b"SESAME".to_vec())
        }
    );
    assert_eq!(
        ok(b"a LOGIN \"fred \\\"x\\\\\" {7}\r\nfat man"),
        CommandBody::Login {
            username: s("fred \"x\\"),
            password: Secret::new(b"fat man".to_vec())
        }
    );
    assert_eq!(
        ok(b"a LOGIN {5+}\r\nalice \"\""),
        CommandBody::Login {
            username: s("alice"),
            password: Secret::new(Vec::new())
        }
    );
    bad(b"a LOGIN alice");
    bad(b"a LOGIN alice pass extra");
    bad(b"a LOGIN \"al\rice\" pass");
    bad(b"a LOGIN {3}\r\na\0b pass");
    bad(b"a LOGIN \"a\\b\" pass"); // only \" and \\ may be escaped
    // The password never shows in Debug output.
    let dbg = format!("{:?}", ok(b"a LOGIN u hunter2"));
    assert!(!dbg.contains("hunter2"), "{dbg}");
}

#[test]
fn authenticate_with_sasl_ir() {
    assert_eq!(
        ok(b"a AUTHENTICATE PLAIN"),
        CommandBody::Authenticate {
            mechanism: s("PLAIN"),
            initial_response: None
        }
    );
    // RFC 4959 §4 example
    assert_eq!(
        ok(b"a AUTHENTICATE plain dGVzdAB0ZXN0AHRlc3Q="),
        CommandBody::Authenticate {
            mechanism: s("PLAIN"),
            initial_response: Some(Secret::new(b"test\0test\0test".to_vec()))
        }
    );
    assert_eq!(
        ok(b"a AUTHENTICATE PLAIN ="),
        CommandBody::Authenticate {
            mechanism: s("PLAIN"),
            initial_response: Some(Secret::new(Vec::new()))
        }
    );
    bad(b"a AUTHENTICATE PLAIN !!!");
    bad(b"a AUTHENTICATE PLAIN dGVzd");
    bad(b"a AUTHENTICATE");
    bad(b"a AUTHENTICATE PLAIN dGVz dA==");
}

#[test]
fn enable_and_id() {
    assert_eq!(
        ok(b"t2 ENABLE CONDSTORE X-GOOD-IDEA"),
        CommandBody::Enable(vec![s("CONDSTORE"), s("X-GOOD-IDEA")])
    );
    assert_eq!(
        ok(b"a ENABLE IMAP4rev2"),
        CommandBody::Enable(vec![s("IMAP4rev2")])
    );
    bad(b"a ENABLE");
    // RFC 2971 §4 example
    assert_eq!(
        ok(b"a023 ID (\"name\" \"sodr\" \"version\" \"19.34\" \"vendor\" NIL)"),
        CommandBody::Id(Some(vec![
            (s("name"), Some(s("sodr"))),
            (s("version"), Some(s("19.34"))),
            (s("vendor"), None),
        ]))
    );
    assert_eq!(ok(b"a ID NIL"), CommandBody::Id(None));
    assert_eq!(ok(b"a ID ()"), CommandBody::Id(Some(vec![])));
    // RFC 2971 §3.3 limits.
    let long_field = format!("a ID (\"{}\" \"x\")", "f".repeat(31));
    bad(long_field.as_bytes());
    let long_value = format!("a ID (\"f\" \"{}\")", "v".repeat(1025));
    bad(long_value.as_bytes());
    let many = format!("a ID ({})", vec!["\"f\" NIL"; 31].join(" "));
    bad(many.as_bytes());
    bad(b"a ID (\"name\")");
    bad(b"a ID name x");
}

// ---- mailboxes --------------------------------------------------------------------------

#[test]
fn select_and_examine() {
    let select = |mailbox: &str, read_only, condstore, qresync| CommandBody::Select {
        mailbox: s(mailbox),
        read_only,
        condstore,
        qresync,
    };
    // SELECT INBOX (QRESYNC (...)) with these values.
    let qresync = |uidvalidity, modseq, known_uids, seq_match| {
        let qresync = QResync {
            uidvalidity,
            modseq,
            known_uids: Some(known_uids),
            seq_match,
        };
        select("INBOX", false, false, Some(qresync))
    };
    for (input, body) in [
        (&b"A142 SELECT INBOX"[..], select("INBOX", false, false, None)),
        (b"A932 EXAMINE blurdybloop", select("blurdybloop", true, false, None)),
        (b"a select inbox (CONDSTORE)", select("INBOX", false, true, None)),
        // RFC 7162 §3.2.5.2 example
        (
            b"A02 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))",
            qresync(
                67890007,
                20050715194045000,
                set(&[(V(41), V(41)), (V(43), V(211)), (V(214), V(541))]),
                None,
            ),
        ),
        // With seq-match-data (RFC 7162 §3.2.5.2).
        (
            b"B04 SELECT INBOX (QRESYNC (67890007 90060115194045000 1:29997 (5000,7500,9000,9990:9999 15000,22500,27000,29970,29973,29976,29979,29982,29985,29988,29991,29994,29997)))",
            qresync(
                67890007,
                90060115194045000,
                set(&[(V(1), V(29997))]),
                Some((
                    set(&[(V(5000), V(5000)), (V(7500), V(7500)), (V(9000), V(9000)), (V(9990), V(9999))]),
                    set(&[
                        (V(15000), V(15000)), (V(22500), V(22500)), (V(27000), V(27000)),
                        (V(29970), V(29970)), (V(29973), V(29973)), (V(29976), V(29976)),
                        (V(29979), V(29979)), (V(29982), V(29982)), (V(29985), V(29985)),
                        (V(29988), V(29988)), (V(29991), V(29991)), (V(29994), V(29994)),
                        (V(29997), V(29997)),
                    ])
                )),
            ),
        ),
    ] {
        assert_eq!(ok(input), body, "{:?}", input.escape_ascii());
    }
    // Minimal QRESYNC and seq-match without known-uids.
    assert!(matches!(
        ok(b"a EXAMINE x (QRESYNC (1 2))"),
        CommandBody::Select {
            qresync: Some(QResync {
                known_uids: None,
                seq_match: None,
                ..
            }),
            ..
        }
    ));
    assert!(matches!(
        ok(b"a EXAMINE x (QRESYNC (1 2 (1 5)) CONDSTORE)"),
        CommandBody::Select {
            condstore: true,
            qresync: Some(QResync {
                known_uids: None,
                seq_match: Some(_),
                ..
            }),
            ..
        }
    ));
    bad(b"a SELECT INBOX ()");
    bad(b"a SELECT INBOX (FOO)");
    bad(b"a SELECT INBOX (QRESYNC (0 2))"); // uidvalidity is non-zero
    bad(b"a SELECT INBOX (QRESYNC (1 0))"); // modseq is non-zero
    bad(b"a SELECT INBOX (QRESYNC (1 2 1:*))"); // no '*' in known-uids
    bad(b"a SELECT INBOX (QRESYNC (1 2 $))");
    bad(b"a SELECT INBOX (QRESYNC (1 2) QRESYNC (1 2))");
    bad(b"a SELECT INBOX (QRESYNC (1 2 3 4))");
    bad(b"a SELECT");
}

#[test]
fn mailbox_names() {
    // Modified UTF-7 (RFC 3501 §5.1.3) for a rev1 client.
    assert_eq!(
        ok(b"a CREATE ~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
        CommandBody::Create {
            mailbox: s("~peter/mail/\u{53f0}\u{5317}/\u{65e5}\u{672c}\u{8a9e}"),
            special_use: vec![]
        }
    );
    assert_eq!(
        ok(b"a DELETE \"Tom &- Jerry\""),
        CommandBody::Delete(s("Tom & Jerry"))
    );
    bad(b"a DELETE &Jjo!-");
    // UTF-8 once enabled.
    assert_eq!(
        ok_utf8("a DELETE \"Entwürfe & Co\"".as_bytes()),
        CommandBody::Delete(s("Entwürfe & Co"))
    );
    // 8-bit names are UTF-8 even for rev1 clients; invalid UTF-8 is refused.
    assert_eq!(
        ok("a DELETE \"Entwürfe\"".as_bytes()),
        CommandBody::Delete(s("Entwürfe"))
    );
    bad(b"a DELETE \"\xff\xfe\"");
    // Literal mailbox names; control characters refused.
    assert_eq!(ok(b"a DELETE {3+}\r\nfoo"), CommandBody::Delete(s("foo")));
    bad(b"a DELETE {3+}\r\nf\r\n");
    bad(b"a DELETE \"a\tb\"");
    // INBOX is case-insensitive.
    assert_eq!(ok(b"a SUBSCRIBE iNbOx"), CommandBody::Subscribe(s("INBOX")));
    assert_eq!(
        ok(b"a UNSUBSCRIBE \"x/y\""),
        CommandBody::Unsubscribe(s("x/y"))
    );
    assert_eq!(
        ok(b"a RENAME blurdybloop sarasoop"),
        CommandBody::Rename {
            from: s("blurdybloop"),
            to: s("sarasoop")
        }
    );
    // Mailbox names cannot contain wildcards as atoms.
    bad(b"a DELETE foo*");
    bad(b"a RENAME a");
}

#[test]
fn create_special_use() {
    // RFC 6154 §5.2 example
    assert_eq!(
        ok(b"t1 CREATE \"Important Messages\" (USE (\\Important))"),
        CommandBody::Create {
            mailbox: s("Important Messages"),
            special_use: vec![s("\\Important")]
        }
    );
    assert_eq!(
        ok(b"t1 CREATE x (USE ())"),
        CommandBody::Create {
            mailbox: s("x"),
            special_use: vec![]
        }
    );
    bad(b"t1 CREATE x (FOO (\\Sent))");
    bad(b"t1 CREATE x (USE (Sent))");
}

#[test]
fn list_basic_and_lsub() {
    assert_eq!(ok(b"A101 LIST \"\" \"\""), list("", ""));
    assert_eq!(ok(b"A202 LIST ~/Mail/ %"), list("~/Mail/", "%"));
    assert_eq!(ok(b"a LIST \"\" INBOX/*"), list("", "INBOX/*"));
    assert_eq!(
        ok(b"A002 LSUB \"#news.\" \"comp.mail.*\""),
        lsub("#news.", "comp.mail.*")
    );
    // Pattern in modified UTF-7.
    assert_eq!(ok(b"a LIST \"\" Entw&APw-*"), list("", "Entwü*"));
    bad(b"a LIST \"\"");
    bad(b"a LIST \"\" * extra");
}

/// The LIST/LSUB forms clients send (imaplib's are captured by hato's `imap_clients` test;
/// mbsync and fetchmail run against hato there too) and the grammar allows all parse; the forms imaplib produces from a misused empty
/// argument (`list('', '*')` sends `LIST  *`, `list(None, '*')` sends `LIST *`) are not RFC
/// 9051/3501 syntax (the reference is required; an empty one is `""`) and stay BAD: no client
/// sends them by default, and Dovecot refuses them too.
#[test]
fn list_forms_real_clients_send() {
    // imaplib: list() and list('""', '*') (its default reference is the two characters `""`).
    assert_eq!(ok(br#"GNAI2 LIST "" *"#), list("", "*"));
    // imaplib list('""', '"*"') and most clients: quoted pattern.
    assert_eq!(ok(br#"a LIST "" "*""#), list("", "*"));
    assert_eq!(ok(br#"a LIST "" %"#), list("", "%"));
    assert_eq!(ok(br#"a LIST "" "%""#), list("", "%"));
    assert_eq!(ok(br#"a LIST "" INBOX"#), list("", "INBOX"));
    assert_eq!(ok(br#"a LIST "" "INBOX""#), list("", "INBOX"));
    assert_eq!(ok(br#"a LIST INBOX *"#), list("INBOX", "*"));
    assert_eq!(ok(br#"a LIST "INBOX/" "%""#), list("INBOX/", "%"));
    // The hierarchy-delimiter probe.
    assert_eq!(ok(br#"A003 LIST "" """#), list("", ""));
    // Wildcards inside a name, `]` in an atom pattern (list-char includes resp-specials).
    assert_eq!(ok(br#"a LIST "" Sent/*"#), list("", "Sent/*"));
    assert_eq!(ok(br#"a LIST "" a]b%"#), list("", "a]b%"));
    // Literals for reference and pattern, synchronising and not.
    assert_eq!(ok(b"a LIST {0}\r\n {1}\r\n*"), list("", "*"));
    assert_eq!(ok(b"a LIST \"\" {1+}\r\n%"), list("", "%"));
    // Lower-case command name.
    assert_eq!(ok(b"a list \"\" *"), list("", "*"));
    assert_eq!(ok(b"a LSUB \"\" *"), lsub("", "*"));
    assert_eq!(ok(b"a LSUB \"\" \"*\""), lsub("", "*"));
    // Not IMAP syntax: a missing reference, doubled or trailing spaces.
    bad(b"a LIST  *");
    bad(b"a LIST *");
    bad(b"a LIST \"\"  *");
    bad(b"a LIST \"\" * ");
    bad(b"a LSUB  *");
}

/// The LIST command `input` parses to.
#[track_caller]
fn parsed_list(input: &[u8]) -> ListCommand {
    match ok(input) {
        CommandBody::List(l) => l,
        c => panic!("{:?} parsed to {c:?}", input.escape_ascii()),
    }
}

#[test]
fn list_extended() {
    // RFC 5258 §5 examples
    assert_eq!(
        parsed_list(b"A02 LIST (SUBSCRIBED) \"\" \"*\""),
        ListCommand {
            select_subscribed: true,
            extended: true,
            ..list_command("", &["*"])
        }
    );
    let l = parsed_list(b"A03 LIST () \"\" \"%\" RETURN (CHILDREN)");
    assert!(l.return_children && l.extended);
    let l =
        parsed_list(b"A04 LIST (REMOTE RECURSIVEMATCH SUBSCRIBED) \"\" \"%\" RETURN (CHILDREN)");
    assert!(
        l.select_remote && l.select_recursive_match && l.select_subscribed && l.return_children
    );
    assert_eq!(
        parsed_list(b"A05 LIST \"\" (\"INBOX\" \"Drafts\" \"Sent/%\")"),
        ListCommand {
            extended: true,
            ..list_command("", &["INBOX", "Drafts", "Sent/%"])
        }
    );
    // RFC 6154 §5.1 and RFC 5819 §2 examples
    assert!(parsed_list(b"t1 LIST \"\" \"%\" RETURN (SPECIAL-USE)").return_special_use);
    assert!(parsed_list(b"t3 LIST (SPECIAL-USE) \"\" \"*\"").select_special_use);
    let l = parsed_list(b"A01 LIST \"\" % RETURN (STATUS (MESSAGES UNSEEN))");
    assert_eq!(
        l.return_status,
        Some(vec![StatusItem::Messages, StatusItem::Unseen])
    );
    let l = parsed_list(b"a LIST (subscribed) \"\" * return (subscribed children special-use status (size highestmodseq))");
    assert!(l.return_subscribed && l.return_children && l.return_special_use);
    assert!(l.return_status.is_some());
    assert!(parsed_list(b"a LIST \"\" * RETURN ()").extended);
    bad(b"A06 LIST (RECURSIVEMATCH) \"\" \"%\"");
    bad(b"a LIST (BOGUS) \"\" *");
    bad(b"a LIST \"\" * RETURN (BOGUS)");
    bad(b"a LIST \"\" * (CHILDREN)");
    bad(b"a LIST \"\" () ");
    bad(b"a LIST \"\" ()");
    bad(b"a LIST \"\" * RETURN (STATUS ())");
}

#[test]
fn status() {
    assert_eq!(
        ok(b"A042 STATUS blurdybloop (UIDNEXT MESSAGES)"),
        CommandBody::Status {
            mailbox: s("blurdybloop"),
            items: vec![StatusItem::UidNext, StatusItem::Messages]
        }
    );
    assert_eq!(
        ok(b"a STATUS INBOX (messages recent uidnext uidvalidity unseen deleted size highestmodseq appendlimit)"),
        CommandBody::Status {
            mailbox: s("INBOX"),
            items: vec![
                StatusItem::Messages,
                StatusItem::Recent,
                StatusItem::UidNext,
                StatusItem::UidValidity,
                StatusItem::Unseen,
                StatusItem::Deleted,
                StatusItem::Size,
                StatusItem::HighestModSeq,
                StatusItem::AppendLimit,
            ]
        }
    );
    // RFC 9208 §4.1.4 example; any case.
    assert_eq!(
        ok(b"S0003 STATUS INBOX (MESSAGES DELETED DELETED-STORAGE)"),
        CommandBody::Status {
            mailbox: s("INBOX"),
            items: vec![
                StatusItem::Messages,
                StatusItem::Deleted,
                StatusItem::DeletedStorage
            ]
        }
    );
    assert_eq!(
        ok(b"a STATUS x (deleted-storage Deleted-Storage)"),
        CommandBody::Status {
            mailbox: s("x"),
            items: vec![StatusItem::DeletedStorage, StatusItem::DeletedStorage]
        }
    );
    // In LIST-STATUS too.
    let l = parsed_list(b"a LIST \"\" * RETURN (STATUS (DELETED-STORAGE))");
    assert_eq!(l.return_status, Some(vec![StatusItem::DeletedStorage]));
    bad(b"a STATUS INBOX ()");
    bad(b"a STATUS INBOX (FOO)");
    bad(b"a STATUS INBOX");
    bad(b"a STATUS INBOX (DELETED-STORAGEX)");
    bad(b"a STATUS INBOX (DELETED-)");
    bad(b"a STATUS INBOX (DELETED STORAGE)");
}

#[test]
fn quota_commands() {
    let quota = |root: &str| CommandBody::GetQuota(s(root));
    let quota_root = |mailbox: &str| CommandBody::GetQuotaRoot(s(mailbox));
    for (input, body) in [
        (&b"G0001 GETQUOTA \"\""[..], quota("")),
        (b"G0002 GETQUOTAROOT INBOX", quota_root("INBOX")),
        // RFC 9208 §4.1.1 examples; atom, quoted and literal roots; case-insensitive names.
        (
            b"G0001 GETQUOTA \"!partition/sda4\"",
            quota("!partition/sda4"),
        ),
        (b"a getquota User", quota("User")),
        (b"a GetQuota {10+}\r\nUser quota", quota("User quota")),
        (b"a GETQUOTA \"say \\\"hi\\\"\"", quota("say \"hi\"")),
        // The root is opaque: no modified UTF-7 decoding, no INBOX canonicalisation.
        (b"a GETQUOTA &AOQ-", quota("&AOQ-")),
        (b"a GETQUOTA inbox", quota("inbox")),
        // GETQUOTAROOT takes a mailbox: INBOX is case-insensitive, names are decoded.
        (b"a getquotaroot inbox", quota_root("INBOX")),
        (b"a GETQUOTAROOT \"Entw&APw-rfe\"", quota_root("Entwürfe")),
        (b"a GETQUOTAROOT {5}\r\nDraft", quota_root("Draft")),
    ] {
        assert_eq!(ok(input), body, "{:?}", input.escape_ascii());
    }
    assert_eq!(
        ok_utf8("a GETQUOTAROOT \"Entwürfe\"".as_bytes()),
        quota_root("Entwürfe")
    );
    for input in [
        &b"a GETQUOTA"[..],
        b"a GETQUOTA ",
        b"a GETQUOTA  \"\"",
        b"a GETQUOTA \"\" extra",
        b"a GETQUOTA \"\" ",
        b"a GETQUOTA (STORAGE)",
        b"a GETQUOTA \"unterminated",
        b"a GETQUOTA \"\xff\"",
        b"a GETQUOTAROOT",
        b"a GETQUOTAROOT INBOX bogus",
        b"a GETQUOTAROOT foo*",
    ] {
        assert_eq!(bad(input).kind, ParseErrorKind::Syntax, "{input:?}");
    }
    // A name no mailbox can have is a NO (like any missing mailbox), not a BAD.
    assert_eq!(
        bad(b"a GETQUOTAROOT &Jjo!-").kind,
        ParseErrorKind::MailboxName
    );
    assert_eq!(
        bad(b"a GETQUOTAS \"\"").kind,
        ParseErrorKind::UnknownCommand
    );
}

fn limit(resource: &str, limit: u64) -> QuotaLimit {
    QuotaLimit {
        resource: s(resource),
        limit,
    }
}

#[test]
fn setquota() {
    // RFC 9208 §4.1.3 examples.
    assert_eq!(
        ok(b"S0001 SETQUOTA \"#user/alice\" (STORAGE 510)"),
        CommandBody::SetQuota {
            root: s("#user/alice"),
            limits: vec![limit("STORAGE", 510)]
        }
    );
    assert_eq!(
        ok(b"A001 SETQUOTA \"\" (STORAGE 512)"),
        CommandBody::SetQuota {
            root: s(""),
            limits: vec![limit("STORAGE", 512)]
        }
    );
    // Several resources, any case (resource names upper-cased), unknown ones kept, the
    // number64 maximum, a literal root; an empty list removes every limit.
    assert_eq!(
        ok(b"a setquota {4+}\r\nroot (storage 0 Message 512 MAILBOX 3 ANNOTATION-STORAGE 1 x-Foo 9223372036854775807)"),
        CommandBody::SetQuota {
            root: s("root"),
            limits: vec![
                limit("STORAGE", 0),
                limit("MESSAGE", 512),
                limit("MAILBOX", 3),
                limit("ANNOTATION-STORAGE", 1),
                limit("X-FOO", i64::MAX as u64),
            ]
        }
    );
    assert_eq!(
        ok(b"a SETQUOTA User ()"),
        CommandBody::SetQuota {
            root: s("User"),
            limits: vec![]
        }
    );
    for input in [
        &b"a SETQUOTA"[..],
        b"a SETQUOTA \"\"",
        b"a SETQUOTA \"\" ",
        b"a SETQUOTA \"\" STORAGE 512",
        b"a SETQUOTA \"\" (STORAGE)",
        b"a SETQUOTA \"\" (STORAGE 512",
        b"a SETQUOTA \"\" (STORAGE 512) extra",
        b"a SETQUOTA \"\" (STORAGE  512)",
        b"a SETQUOTA \"\" (STORAGE 512 )",
        b"a SETQUOTA \"\" ( STORAGE 512)",
        b"a SETQUOTA \"\" (STORAGE 512 MESSAGE)",
        b"a SETQUOTA \"\" (STORAGE -1)",
        b"a SETQUOTA \"\" (STORAGE 1.5)",
        b"a SETQUOTA \"\" (STORAGE 9223372036854775808)",
        b"a SETQUOTA \"\" (512 STORAGE)",
        b"a SETQUOTA \"\" (\"STORAGE\" 512)",
        b"a SETQUOTA \"\" ((STORAGE 512))",
        b"a SETQUOTA (STORAGE 512)",
        b"a SETQUOTA  \"\" (STORAGE 512)",
    ] {
        assert_eq!(bad(input).kind, ParseErrorKind::Syntax, "{input:?}");
    }
    // The tag survives, so the error is a tagged BAD.
    assert_eq!(
        bad(b"t1 SETQUOTA \"\" (STORAGE)").tag.as_deref(),
        Some("t1")
    );
}

// ---- APPEND ----------------------------------------------------------------------------

#[test]
fn append() {
    // RFC 9051 §6.3.12 example (as framed: literal inline)
    let msg = b"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\nSubject: afternoon meeting\r\n\r\nHello Joe\r\n";
    let mut input =
        format!("A003 APPEND saved-messages (\\Seen) {{{}}}\r\n", msg.len()).into_bytes();
    input.extend_from_slice(msg);
    assert_eq!(
        ok(&input),
        CommandBody::Append {
            mailbox: s("saved-messages"),
            messages: vec![AppendMessage {
                flags: vec![Flag::Seen],
                date: None,
                data: msg.to_vec(),
                binary: false,
                taken: None,
                catenate: None,
            }]
        }
    );
    // Date-time, no flags, LITERAL+.
    let c = ok(b"a APPEND INBOX \"17-Jul-1996 02:44:25 -0700\" {5+}\r\nhello");
    let CommandBody::Append { messages, .. } = c else {
        panic!()
    };
    assert_eq!(messages[0].date.unwrap().to_unix(), 837_596_665);
    assert!(messages[0].flags.is_empty());
    // Day-fixed with a leading space.
    let c = ok(b"a APPEND INBOX () \" 7-Feb-1994 21:52:25 +0100\" {1}\r\nx");
    let CommandBody::Append { messages, .. } = c else {
        panic!()
    };
    assert_eq!(messages[0].date.unwrap().date.day, 7);
    assert_eq!(messages[0].date.unwrap().offset_minutes, 60);
    // MULTIAPPEND (RFC 3502 §6) with literal8 and keywords.
    let c = ok(b"A003 APPEND saved-messages (\\Seen $Forwarded) {3}\r\nabc (\\Draft) ~{3}\r\na\0c {1}\r\nz");
    let CommandBody::Append { messages, .. } = c else {
        panic!()
    };
    assert_eq!(messages.len(), 3);
    assert_eq!(
        messages[0].flags,
        vec![Flag::Seen, Flag::Keyword(s("$Forwarded"))]
    );
    assert!(messages[1].binary && messages[1].data == b"a\0c");
    assert_eq!(messages[2].data, b"z");
    // Message data may hold NUL even in a plain literal (leniency), not in strings.
    assert!(matches!(
        ok(b"a APPEND INBOX {3}\r\na\0c"),
        CommandBody::Append { .. }
    ));
    // Errors.
    bad(b"a APPEND INBOX");
    bad(b"a APPEND INBOX (\\Seen)");
    bad(b"a APPEND INBOX \"message as quoted\"");
    bad(b"a APPEND INBOX (\\Seen) {5}\r\nabc"); // short literal
    bad(b"a APPEND INBOX \"31-Feb-2020 00:00:00 +0000\" {1}\r\nx");
    bad(b"a APPEND INBOX \"1-Feb-2020 00:00:00 +0000\" {1}\r\nx"); // day-fixed needs 2 chars
    bad(b"a APPEND INBOX \"01-Feb-2020 24:00:00 +0000\" {1}\r\nx");
    bad(b"a APPEND INBOX \"01-Feb-2020 00:00:00 0000\" {1}\r\nx");
    bad(b"a APPEND INBOX (\\Seen {1}\r\nx");
    bad(b"a APPEND INBOX {1}\r\nx ");
    bad(b"a APPEND INBOX (\\*) {1}\r\nx");
}

/// RFC 4469 CATENATE, alone and within MULTIAPPEND with plain messages.
#[test]
fn append_catenate() {
    let c = ok(b"A003 APPEND Drafts (\\Seen \\Draft $MDNSent) CATENATE (URL \"/Drafts;UIDVALIDITY=385759045/;UID=20/;section=HEADER\" TEXT {40}\r\n--------------030308070208000400050907\r\n URL \"/Drafts;UIDVALIDITY=385759045/;UID=20/;section=1.MIME\" url /Drafts/;UID=20/;section=1 text ~{2}\r\n\r\n)");
    let CommandBody::Append { mailbox, messages } = c else {
        panic!()
    };
    assert_eq!(mailbox, "Drafts");
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(m.flags.len(), 3);
    assert!(m.data.is_empty() && m.taken.is_none() && !m.binary);
    assert_eq!(
        m.catenate.as_deref().unwrap(),
        [
            CatenatePart::Url(s("/Drafts;UIDVALIDITY=385759045/;UID=20/;section=HEADER")),
            CatenatePart::Text(b"--------------030308070208000400050907\r\n".to_vec()),
            CatenatePart::Url(s("/Drafts;UIDVALIDITY=385759045/;UID=20/;section=1.MIME")),
            CatenatePart::Url(s("/Drafts/;UID=20/;section=1")),
            CatenatePart::Text(b"\r\n".to_vec()),
        ]
    );
    // MULTIAPPEND: catenated and plain messages in any order, each with its options.
    let c = ok(b"a append INBOX {3}\r\nabc catenate (url \"/INBOX/;uid=1\") (\\Answered) \"17-Jul-1996 02:44:25 -0700\" CATENATE (TEXT {1+}\r\nx) {1}\r\nz");
    let CommandBody::Append { messages, .. } = c else {
        panic!()
    };
    assert_eq!(messages.len(), 4);
    assert_eq!(
        (messages[0].data.as_slice(), &messages[0].catenate),
        (&b"abc"[..], &None)
    );
    assert_eq!(
        messages[1].catenate,
        Some(vec![CatenatePart::Url(s("/INBOX/;uid=1"))])
    );
    assert!(messages[1].data.is_empty());
    assert_eq!(messages[2].flags, vec![Flag::Answered]);
    assert!(messages[2].date.is_some());
    assert_eq!(
        messages[2].catenate,
        Some(vec![CatenatePart::Text(b"x".to_vec())])
    );
    assert_eq!(
        (messages[3].data.as_slice(), &messages[3].catenate),
        (&b"z"[..], &None)
    );
    // Errors.
    bad(b"a APPEND INBOX CATENATE ()");
    bad(b"a APPEND INBOX CATENATE");
    bad(b"a APPEND INBOX CATENATE (TEXT \"quoted\")");
    bad(b"a APPEND INBOX CATENATE (URL)");
    bad(b"a APPEND INBOX CATENATE (FOO x)");
    bad(b"a APPEND INBOX CATENATE (URL x");
    bad(b"a APPEND INBOX CATENATE (URL x  URL y)");
    bad(b"a APPEND INBOX CONCATENATE (URL x)");
}

// ---- selected state ------------------------------------------------------------------------

#[test]
fn uid_expunge_copy_move() {
    // RFC 4315 §2.1 example
    assert_eq!(
        ok(b"A003 UID EXPUNGE 3000:3002"),
        CommandBody::Expunge {
            uids: Some(set(&[(V(3000), V(3002))]))
        }
    );
    bad(b"a UID EXPUNGE");
    bad(b"a EXPUNGE 1:2");
    assert_eq!(
        ok(b"A003 COPY 2:4 MEETING"),
        CommandBody::Copy {
            uid: false,
            set: set(&[(V(2), V(4))]),
            mailbox: s("MEETING")
        }
    );
    // RFC 6851 §4.6 example
    assert_eq!(
        ok(b"a UID MOVE 42:69 foo"),
        CommandBody::Move {
            uid: true,
            set: set(&[(V(42), V(69))]),
            mailbox: s("foo")
        }
    );
    assert_eq!(
        ok(b"a move $ Trash"),
        CommandBody::Move {
            uid: false,
            set: SequenceSet::Saved,
            mailbox: s("Trash")
        }
    );
    bad(b"a COPY 1:2");
    bad(b"a COPY 0 x");
    bad(b"a COPY 1: x");
    bad(b"a COPY 1,,2 x");
    bad(b"a COPY 4294967296 x");
}

#[test]
fn uid_variants() {
    for (input, name) in [
        (&b"a UID COPY 1:2 Trash"[..], "UID COPY"),
        (b"a uid move 1 Trash", "UID MOVE"),
        (b"a UID FETCH 1 UID", "UID FETCH"),
        (b"a UID STORE 1 FLAGS (\\Seen)", "UID STORE"),
        (b"a UID SEARCH ALL", "UID SEARCH"),
        (b"a UID EXPUNGE 1", "UID EXPUNGE"),
        (b"a COPY 1 x", "COPY"),
        (b"a EXAMINE x", "EXAMINE"),
    ] {
        assert_eq!(ok(input).name(), name);
    }
    bad(b"a UID");
    bad(b"a UID LIST \"\" *");
}

#[test]
fn sequence_sets() {
    let c = ok(b"a FETCH 1:*,3,7:5,* FLAGS");
    let CommandBody::Fetch(f) = c else { panic!() };
    assert_eq!(
        f.set,
        set(&[
            (V(1), Largest),
            (V(3), V(3)),
            (V(7), V(5)),
            (Largest, Largest)
        ])
    );
    assert_eq!(f.set.to_string(), "1:*,3,7:5,*");
    let c = ok(b"a UID FETCH 4294967295 UID");
    let CommandBody::Fetch(f) = c else { panic!() };
    assert_eq!(f.set, SequenceSet::single(u32::MAX));
    bad(b"a FETCH $,1 FLAGS");
    bad(b"a FETCH -1 FLAGS");
}

#[test]
fn store() {
    // RFC 9051 §6.4.6 example
    assert_eq!(
        ok(b"A003 STORE 2:4 +FLAGS (\\Deleted)"),
        CommandBody::Store(StoreCommand {
            uid: false,
            set: set(&[(V(2), V(4))]),
            unchanged_since: None,
            op: StoreOp::Add,
            silent: false,
            flags: vec![Flag::Deleted]
        })
    );
    assert_eq!(
        ok(b"a UID STORE 1 -FLAGS.SILENT \\Seen $Junk"),
        CommandBody::Store(StoreCommand {
            uid: true,
            set: SequenceSet::single(1),
            unchanged_since: None,
            op: StoreOp::Remove,
            silent: true,
            flags: vec![Flag::Seen, Flag::Keyword(s("$Junk"))]
        })
    );
    assert_eq!(
        ok(b"a STORE 1 FLAGS ()"),
        CommandBody::Store(StoreCommand {
            uid: false,
            set: SequenceSet::single(1),
            unchanged_since: None,
            op: StoreOp::Replace,
            silent: false,
            flags: vec![]
        })
    );
    // RFC 7162 §3.1.3 example
    assert_eq!(
        ok(b"d105 STORE 7,5,9 (UNCHANGEDSINCE 320162338) +FLAGS.SILENT (\\Deleted)"),
        CommandBody::Store(StoreCommand {
            uid: false,
            set: set(&[(V(7), V(7)), (V(5), V(5)), (V(9), V(9))]),
            unchanged_since: Some(320162338),
            op: StoreOp::Add,
            silent: true,
            flags: vec![Flag::Deleted]
        })
    );
    assert!(matches!(
        ok(b"a STORE 1 (UNCHANGEDSINCE 0) FLAGS (\\Seen)"),
        CommandBody::Store(StoreCommand {
            unchanged_since: Some(0),
            ..
        })
    ));
    // `flag-keyword = ... / atom`: NIL is an atom like any other here (no nstring in
    // a flag list), a keyword as Dovecot and imaptest's `nil` script expect.
    assert!(matches!(
        ok(b"a STORE 1 +FLAGS NIL"),
        CommandBody::Store(StoreCommand { ref flags, .. }) if *flags == [Flag::Keyword(s("NIL"))]
    ));
    bad(b"a STORE 1 +FLAGS");
    bad(b"a STORE 1 FLAG (\\Seen)");
    bad(b"a STORE 1 *FLAGS (\\Seen)");
    bad(b"a STORE 1 (FOO 1) FLAGS (\\Seen)");
    bad(b"a STORE 1 FLAGS.SILENTX (\\Seen)");
    bad(b"a STORE 1 FLAGS (\\Seen");
    bad(b"a STORE 1 FLAGS (\\Seen) x");
    bad(b"a STORE 1 FLAGS (\\Seen)(\\Draft)");
}

// ---- FETCH -----------------------------------------------------------------------------

fn fetch_items(input: &[u8]) -> Vec<FetchAttr> {
    match ok(input) {
        CommandBody::Fetch(f) => f.items,
        other => panic!("{other:?}"),
    }
}

#[test]
fn fetch_macros_and_simple_items() {
    assert_eq!(
        fetch_items(b"a FETCH 1 ALL"),
        vec![
            FetchAttr::Flags,
            FetchAttr::InternalDate,
            FetchAttr::Rfc822Size,
            FetchAttr::Envelope
        ]
    );
    assert_eq!(
        fetch_items(b"a FETCH 1 fast"),
        vec![
            FetchAttr::Flags,
            FetchAttr::InternalDate,
            FetchAttr::Rfc822Size
        ]
    );
    assert_eq!(fetch_items(b"a FETCH 1 FULL").len(), 5);
    assert_eq!(
        fetch_items(b"a FETCH 1 (ENVELOPE FLAGS INTERNALDATE RFC822 RFC822.HEADER RFC822.SIZE RFC822.TEXT BODY BODYSTRUCTURE UID MODSEQ)"),
        vec![
            FetchAttr::Envelope,
            FetchAttr::Flags,
            FetchAttr::InternalDate,
            FetchAttr::Rfc822,
            FetchAttr::Rfc822Header,
            FetchAttr::Rfc822Size,
            FetchAttr::Rfc822Text,
            FetchAttr::Body,
            FetchAttr::BodyStructure,
            FetchAttr::Uid,
            FetchAttr::ModSeq,
        ]
    );
    assert_eq!(fetch_items(b"a FETCH 1 uid"), vec![FetchAttr::Uid]);
    bad(b"a FETCH 1 (ALL)"); // macros cannot be in a list
    bad(b"a FETCH 1 ()");
    bad(b"a FETCH 1 (FLAGS BOGUS)");
    bad(b"a FETCH 1 ALL FLAGS");
    bad(b"a FETCH 1");
    bad(b"a FETCH FLAGS");
}

#[test]
fn fetch_body_sections() {
    let body = |peek, part: &[u32], text, partial| FetchAttr::BodySection {
        peek,
        section: Section {
            part: part.to_vec(),
            text,
        },
        partial,
    };
    // RFC 9051 §6.4.5 example
    assert_eq!(
        fetch_items(b"A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])"),
        vec![
            FetchAttr::Flags,
            body(
                false,
                &[],
                Some(SectionText::HeaderFields {
                    not: false,
                    fields: vec![s("DATE"), s("FROM")]
                }),
                None
            )
        ]
    );
    assert_eq!(
        fetch_items(b"a FETCH 1 BODY[]"),
        vec![body(false, &[], None, None)]
    );
    assert_eq!(
        fetch_items(b"a FETCH 1 BODY.PEEK[]<0.2048>"),
        vec![body(
            true,
            &[],
            None,
            Some(Partial {
                offset: 0,
                length: 2048
            })
        )]
    );
    assert_eq!(
        fetch_items(b"a FETCH 1 (body[1.2.3] BODY[4.2.TEXT] body.peek[3.mime] BODY[HEADER] BODY[TEXT]<10.5> BODY[1.HEADER.FIELDS.NOT (\"X-Spam\" List-ID)])"),
        vec![
            body(false, &[1, 2, 3], None, None),
            body(false, &[4, 2], Some(SectionText::Text), None),
            body(true, &[3], Some(SectionText::Mime), None),
            body(false, &[], Some(SectionText::Header), None),
            body(false, &[], Some(SectionText::Text), Some(Partial { offset: 10, length: 5 })),
            body(
                false,
                &[1],
                Some(SectionText::HeaderFields {
                    not: true,
                    fields: vec![s("X-Spam"), s("List-ID")]
                }),
                None
            ),
        ]
    );
    // Display gives the response form.
    let FetchAttr::BodySection { section, .. } =
        &fetch_items(b"a FETCH 1 BODY[1.HEADER.FIELDS.NOT (a b)]")[0]
    else {
        panic!()
    };
    assert_eq!(section.to_string(), "1.HEADER.FIELDS.NOT (a b)");
    bad(b"a FETCH 1 BODY[MIME]"); // MIME needs a part
    bad(b"a FETCH 1 BODY[0]");
    bad(b"a FETCH 1 BODY[1.]");
    bad(b"a FETCH 1 BODY[HEADER.FIELDS]");
    bad(b"a FETCH 1 BODY[HEADER.FIELDS ()]");
    bad(b"a FETCH 1 BODY[HEADER.FIELDS (a:b)]");
    bad(b"a FETCH 1 BODY[FOO]");
    bad(b"a FETCH 1 BODY[]<0>");
    bad(b"a FETCH 1 BODY[]<0.0>");
    bad(b"a FETCH 1 BODY.PEEK");
    bad(b"a FETCH 1 BODY[");
}

#[test]
fn fetch_binary() {
    assert_eq!(
        fetch_items(b"a FETCH 1 (BINARY[] BINARY.PEEK[1.2]<0.100> BINARY.SIZE[3])"),
        vec![
            FetchAttr::Binary {
                peek: false,
                part: vec![],
                partial: None
            },
            FetchAttr::Binary {
                peek: true,
                part: vec![1, 2],
                partial: Some(Partial {
                    offset: 0,
                    length: 100
                })
            },
            FetchAttr::BinarySize { part: vec![3] },
        ]
    );
    bad(b"a FETCH 1 BINARY[HEADER]");
    bad(b"a FETCH 1 BINARY");
    bad(b"a FETCH 1 BINARY.SIZE[1]<0.1>");
    assert!(
        FetchAttr::Binary {
            peek: false,
            part: vec![],
            partial: None
        }
        .sets_seen()
    );
    assert!(!FetchAttr::Rfc822Header.sets_seen());
}

#[test]
fn fetch_modifiers() {
    // RFC 7162 §3.1.4.1 example
    let CommandBody::Fetch(f) = ok(b"s100 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)") else {
        panic!()
    };
    assert!(f.uid && f.changed_since == Some(12345) && !f.vanished);
    // RFC 7162 §3.2.6 example
    let CommandBody::Fetch(f) = ok(b"A02 UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)")
    else {
        panic!()
    };
    assert!(f.vanished && f.changed_since == Some(12345));
    let CommandBody::Fetch(f) = ok(b"a UID FETCH 1 FLAGS (VANISHED CHANGEDSINCE 1)") else {
        panic!()
    };
    assert!(f.vanished);
    bad(b"a FETCH 1:* (FLAGS) (CHANGEDSINCE 12345 VANISHED)"); // not UID FETCH
    bad(b"a UID FETCH 1:* (FLAGS) (VANISHED)"); // no CHANGEDSINCE
    bad(b"a FETCH 1 FLAGS (CHANGEDSINCE 0)");
    bad(b"a FETCH 1 FLAGS (CHANGEDSINCE)");
    bad(b"a FETCH 1 FLAGS (FOO)");
    bad(b"a FETCH 1 FLAGS ()");
}

// ---- SEARCH ----------------------------------------------------------------------------

fn search(input: &[u8]) -> SearchCommand {
    match ok(input) {
        CommandBody::Search(s) => s,
        other => panic!("{other:?}"),
    }
}

#[test]
fn search_rfc_examples() {
    // RFC 9051 §6.4.4
    let c = search(b"A282 SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"");
    assert_eq!(
        c.returns,
        Some(vec![SearchReturn::Min, SearchReturn::Count])
    );
    assert_eq!(
        c.criteria,
        vec![
            SearchKey::Flagged,
            SearchKey::Since(Date::new(1994, 2, 1).unwrap()),
            SearchKey::Not(Box::new(SearchKey::From(s("Smith")))),
        ]
    );
    let c = search(
        b"A284 SEARCH CHARSET UTF-8 TEXT {12}\r\n\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x83\x86",
    );
    assert_eq!(c.charset.as_deref(), Some("UTF-8"));
    assert_eq!(c.criteria, vec![SearchKey::Text(s("日本語テ"))]);
    // RFC 3501 §6.4.4
    let c = search(b"A282 SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"");
    assert_eq!(c.returns, None);
    let c = search(b"A283 SEARCH TEXT \"string not in mailbox\"");
    assert_eq!(
        c.criteria,
        vec![SearchKey::Text(s("string not in mailbox"))]
    );
    // RFC 4731 §3
    let c = search(b"A301 SEARCH RETURN () UNDELETED");
    assert_eq!(c.returns, Some(vec![]));
    let c = search(b"A302 UID SEARCH RETURN (ALL MAX SAVE) 1:* undeleted");
    assert!(c.uid);
    assert_eq!(
        c.returns,
        Some(vec![
            SearchReturn::All,
            SearchReturn::Max,
            SearchReturn::Save
        ])
    );
    assert_eq!(
        c.criteria,
        vec![
            SearchKey::SequenceSet(set(&[(V(1), Largest)])),
            SearchKey::Undeleted
        ]
    );
    // RFC 5182 §2.4
    let c = search(b"A303 SEARCH UID $ SMALLER 4096");
    assert_eq!(
        c.criteria,
        vec![SearchKey::Uid(SequenceSet::Saved), SearchKey::Smaller(4096)]
    );
    let c = search(b"a SEARCH $");
    assert_eq!(c.criteria, vec![SearchKey::SequenceSet(SequenceSet::Saved)]);
}

#[test]
fn search_all_keys() {
    let d = Date::new(2024, 2, 29).unwrap();
    let c = search(
        b"a SEARCH ALL ANSWERED BCC b BEFORE 29-Feb-2024 BODY x CC c DELETED DRAFT FLAGGED \
          FROM f HEADER List-Id \"\" KEYWORD $Junk LARGER 100 NEW NOT SEEN OLD ON \"29-feb-2024\" \
          OR SEEN (FLAGGED DRAFT) RECENT SEEN SENTBEFORE 29-Feb-2024 SENTON 29-Feb-2024 \
          SENTSINCE 29-Feb-2024 SINCE 29-Feb-2024 SMALLER 5 SUBJECT {3}\r\nabc TEXT t TO to \
          UID 1:3 UNANSWERED UNDELETED UNDRAFT UNFLAGGED UNKEYWORD $Junk UNSEEN 2,4 \
          OLDER 60 YOUNGER 3600 MODSEQ 5",
    );
    assert_eq!(
        c.criteria,
        vec![
            SearchKey::All,
            SearchKey::Answered,
            SearchKey::Bcc(s("b")),
            SearchKey::Before(d),
            SearchKey::Body(s("x")),
            SearchKey::Cc(s("c")),
            SearchKey::Deleted,
            SearchKey::Draft,
            SearchKey::Flagged,
            SearchKey::From(s("f")),
            SearchKey::Header(s("List-Id"), s("")),
            SearchKey::Keyword(s("$Junk")),
            SearchKey::Larger(100),
            SearchKey::New,
            SearchKey::Not(Box::new(SearchKey::Seen)),
            SearchKey::Old,
            SearchKey::On(d),
            SearchKey::Or(
                Box::new(SearchKey::Seen),
                Box::new(SearchKey::And(vec![SearchKey::Flagged, SearchKey::Draft]))
            ),
            SearchKey::Recent,
            SearchKey::Seen,
            SearchKey::SentBefore(d),
            SearchKey::SentOn(d),
            SearchKey::SentSince(d),
            SearchKey::Since(d),
            SearchKey::Smaller(5),
            SearchKey::Subject(s("abc")),
            SearchKey::Text(s("t")),
            SearchKey::To(s("to")),
            SearchKey::Uid(set(&[(V(1), V(3))])),
            SearchKey::Unanswered,
            SearchKey::Undeleted,
            SearchKey::Undraft,
            SearchKey::Unflagged,
            SearchKey::Unkeyword(s("$Junk")),
            SearchKey::Unseen,
            SearchKey::SequenceSet(set(&[(V(2), V(2)), (V(4), V(4))])),
            SearchKey::Older(60),
            SearchKey::Younger(3600),
            SearchKey::ModSeq {
                entry: None,
                modseq: 5
            },
        ]
    );
}

#[test]
fn search_modseq() {
    // RFC 7162 §3.1.5 example
    let c = search(b"a SEARCH MODSEQ \"/flags/\\\\draft\" all 620162338");
    assert_eq!(
        c.criteria,
        vec![SearchKey::ModSeq {
            entry: Some((Flag::Draft, EntryType::All)),
            modseq: 620162338
        }]
    );
    let c = search(b"a SEARCH OR NOT MODSEQ 720162338 LARGER 50000");
    assert_eq!(c.criteria.len(), 1);
    let c = search(b"a SEARCH MODSEQ \"/flags/$Junk\" priv 0");
    assert_eq!(
        c.criteria,
        vec![SearchKey::ModSeq {
            entry: Some((Flag::Keyword(s("$Junk")), EntryType::Private)),
            modseq: 0
        }]
    );
    bad(b"a SEARCH MODSEQ \"/foo/x\" all 1");
    bad(b"a SEARCH MODSEQ \"/flags/\" all 1");
    bad(b"a SEARCH MODSEQ \"/flags/x\" mine 1");
    bad(b"a SEARCH MODSEQ");
}

#[test]
fn search_errors() {
    assert_eq!(
        bad(b"a SEARCH CHARSET ISO-8859-1 TEXT x").kind,
        ParseErrorKind::BadCharset
    );
    assert!(matches!(
        search(b"a SEARCH CHARSET \"us-ascii\" ALL")
            .charset
            .as_deref(),
        Some("us-ascii")
    ));
    bad(b"a SEARCH");
    bad(b"a SEARCH RETURN (MIN)");
    bad(b"a SEARCH RETURN (FOO) ALL");
    bad(b"a SEARCH CHARSET UTF-8");
    bad(b"a SEARCH FOO");
    bad(b"a SEARCH ()");
    bad(b"a SEARCH OR SEEN");
    bad(b"a SEARCH BEFORE 30-Feb-2024");
    bad(b"a SEARCH BEFORE 1-Foo-2024");
    bad(b"a SEARCH BEFORE 1-Jan-24");
    bad(b"a SEARCH BEFORE 001-Jan-2024");
    bad(b"a SEARCH SUBJECT \"\xff\"");
    bad(b"a SEARCH HEADER \"a:b\" x");
    bad(b"a SEARCH LARGER 9223372036854775808");
    bad(b"a SEARCH OLDER 0");
    bad(b"a SEARCH SEEN  FLAGGED");
    bad(b"a SEARCH (SEEN FLAGGED");
}

#[test]
fn search_recursion_is_bounded() {
    // NOT NOT NOT ... does not use parentheses, so only the parser's depth bound stops it.
    let deep = format!("a SEARCH {}ALL", "NOT ".repeat(10_000));
    let e = bad(deep.as_bytes());
    assert_eq!(e.kind, ParseErrorKind::TooDeep);
    let deep = format!("a SEARCH {}ALL ALL", "OR ".repeat(10_000));
    assert_eq!(bad(deep.as_bytes()).kind, ParseErrorKind::TooDeep);
    let deep = format!("a SEARCH {}ALL{}", "(".repeat(1000), ")".repeat(1000));
    assert_eq!(bad(deep.as_bytes()).kind, ParseErrorKind::TooDeep);
    // At most `max_depth` (32) levels.
    let fine = format!("a SEARCH {}ALL", "NOT ".repeat(32));
    assert!(parse(fine.as_bytes()).is_ok());
    let too_deep = format!("a SEARCH {}ALL", "NOT ".repeat(33));
    assert_eq!(bad(too_deep.as_bytes()).kind, ParseErrorKind::TooDeep);
}

// ---- property tests ----------------------------------------------------------------------

mod props {
    use super::*;
    use proptest::prelude::*;

    fn token() -> impl Strategy<Value = Vec<u8>> {
        const TOKENS: &[&[u8]] = &[
            b"a ",
            b"UID ",
            b"FETCH ",
            b"SEARCH ",
            b"STORE ",
            b"APPEND ",
            b"LIST ",
            b"SELECT ",
            b"NOT ",
            b"OR ",
            b"(",
            b")",
            b"1:*",
            b"$",
            b"\"",
            b"\\",
            b"BODY[",
            b"]<",
            b"{3}\r\n",
            b"{99999999999999999999}\r\n",
            b"~{1+}\r\n",
            b"&U,BTFw-",
            b"RETURN (",
            b"(QRESYNC (",
        ];
        crate::testing::piece(TOKENS, "[ -~]{0,6}", 6)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn random_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse(&input);
        }

        #[test]
        fn random_tokens_never_panic(tokens in proptest::collection::vec(token(), 0..40), utf8 in any::<bool>()) {
            let input = tokens.concat();
            let opts = ParseOptions { utf8, ..ParseOptions::default() };
            if let Err(e) = parse_command(&input, &opts) {
                // The tag reported is always a valid one.
                if let Some(t) = e.tag {
                    prop_assert!(is_valid_tag(t.as_bytes()));
                }
            }
        }

        /// Sequence sets: Display output parses back to the same set.
        #[test]
        fn sequence_set_round_trip(ranges in proptest::collection::vec((0u32..5, 0u32..5, 1u32..u32::MAX, 1u32..u32::MAX), 1..10)) {
            let set = SequenceSet::Ranges(ranges.iter().map(|&(a, b, x, y)| SeqRange {
                start: if a == 0 { Largest } else { V(x) },
                end: if b == 0 { Largest } else { V(y) },
            }).collect());
            let input = format!("t UID FETCH {set} UID");
            let CommandBody::Fetch(f) = ok(input.as_bytes()) else { panic!() };
            prop_assert_eq!(f.set, set);
        }

        /// Dates: Display output parses back.
        #[test]
        fn date_round_trip(secs in 0i64..253_402_300_799, off in -1439i16..=1439) {
            let dt = DateTime::from_unix(secs, off).unwrap();
            let input = format!("t APPEND INBOX \"{dt}\" {{1}}\r\nx");
            let CommandBody::Append { messages, .. } = ok(input.as_bytes()) else { panic!() };
            prop_assert_eq!(messages[0].date, Some(dt));
            let input = format!("t SEARCH ON {}", dt.date);
            let c = search(input.as_bytes());
            prop_assert_eq!(&c.criteria, &vec![SearchKey::On(dt.date)]);
        }

        /// Mailbox names: the encoder's wire form (quoted or literal) parses back to the name.
        #[test]
        fn mailbox_round_trip(name in "\\PC{1,30}", utf8 in any::<bool>()) {
            prop_assume!(!name.chars().any(char::is_control));
            let mut out = b"t DELETE ".to_vec();
            crate::encode::astring(&mut out, crate::mailbox::encode_mailbox(&name, utf8).as_bytes(), utf8);
            let opts = ParseOptions { utf8, ..ParseOptions::default() };
            let c = parse_command(&out, &opts).unwrap();
            let expected = if name.eq_ignore_ascii_case("INBOX") { "INBOX".to_string() } else { name };
            prop_assert_eq!(c.body, CommandBody::Delete(expected));
        }

        /// Sections: Display output parses back.
        #[test]
        fn section_round_trip(
            part in proptest::collection::vec(1u32..1000, 0..4),
            kind in 0u8..6,
            fields in proptest::collection::vec("[A-Za-z][A-Za-z0-9-]{0,10}", 1..4),
        ) {
            let text = match kind {
                0 => None,
                1 => Some(SectionText::Header),
                2 => Some(SectionText::Text),
                3 if !part.is_empty() => Some(SectionText::Mime),
                4 => Some(SectionText::HeaderFields { not: false, fields }),
                _ => Some(SectionText::HeaderFields { not: true, fields }),
            };
            let section = Section { part, text };
            let input = format!("t FETCH 1 BODY.PEEK[{section}]<1.2>");
            let items = fetch_items(input.as_bytes());
            prop_assert_eq!(&items, &vec![FetchAttr::BodySection { peek: true, section, partial: Some(Partial { offset: 1, length: 2 }) }]);
        }

        /// Strings: whatever bytes (without NUL), the encoder's string form parses back.
        #[test]
        fn string_round_trip(value in proptest::collection::vec(1u8..=255, 0..60), utf8 in any::<bool>()) {
            let mut out = b"t LOGIN user ".to_vec();
            crate::encode::string(&mut out, &value, utf8);
            let c = parse(&out).unwrap();
            prop_assert_eq!(c.body, CommandBody::Login { username: "user".into(), password: Secret::new(value) });
        }
    }
}
