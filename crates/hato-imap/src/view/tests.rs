use super::*;
use crate::encode::EncodeOptions;
use crate::sequence::{SeqNo, SeqRange};

/// A mailbox as the store keeps it: UIDs ascending, one MODSEQ per change, an expunge log.
#[derive(Default)]
struct Sim {
    uidnext: u32,
    modseq: u64,
    messages: Vec<ViewMessage>,
    vanished: Vec<(u32, u64)>,
}

impl Sim {
    fn new(n: u32) -> Sim {
        let mut s = Sim {
            uidnext: 1,
            ..Sim::default()
        };
        for _ in 0..n {
            s.append(&[]);
        }
        s
    }

    fn append(&mut self, flags: &[Flag]) -> u32 {
        self.modseq += 1;
        let uid = self.uidnext;
        self.uidnext += 1;
        self.messages.push(ViewMessage {
            uid,
            flags: flags.to_vec(),
            modseq: self.modseq,
        });
        uid
    }

    fn set_flags(&mut self, uid: u32, flags: &[Flag]) {
        self.modseq += 1;
        let m = self.messages.iter_mut().find(|m| m.uid == uid).unwrap();
        m.flags = flags.to_vec();
        m.modseq = self.modseq;
    }

    fn expunge(&mut self, uids: &[u32]) {
        self.modseq += 1;
        self.messages.retain(|m| !uids.contains(&m.uid));
        for &u in uids {
            self.vanished.push((u, self.modseq));
        }
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            uidvalidity: 7,
            uidnext: self.uidnext,
            highest_modseq: self.modseq,
            messages: self.messages.clone(),
        }
    }

    fn changes_since(&self, modseq: u64) -> Changes {
        Changes {
            highest_modseq: self.modseq,
            uidnext: self.uidnext,
            changed: self
                .messages
                .iter()
                .filter(|m| m.modseq > modseq)
                .cloned()
                .collect(),
            vanished: self
                .vanished
                .iter()
                .filter(|v| v.1 > modseq)
                .map(|v| v.0)
                .collect(),
        }
    }

    fn sync(&self, v: &mut SelectedView) {
        v.update(Update::Changes(self.changes_since(v.synced_modseq())))
            .unwrap();
    }
}

const REV1: Enabled = Enabled {
    imap4rev2: false,
    condstore: false,
    qresync: false,
};
const REV2: Enabled = Enabled {
    imap4rev2: true,
    condstore: false,
    qresync: false,
};
const QRESYNC: Enabled = Enabled {
    imap4rev2: true,
    condstore: true,
    qresync: true,
};

fn wire(rs: &[Response]) -> Vec<String> {
    rs.iter()
        .map(|r| {
            String::from_utf8(r.to_bytes(EncodeOptions::default()))
                .unwrap()
                .trim_end()
                .to_string()
        })
        .collect()
}

fn set(s: &str) -> SequenceSet {
    if s == "$" {
        return SequenceSet::Saved;
    }
    let n = |p: &str| {
        if p == "*" {
            SeqNo::Largest
        } else {
            SeqNo::Value(p.parse().unwrap())
        }
    };
    SequenceSet::Ranges(
        s.split(',')
            .map(|r| match r.split_once(':') {
                Some((a, b)) => SeqRange {
                    start: n(a),
                    end: n(b),
                },
                None => SeqRange::single(n(r)),
            })
            .collect(),
    )
}

#[test]
fn select_responses_rev1_and_condstore() {
    let mut sim = Sim::new(3);
    sim.set_flags(1, &[Flag::Seen]);
    let mut v = SelectedView::new(sim.snapshot());
    assert_eq!(
        wire(&v.select_responses(REV1)),
        [
            "* 3 EXISTS",
            "* 0 RECENT",
            "* OK [UNSEEN 2] First unseen",
            "* OK [UIDVALIDITY 7] UIDs valid",
            "* OK [UIDNEXT 4] Predicted next UID",
        ]
    );
    assert_eq!(
        wire(&v.select_responses(QRESYNC)),
        [
            "* 3 EXISTS",
            "* OK [UIDVALIDITY 7] UIDs valid",
            "* OK [UIDNEXT 4] Predicted next UID",
            "* OK [HIGHESTMODSEQ 4] Highest",
        ]
    );
}

