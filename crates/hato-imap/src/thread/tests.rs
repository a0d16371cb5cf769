use super::*;
use crate::command::{CommandBody, ThreadCommand};
use crate::encode::EncodeOptions;
use crate::parse::{ParseOptions, parse_command};

/// Messages from header blocks (`\n` line ends); the internal date is the position, so
/// messages without Date: sort in sequence order.
fn msgs(headers: &[&str]) -> Vec<SortMessage> {
    headers
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let seq = i as u32 + 1;
            let raw = format!("{}\n\nbody\n", h.trim_end());
            SortMessage::new(seq, seq * 10, 1000 + i as i64, 10, raw.as_bytes())
        })
        .collect()
}

fn thread(alg: ThreadAlgorithm, headers: &[&str]) -> String {
    let r = response(alg, false, &msgs(headers)).to_bytes(EncodeOptions::default());
    String::from_utf8(r).unwrap().trim_end().to_string()
}

fn refs(headers: &[&str]) -> String {
    thread(ThreadAlgorithm::References, headers)
}

#[test]
fn parses_thread_commands() {
    let parse = |l: &str| match parse_command(l.as_bytes(), &ParseOptions::default()) {
        Ok(c) => match c.body {
            CommandBody::Thread(t) => Some(t),
            other => panic!("{other:?}"),
        },
        Err(_) => None,
    };
    let t: ThreadCommand = parse("a THREAD references UTF-8 ALL").unwrap();
    assert_eq!((t.algorithm, t.uid), (ThreadAlgorithm::References, false));
    let t = parse("a UID THREAD ORDEREDSUBJECT us-ascii UNSEEN 1:5").unwrap();
    assert_eq!(
        (t.algorithm, t.uid, t.search.len()),
        (ThreadAlgorithm::OrderedSubject, true, 2)
    );
    assert_eq!(t.search_command().criteria, t.search);
    assert!(parse("a THREAD BOGUS UTF-8 ALL").is_none());
    assert!(parse("a THREAD REFERENCES UTF-8").is_none());
    assert!(parse("a THREAD (REFERENCES) UTF-8 ALL").is_none());
}

#[test]
fn encoding_of_thread_lists() {
    use ThreadToken::*;
    let r = Response::Data(Data::Thread(vec![
        Open,
        Id(1),
        Close,
        Open,
        Id(2),
        Id(3),
        Open,
        Id(4),
        Close,
        Open,
        Id(5),
        Close,
        Close,
        Open,
        Open,
        Id(6),
        Close,
        Open,
        Id(7),
        Close,
        Close,
    ]));
    assert_eq!(
        r.to_bytes(EncodeOptions::default()),
        b"* THREAD (1)(2 3 (4)(5))((6)(7))\r\n"
    );
    let r = Response::Data(Data::Thread(vec![]));
    assert_eq!(r.to_bytes(EncodeOptions::default()), b"* THREAD\r\n");
}

#[test]
fn orderedsubject_groups_by_base_subject_then_date() {
    // imaptest thread-orderedsubject2: dates decide the parent and the thread order.
    let t = thread(
        ThreadAlgorithm::OrderedSubject,
        &[
            "Subject: a\nDate: Fri, 22 Feb 2008 22:00:10 +0200",
            "Subject: b\nDate: Fri, 22 Feb 2008 22:00:09 +0200",
            "Subject: a\nDate: Fri, 22 Feb 2008 22:00:08 +0200",
            "Subject: b\nDate: Fri, 22 Feb 2008 22:00:07 +0200",
            "Subject: Re: a\nDate: Fri, 22 Feb 2008 22:00:30 +0200",
            "Subject: b\nDate: Fri, 22 Feb 2008 22:00:29 +0200",
        ],
    );
    assert_eq!(t, "* THREAD (4 (2)(6))(3 (1)(5))");
    // One child is written without parentheses; empty subjects form a thread too.
    let t = thread(
        ThreadAlgorithm::OrderedSubject,
        &[
            "Subject: x",
            "X-A: 1",
            "Subject: Re: X",
            "Subject: =?utf-8?q?_?=",
        ],
    );
    assert_eq!(t, "* THREAD (1 3)(2 4)");
}