#[test]
fn concurrent_sessions_see_changes_at_the_right_moments() {
    let mut sim = Sim::new(4);
    let mut a = SelectedView::new(sim.snapshot());
    let mut b = SelectedView::new(sim.snapshot());

    // Session A flags message 2 and expunges message 3 (its own EXPUNGE command).
    sim.set_flags(2, &[Flag::Flagged]);
    sim.set_flags(3, &[Flag::Deleted]);
    sim.expunge(&[3]);
    sim.sync(&mut a);
    let ra = a.flush(Moment::Any, REV2);
    assert_eq!(wire(&ra), ["* 3 EXPUNGE", "* 2 FETCH (FLAGS (\\Flagged))",]);

    // Session B is in a FETCH: the flag change may be told, the expunge not.
    sim.sync(&mut b);
    let fetch = CommandBody::Fetch(crate::command::FetchCommand {
        uid: false,
        set: set("1:*"),
        items: vec![],
        changed_since: None,
        vanished: false,
    });
    assert_eq!(Moment::during(&fetch), Moment::NoExpunge);
    let rb = b.flush(Moment::during(&fetch), REV2);
    assert_eq!(wire(&rb), ["* 2 FETCH (FLAGS (\\Flagged))"]);
    // Its numbers are unchanged: message 3 is still there for it, marked expunged.
    assert_eq!(b.exists(), 4);
    assert_eq!(b.uid(3), Some(3));
    assert!(b.is_expunged(3));
    assert_eq!(b.resolve_seq(&set("4")).unwrap(), [(4, 4)]);

    // Meanwhile a delivery: EXISTS may go out during the FETCH too.
    sim.append(&[]);
    sim.sync(&mut b);
    assert_eq!(wire(&b.flush(Moment::NoExpunge, REV2)), ["* 5 EXISTS"]);
    assert!(b.has_pending());
    // At NOOP the expunge is reported and numbers shift.
    assert_eq!(wire(&b.flush(Moment::Any, REV2)), ["* 3 EXPUNGE"]);
    assert!(!b.has_pending());
    assert_eq!(b.exists(), 4);
    assert_eq!(
        b.messages().collect::<Vec<_>>(),
        [(1, 1), (2, 2), (3, 4), (4, 5)]
    );

    // A sees the delivery at its next NOOP and claims it (rev1 there: RECENT too).
    sim.sync(&mut a);
    a.add_recent(5, sim.uidnext);
    assert_eq!(
        wire(&a.flush(Moment::Any, REV1)),
        ["* 4 EXISTS", "* 1 RECENT"]
    );
    assert!(a.is_recent(5) && !a.is_recent(4));
    assert_eq!(
        a.flags(5, REV1).unwrap(),
        [Flag::Recent],
        "\\Recent for rev1 clients"
    );
    assert_eq!(a.flags(5, REV2).unwrap(), []);
}

#[test]
fn three_sessions_uid_store_may_carry_expunges() {
    let mut sim = Sim::new(3);
    let mut views: Vec<SelectedView> = (0..3).map(|_| SelectedView::new(sim.snapshot())).collect();
    sim.expunge(&[1]);
    let uid_store = CommandBody::Store(crate::command::StoreCommand {
        uid: true,
        set: set("1:*"),
        unchanged_since: None,
        op: crate::command::StoreOp::Add,
        silent: false,
        flags: vec![],
    });
    let store = CommandBody::Store(crate::command::StoreCommand {
        uid: false,
        set: set("1:*"),
        unchanged_since: None,
        op: crate::command::StoreOp::Add,
        silent: false,
        flags: vec![],
    });
    for v in &mut views {
        sim.sync(v);
    }
    assert_eq!(
        wire(&views[0].flush(Moment::during(&uid_store), REV2)),
        ["* 1 EXPUNGE"]
    );
    assert!(views[1].flush(Moment::during(&store), REV2).is_empty());
    assert_eq!(
        wire(&views[2].flush(Moment::during(&CommandBody::Idle), REV2)),
        ["* 1 EXPUNGE"]
    );
}

#[test]
fn renumbering_after_expunging_several() {
    let mut sim = Sim::new(10);
    let mut v = SelectedView::new(sim.snapshot());
    sim.expunge(&[2, 3, 5, 9, 10]);
    sim.sync(&mut v);
    assert_eq!(
        wire(&v.flush(Moment::Any, REV2)),
        [
            "* 10 EXPUNGE",
            "* 9 EXPUNGE",
            "* 5 EXPUNGE",
            "* 3 EXPUNGE",
            "* 2 EXPUNGE",
        ]
    );
    // Replaying the EXPUNGEs on the client's list gives the view's list.
    let mut client: Vec<u32> = (1..=10).collect();
    for n in [10, 9, 5, 3, 2] {
        client.remove(n - 1);
    }
    assert_eq!(v.messages().map(|(_, u)| u).collect::<Vec<_>>(), client);
    assert_eq!(
        v.messages().collect::<Vec<_>>(),
        [(1, 1), (2, 4), (3, 6), (4, 7), (5, 8)]
    );
    assert_eq!(v.seq(6), Some(3));
    assert_eq!(v.seq(5), None);
    assert_eq!(
        v.resolve_seq(&set("2:3,5")).unwrap(),
        [(2, 4), (3, 6), (5, 8)]
    );
    assert_eq!(v.resolve_seq(&set("6")), Err(ViewError::InvalidSequence));
}

#[test]
fn vanished_with_qresync() {
    let mut sim = Sim::new(6);
    let mut v = SelectedView::new(sim.snapshot());
    v.select_responses(QRESYNC);
    sim.set_flags(6, &[Flag::Seen]);
    sim.expunge(&[2, 3, 4]);
    sim.sync(&mut v);
    // HIGHESTMODSEQ does not pass the unreported expunge.
    assert_eq!(v.highest_modseq(), 6);
    assert_eq!(v.synced_modseq(), 8);
    assert_eq!(
        wire(&v.flush(Moment::NoExpunge, QRESYNC)),
        ["* 6 FETCH (UID 6 FLAGS (\\Seen) MODSEQ (7))"]
    );
    assert_eq!(v.highest_modseq(), 6);
    assert_eq!(wire(&v.flush(Moment::Any, QRESYNC)), ["* VANISHED 2:4"]);
    assert_eq!(v.highest_modseq(), 8);
    assert_eq!(v.exists(), 3);
}

#[test]
fn uid_sets_with_star() {
    // Empty mailbox.
    let sim = Sim::new(0);
    let v = SelectedView::new(sim.snapshot());
    assert!(v.resolve_uid(&set("1:*")).is_empty());
    assert!(v.resolve_uid(&set("*")).is_empty());
    assert!(v.resolve_seq(&set("1:*")).unwrap().is_empty());
    assert!(v.resolve_seq(&set("*")).unwrap().is_empty());
    assert_eq!(v.resolve_seq(&set("1")), Err(ViewError::InvalidSequence));
    assert!(v.resolve_uid(&set("$")).is_empty());

    let mut sim = Sim::new(5);
    sim.expunge(&[2]);
    let mut v = SelectedView::new(sim.snapshot());
    // `n:*` with n above every UID still names the largest.
    assert_eq!(v.resolve_uid(&set("100:*")), [(4, 5)]);
    assert_eq!(v.resolve_uid(&set("*")), [(4, 5)]);
    assert_eq!(v.resolve_uid(&set("1:3,4:4294967295")).len(), 4);
    assert_eq!(v.resolve_uid(&set("2")), []);
    assert_eq!(v.resolve_seq(&set("3:*")).unwrap(), [(3, 4), (4, 5)]);
    assert_eq!(v.resolve_seq(&set("9:*")).unwrap(), [(4, 5)]);
    assert_eq!(v.resolve_seq(&set("*:1")).unwrap().len(), 4);

    // `$`: saved as UIDs, survives renumbering, skips expunged ones.
    v.save_result(NumberSet::from_numbers([3, 4, 5]));
    sim.expunge(&[3]);
    sim.sync(&mut v);
    v.flush(Moment::Any, REV2);
    assert_eq!(v.resolve_seq(&set("$")).unwrap(), [(2, 4), (3, 5)]);
    assert_eq!(v.resolve_uid(&set("$")), [(2, 4), (3, 5)]);
}

#[test]
fn snapshot_updates_and_uidvalidity() {
    let mut sim = Sim::new(3);
    let mut v = SelectedView::new(sim.snapshot());
    sim.expunge(&[1]);
    sim.set_flags(3, &[Flag::Answered]);
    let new = sim.append(&[Flag::Seen]);
    v.update(Update::Snapshot(sim.snapshot())).unwrap();
    assert_eq!(
        wire(&v.flush(Moment::Any, REV2)),
        [
            "* 1 EXPUNGE",
            "* 3 EXISTS",
            "* 2 FETCH (FLAGS (\\Answered))",
        ]
    );
    assert_eq!(v.flags(new, REV2).unwrap(), [Flag::Seen]);
    let mut other = sim.snapshot();
    other.uidvalidity = 8;
    assert_eq!(
        v.update(Update::Snapshot(other)),
        Err(ViewError::UidValidityChanged)
    );
}