#[test]
fn references_links_parents_and_sorts_by_date() {
    // RFC 5256 step 1: References chain a -> c -> b, then c claims b as its parent: that
    // would be a loop, so c is only unlinked from a (imaptest "thread").
    let headers = [
        "Message-ID: <a@b>\nDate: Fri, 22 Feb 2008 17:06:23 +0000",
        "Message-Id: <b@b>\nReferences: <a@b> <c@b>\nDate: Fri, 22 Feb 2008 15:06:23 +0000",
        "Message-Id: <c@b>\nReferences: <b@b>\nDate: Fri, 22 Feb 2008 16:06:25 +0000",
    ];
    assert_eq!(refs(&headers), "* THREAD (3 2)(1)");
    assert_eq!(refs(&headers[1..]), "* THREAD (2 1)");
    // In-Reply-To when there is no References; siblings by date, then sequence.
    let headers = [
        "Message-ID: <1@b>",
        "Message-Id: <2@b>\nIn-Reply-To: <1@b>",
        "Message-Id: <3@b>\nIn-Reply-To: <1@b>",
        "Message-Id: <4@b>\nIn-Reply-To: <2@b>",
    ];
    assert_eq!(refs(&headers), "* THREAD (1 (2 4)(3))");
    let uid = response(ThreadAlgorithm::References, true, &msgs(&headers));
    assert_eq!(
        uid.to_bytes(EncodeOptions::default()),
        b"* THREAD (10 (20 40)(30))\r\n"
    );
    // References win over In-Reply-To.
    assert_eq!(
        refs(&[
            "Message-ID: <1@b>",
            "Message-ID: <2@b>",
            "References: <2@b>\nIn-Reply-To: <1@b>"
        ]),
        "* THREAD (1)(2 3)"
    );
}

#[test]
fn references_duplicate_ids_and_dummies() {
    // A duplicate Message-ID counts as none (imaptest thread2, thread7).
    assert_eq!(
        refs(&["Message-Id: <a@b>", "Message-Id: <a@b>"]),
        "* THREAD (1)(2)"
    );
    assert_eq!(
        refs(&[
            "Message-Id: <a@b>",
            "Message-Id: <b@b>\nReferences: <a@b>",
            "Message-Id: <c@b>\nReferences: <b@b>",
            "Message-Id: <b@b>\nReferences: <a@b>",
        ]),
        "* THREAD (1 (2 3)(4))"
    );
    // A message filling a dummy that already has a child.
    assert_eq!(
        refs(&[
            "Message-Id: <a@b>",
            "Message-Id: <c@b>\nReferences: <b@b>",
            "Message-Id: <b@b>\nReferences: <a@b>",
        ]),
        "* THREAD (1 3 2)"
    );
    // Dummy roots: kept with two children, replaced by a single child (thread5, thread6).
    assert_eq!(
        refs(&["References: <a@b>", "References: <a@b>"]),
        "* THREAD ((1)(2))"
    );
    assert_eq!(
        refs(&[
            "Message-Id: <3@b>\nIn-Reply-To: <1@b>",
            "Message-Id: <4@b>\nIn-Reply-To: <2@b>",
            "Message-Id: <5@b>\nIn-Reply-To: <2@b>",
        ]),
        "* THREAD (1)((2)(3))"
    );
    // A dummy inside a thread is replaced by its children.
    assert_eq!(
        refs(&[
            "Message-Id: <a@b>",
            "Message-Id: <c@b>\nReferences: <a@b> <missing@b>",
            "Message-Id: <d@b>\nReferences: <a@b> <missing@b>",
        ]),
        "* THREAD (1 (2)(3))"
    );
    // A message referring to itself.
    assert_eq!(
        refs(&["Message-Id: <a@b>\nReferences: <a@b>"]),
        "* THREAD (1)"
    );
}

#[test]
fn references_groups_roots_by_subject() {
    // A reply without references goes under the original (thread3, thread4).
    assert_eq!(
        refs(&[
            "Message-Id: <a@b>\nSubject: foo",
            "Message-Id: <a@b>\nSubject: Re: foo"
        ]),
        "* THREAD (1 2)"
    );
    assert_eq!(
        refs(&[
            "Message-Id: <a@b>\nSubject: foo",
            "Message-Id: <b@b>\nReferences: <c@b>\nSubject: Re: foo",
        ]),
        "* THREAD (1 2)"
    );
    // The reply came first: it still goes under the original.
    assert_eq!(
        refs(&["Subject: Re: foo", "Subject: foo"]),
        "* THREAD (2 1)"
    );
    // Two originals: a new dummy above both.
    assert_eq!(
        refs(&["Subject: foo", "Subject: bar", "Subject: foo"]),
        "* THREAD ((1)(3))(2)"
    );
    // A dummy root takes a real root with the same subject as a child.
    assert_eq!(
        refs(&[
            "References: <x@b>\nSubject: Re: foo",
            "References: <x@b>\nSubject: Re: foo",
            "Subject: foo",
        ]),
        "* THREAD ((1)(2)(3))"
    );
    // Empty subjects are never grouped.
    assert_eq!(refs(&["Subject: Re:", "X-A: 1"]), "* THREAD (1)(2)");
}

#[test]
fn deep_threads_do_not_recurse() {
    let n = 20_000;
    let mut v = Vec::new();
    for i in 0..n {
        let mut m = SortMessage::from_meta(i + 1, i + 1, 0, 0);
        m.message_id = Some(format!("{i}@x"));
        if i > 0 {
            m.references = vec![format!("{}@x", i - 1)];
        }
        v.push(m);
    }
    let t = tokens(ThreadAlgorithm::References, false, &v);
    assert_eq!(t.len(), n as usize + 2);
    let r = Response::Data(Data::Thread(t)).to_bytes(EncodeOptions::default());
    assert!(r.starts_with(b"* THREAD (1 2 3 "));
}