#[test]
fn appended_then_expunged_before_report_is_never_shown() {
    let mut sim = Sim::new(1);
    let mut v = SelectedView::new(sim.snapshot());
    let u = sim.append(&[]);
    sim.sync(&mut v);
    sim.expunge(&[u]);
    sim.sync(&mut v);
    assert!(v.flush(Moment::Any, REV2).is_empty());
    assert_eq!(v.uidnext(), 3);
}

#[test]
fn own_store_is_not_reported_twice() {
    let mut sim = Sim::new(2);
    let mut v = SelectedView::new(sim.snapshot());
    v.select_responses(QRESYNC);
    sim.set_flags(1, &[Flag::Seen]);
    // The driver answered the STORE with its own FETCH and records it.
    assert!(
        v.record_sent_flags(1, vec![Flag::Seen], sim.modseq)
            .is_empty()
    );
    sim.sync(&mut v);
    assert!(v.flush(Moment::Any, QRESYNC).is_empty());
    // A flag change by someone else later is reported with MODSEQ.
    sim.set_flags(2, &[Flag::Draft]);
    sim.sync(&mut v);
    let cond = Enabled {
        imap4rev2: false,
        condstore: true,
        qresync: false,
    };
    assert_eq!(
        wire(&v.flush(Moment::Any, cond)),
        ["* 2 FETCH (FLAGS (\\Draft) MODSEQ (4))"]
    );
}

#[test]
fn resync_responses_for_qresync_select() {
    let mut sim = Sim::new(5);
    let client_modseq = sim.modseq;
    sim.expunge(&[1, 2]);
    sim.set_flags(4, &[Flag::Seen]);
    let v = SelectedView::new(sim.snapshot());
    let changes = sim.changes_since(client_modseq);
    assert_eq!(
        wire(&v.resync_responses(&changes, None, QRESYNC)),
        [
            "* VANISHED (EARLIER) 1:2",
            "* 2 FETCH (UID 4 FLAGS (\\Seen) MODSEQ (7))",
        ]
    );
    let known = NumberSet::from_numbers([2, 3, 4, 5]);
    assert_eq!(
        wire(&v.resync_responses(&changes, Some(&known), QRESYNC))[0],
        "* VANISHED (EARLIER) 2"
    );
}

proptest::proptest! {
    /// Random interleavings of changes and flushes: replaying what a client was told on
    /// its own list of UIDs always gives the view's list, the sequence numbers in each
    /// response are valid when read, and every keyword a FETCH shows was in FLAGS before.
    #[test]
    fn client_model_stays_in_sync(ops in proptest::collection::vec((0u8..5, 0u32..12), 1..80)) {
        let mut sim = Sim::new(5);
        let mut v = SelectedView::new(sim.snapshot());
        let mut client: Vec<u32> = v.messages().map(|(_, u)| u).collect();
        let mut known_uids: Vec<u32> = sim.messages.iter().map(|m| m.uid).collect();
        let mut client_keywords: Vec<String> = Vec::new();
        for (op, n) in ops {
            match op {
                0 => { sim.append(&[]); }
                1 => {
                    if let Some(m) = sim.messages.get(n as usize % sim.messages.len().max(1)) {
                        let uid = m.uid;
                        sim.expunge(&[uid]);
                    }
                }
                2 => {
                    if let Some(m) = sim.messages.get(n as usize % sim.messages.len().max(1)) {
                        let uid = m.uid;
                        sim.set_flags(uid, &[Flag::Keyword(format!("k{n}"))]);
                    }
                }
                3 => sim.sync(&mut v),
                _ => {
                    let moment = if n % 2 == 0 { Moment::Any } else { Moment::NoExpunge };
                    for r in v.flush(moment, REV2) {
                        match r {
                            Response::Data(Data::Expunge(seq)) => {
                                proptest::prop_assert!(seq >= 1 && seq as usize <= client.len());
                                client.remove(seq as usize - 1);
                            }
                            Response::Data(Data::Exists(count)) => {
                                // The new UIDs are those the store has beyond the client's.
                                let last = client.last().copied().unwrap_or(0);
                                let news: Vec<u32> = v.messages().map(|(_, u)| u).filter(|&u| u > last).collect();
                                client.extend(news);
                                proptest::prop_assert_eq!(count as usize, client.len());
                            }
                            Response::Data(Data::Fetch { seq, items }) => {
                                proptest::prop_assert!(seq >= 1 && seq as usize <= client.len());
                                for item in items {
                                    if let FetchValue::Flags(flags) = item {
                                        for f in flags {
                                            if let Flag::Keyword(k) = f {
                                                proptest::prop_assert!(client_keywords.contains(&k), "{k} not in FLAGS");
                                            }
                                        }
                                    }
                                }
                            }
                            Response::Data(Data::Flags(flags)) => {
                                client_keywords = flags.iter().filter(|f| !f.is_system()).map(|f| f.to_string()).collect();
                            }
                            Response::Status { code: Some(Code::PermanentFlags { .. }), .. } => {}
                            other => proptest::prop_assert!(false, "{other:?}"),
                        }
                    }
                    proptest::prop_assert_eq!(&client, &v.messages().map(|(_, u)| u).collect::<Vec<_>>());
                }
            }
            known_uids.retain(|u| sim.messages.iter().any(|m| m.uid == *u));
        }
        // After a final sync and flush at a moment allowing everything, the view equals the store.
        sim.sync(&mut v);
        v.flush(Moment::Any, REV2);
        let store: Vec<u32> = sim.messages.iter().map(|m| m.uid).collect();
        proptest::prop_assert_eq!(v.messages().map(|(_, u)| u).collect::<Vec<_>>(), store);
        proptest::prop_assert!(!v.has_pending());
        proptest::prop_assert_eq!(v.highest_modseq(), sim.modseq);
    }
}

#[test]
fn ten_thousand_messages_and_huge_sets_are_cheap() {
    let mut sim = Sim::new(10_000);
    let mut v = SelectedView::new(sim.snapshot());
    let start = std::time::Instant::now();
    assert_eq!(v.resolve_uid(&set("1:4294967295")).len(), 10_000);
    assert_eq!(v.resolve_seq(&set("1:*")).unwrap().len(), 10_000);
    assert!(v.resolve_uid(&set("4294967295")).is_empty());
    let odd: Vec<u32> = (1..=10_000).filter(|u| u % 2 == 1).collect();
    sim.expunge(&odd);
    sim.sync(&mut v);
    let r = v.flush(Moment::Any, REV2);
    assert_eq!(r.len(), 5_000);
    assert_eq!(v.exists(), 5_000);
    assert_eq!(v.uid(1), Some(2));
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn recent_is_the_set_added_by_the_driver() {
    let sim = Sim::new(5);
    let mut v = SelectedView::new(sim.snapshot());
    assert_eq!(v.recent_count(), 0);
    assert!(!v.is_recent(5), "nothing is recent before a claim");
    v.add_recent(3, 5);
    v.add_recent(4, 4); // empty
    v.add_recent(9, 7); // empty
    assert!(!v.is_recent(2) && v.is_recent(3) && v.is_recent(4) && !v.is_recent(5));
    assert_eq!(v.recent_count(), 2);
    assert_eq!(
        wire(&v.select_responses(REV1))[..2],
        ["* 5 EXISTS", "* 2 RECENT"]
    );
    assert_eq!(v.flags(3, REV1).unwrap(), [Flag::Recent]);
    assert_eq!(v.flags(5, REV1).unwrap(), []);
    // IMAP4rev2: no \Recent, no RECENT.
    assert_eq!(v.flags(3, REV2).unwrap(), []);
    assert!(
        !wire(&v.select_responses(REV2))
            .iter()
            .any(|l| l.contains("RECENT"))
    );
    // The store's UIDs start at 1: 0 is clamped.
    v.add_recent(0, 2);
    assert!(v.is_recent(1));
    assert_eq!(v.recent_count(), 3);
    // select_responses told the client; no RECENT at the next flush for that.
    let mut w = SelectedView::new(sim.snapshot());
    w.add_recent(1, 6);
    w.select_responses(REV1);
    assert!(w.flush(Moment::Any, REV1).is_empty());
}

#[test]
fn recent_claimed_before_exists_counts_once_announced() {
    let mut sim = Sim::new(2);
    let mut v = SelectedView::new(sim.snapshot());
    v.add_recent(1, 3);
    // The claim covered UIDs the view has not seen yet (delivered after its read).
    v.add_recent(3, 5);
    assert_eq!(v.recent_count(), 2, "only messages the client knows");
    assert_eq!(wire(&v.select_responses(REV1))[1], "* 2 RECENT");
    sim.append(&[]);
    sim.append(&[]);
    sim.append(&[]);
    sim.sync(&mut v);
    assert_eq!(v.recent_count(), 2, "not announced yet");
    assert_eq!(
        wire(&v.flush(Moment::Any, REV1)),
        ["* 5 EXISTS", "* 4 RECENT"]
    );
    assert!(v.is_recent(4) && !v.is_recent(5));
    // An expunged recent message no longer counts once reported.
    sim.expunge(&[1]);
    sim.sync(&mut v);
    assert_eq!(wire(&v.flush(Moment::Any, REV1)), ["* 1 EXPUNGE"]);
    assert_eq!(v.recent_count(), 3);
    assert!(v.flush(Moment::Any, REV1).is_empty());
}

#[test]
fn recent_added_for_known_messages_is_announced_at_the_next_flush() {
    let sim = Sim::new(3);
    let mut v = SelectedView::new(sim.snapshot());
    v.select_responses(REV1);
    // E.g. a claim that failed at SELECT and succeeded later.
    v.add_recent(2, 4);
    assert_eq!(wire(&v.flush(Moment::Any, REV1)), ["* 2 RECENT"]);
    assert!(v.flush(Moment::Any, REV1).is_empty(), "told once");
    // UIDs beyond the known messages do not need a RECENT yet.
    v.add_recent(4, 6);
    assert!(v.flush(Moment::Any, REV1).is_empty());
    // IMAP4rev2: never.
    v.add_recent(1, 2);
    assert!(v.flush(Moment::Any, REV2).is_empty());
    assert_eq!(v.recent_count(), 3);
}

#[test]
fn only_the_session_that_claims_a_delivery_sees_it_recent() {
    let mut sim = Sim::new(1);
    let mut a = SelectedView::new(sim.snapshot());
    let mut b = SelectedView::new(sim.snapshot());
    a.add_recent(1, 2); // A selected first and claimed message 1.
    assert_eq!(wire(&a.select_responses(REV1))[1], "* 1 RECENT");
    assert_eq!(wire(&b.select_responses(REV1))[1], "* 0 RECENT");
    let uid = sim.append(&[]);
    sim.sync(&mut a);
    sim.sync(&mut b);
    // B is notified first and claims it; A's claim comes back empty.
    b.add_recent(uid, sim.uidnext);
    a.add_recent(sim.uidnext, sim.uidnext);
    assert_eq!(
        wire(&b.flush(Moment::Any, REV1)),
        ["* 2 EXISTS", "* 1 RECENT"]
    );
    assert_eq!(
        wire(&a.flush(Moment::Any, REV1)),
        ["* 2 EXISTS", "* 1 RECENT"]
    );
    assert!(a.is_recent(1) && !a.is_recent(2));
    assert!(!b.is_recent(1) && b.is_recent(2));
}

const CONDSTORE: Enabled = Enabled {
    imap4rev2: false,
    condstore: true,
    qresync: false,
};

fn kw(k: &str) -> Flag {
    Flag::Keyword(k.to_string())
}

#[test]
fn flags_at_select_list_the_mailbox_keywords() {
    let mut sim = Sim::new(2);
    sim.set_flags(1, &[Flag::Seen, kw("$Junk")]);
    sim.set_flags(2, &[kw("$junk"), kw("NIL")]);
    let mut v = SelectedView::new(sim.snapshot());
    assert_eq!(
        wire(&v.flags_responses()),
        [
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Junk NIL)",
            "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Junk NIL \\*)] Flags permitted",
        ]
    );
    // Nothing new: no FLAGS at the next flush.
    assert!(v.flush(Moment::Any, REV2).is_empty());

    let mut ro = SelectedView::new(sim.snapshot());
    ro.set_read_only(true);
    assert_eq!(
        wire(&ro.flags_responses())[1],
        "* OK [PERMANENTFLAGS ()] Read-only mailbox"
    );
}

/// RFC 9051 §7.3.5: a keyword set by another session is announced in FLAGS (and
/// PERMANENTFLAGS) before the FETCH that shows it; once only, whatever its case.
#[test]
fn new_keyword_from_another_session_is_announced_before_fetch() {
    let mut sim = Sim::new(2);
    let mut v = SelectedView::new(sim.snapshot());
    v.flags_responses();
    sim.set_flags(1, &[kw("$Hello")]);
    sim.sync(&mut v);
    assert_eq!(
        wire(&v.flush(Moment::NoExpunge, REV2)),
        [
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Hello)",
            "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Hello \\*)] Flags permitted",
            "* 1 FETCH (FLAGS ($Hello))",
        ]
    );
    sim.set_flags(2, &[kw("$HELLO")]);
    sim.sync(&mut v);
    assert_eq!(
        wire(&v.flush(Moment::NoExpunge, REV2)),
        ["* 2 FETCH (FLAGS ($HELLO))"]
    );
    // Removing a keyword from every message does not shrink FLAGS.
    sim.set_flags(1, &[]);
    sim.set_flags(2, &[]);
    sim.sync(&mut v);
    v.flush(Moment::Any, REV2);
    assert_eq!(v.keywords(), ["$Hello"]);
}

/// APPEND/COPY of a message with a new keyword: FLAGS comes before its EXISTS, so a FETCH
/// of the new message finds the keyword announced.
#[test]
fn new_message_with_new_keyword_is_announced() {
    let mut sim = Sim::new(1);
    let mut v = SelectedView::new(sim.snapshot());
    v.flags_responses();
    sim.append(&[Flag::Seen, kw("$Forwarded")]);
    sim.sync(&mut v);
    assert_eq!(
        wire(&v.flush(Moment::Any, REV2)),
        [
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded)",
            "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded \\*)] Flags permitted",
            "* 2 EXISTS",
        ]
    );
}

/// The driver's own STORE (or a FETCH that set \Seen) gets the FLAGS to send before its
/// FETCH from `record_sent_flags`; the keyword is not announced again at the flush.
#[test]
fn own_store_of_new_keyword_returns_flags_first() {
    let mut sim = Sim::new(2);
    let mut v = SelectedView::new(sim.snapshot());
    v.set_read_only(false);
    v.flags_responses();
    sim.set_flags(1, &[kw("NIL")]);
    assert_eq!(
        wire(&v.record_sent_flags(1, vec![kw("NIL")], sim.modseq)),
        [
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft NIL)",
            "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft NIL \\*)] Flags permitted",
        ]
    );
    sim.set_flags(2, &[kw("nil")]);
    assert!(
        v.record_sent_flags(2, vec![kw("nil")], sim.modseq)
            .is_empty()
    );
    sim.sync(&mut v);
    assert!(v.flush(Moment::Any, REV1).is_empty());
}

/// RFC 7162 §3.1: CONDSTORE enabled by a command while the mailbox is selected (here
/// `FETCH 1 (MODSEQ)`) makes the next flush send HIGHESTMODSEQ, once.
#[test]
fn condstore_enabled_while_selected_announces_highestmodseq() {
    let mut sim = Sim::new(3);
    let mut v = SelectedView::new(sim.snapshot());
    v.flags_responses();
    v.select_responses(REV1);
    assert!(v.flush(Moment::NoExpunge, REV1).is_empty());
    assert_eq!(
        wire(&v.flush(Moment::NoExpunge, CONDSTORE)),
        ["* OK [HIGHESTMODSEQ 3] Highest"]
    );
    assert!(v.flush(Moment::NoExpunge, CONDSTORE).is_empty());
    // After the FETCH responses of a change, never before.
    sim.set_flags(2, &[Flag::Seen]);
    let mut w = SelectedView::new(Sim::new(3).snapshot());
    w.select_responses(REV1);
    sim.sync(&mut w);
    assert_eq!(
        wire(&w.flush(Moment::NoExpunge, CONDSTORE)),
        [
            "* 2 FETCH (FLAGS (\\Seen) MODSEQ (4))",
            "* OK [HIGHESTMODSEQ 4] Highest",
        ]
    );
    // SELECT (CONDSTORE) told the client already.
    let mut x = SelectedView::new(sim.snapshot());
    x.select_responses(CONDSTORE);
    assert!(x.flush(Moment::Any, CONDSTORE).is_empty());
}
