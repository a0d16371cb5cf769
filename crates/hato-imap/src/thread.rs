//! THREAD (RFC 5256 §3): the ORDEREDSUBJECT and REFERENCES algorithms over the keys of
//! [`crate::sort::SortMessage`], and the `* THREAD` response, sans-IO.
//!
//! A driver runs the search as for SORT ([`crate::command::ThreadCommand::search_command`])
//! and hands every hit's [`SortMessage`] (built from its header block) to [`response`].
//!
//! * ORDEREDSUBJECT: messages sorted by base subject, then sent date; each run of one base
//!   subject is a thread whose first message is the parent of all the others; threads in
//!   the order of their first message's sent date.
//! * REFERENCES: RFC 5256 §3 steps 1–7, messages taken in sequence order. Message-IDs are
//!   compared exactly (without the angle brackets); a missing or duplicate Message-ID gives
//!   the message a container of its own. The references are `References:` or, when it has no
//!   msg-id, the first msg-id of `In-Reply-To:`. A link that would make a loop is not made
//!   (step 1.B), and a message whose parent changes is unlinked from the old one first, its
//!   new link again made only without a loop (step 1.C: so `c` referring to its own
//!   descendant `b` ends up a root above `b`, as in Dovecot). Dummies are pruned (step 4),
//!   roots grouped by base subject (step 6: a reply or forward goes under the original,
//!   two originals under a new dummy), siblings sorted by sent date (a dummy by its first
//!   child) with ties in sequence order.
//!
//! Nothing recurses: the tree is an arena and the response a flat list of tokens
//! ([`ThreadToken`]). Linking walks up the parent chain to refuse loops, so its cost is
//! bounded by the number of references (at most [`crate::sort::MAX_REFERENCES`] per
//! message) times the depth of the thread.

use std::collections::HashMap;

use crate::command::ThreadAlgorithm;
use crate::response::{Data, Response, ThreadToken};
use crate::sort::SortMessage;

#[derive(Clone, Debug, Default)]
struct Node {
    /// Index into the messages; `None` for a dummy.
    msg: Option<usize>,
    parent: Option<usize>,
    children: Vec<usize>,
}

/// Threads as an arena: the roots and every node's children, in output order.
#[derive(Clone, Debug, Default)]
struct Forest {
    nodes: Vec<Node>,
    roots: Vec<usize>,
}

impl Forest {
    fn add(&mut self, msg: Option<usize>) -> usize {
        self.nodes.push(Node {
            msg,
            ..Node::default()
        });
        self.nodes.len() - 1
    }

    fn link(&mut self, parent: usize, child: usize) {
        self.nodes[child].parent = Some(parent);
        self.nodes[parent].children.push(child);
    }

    fn unlink(&mut self, child: usize) {
        if let Some(p) = self.nodes[child].parent.take() {
            self.nodes[p].children.retain(|&c| c != child);
        }
    }

    /// Whether `a` is `b` or one of its ancestors.
    fn is_ancestor(&self, a: usize, b: usize) -> bool {
        if a != b && self.nodes[a].children.is_empty() {
            // A leaf is nobody's ancestor (the common case: no walk).
            return false;
        }
        let mut x = Some(b);
        while let Some(n) = x {
            if n == a {
                return true;
            }
            x = self.nodes[n].parent;
        }
        false
    }

    fn is_dummy(&self, n: usize) -> bool {
        self.nodes[n].msg.is_none()
    }

    /// The message that stands for `n`: itself, or a dummy's first child.
    fn message(&self, n: usize) -> Option<usize> {
        let node = &self.nodes[n];
        node.msg
            .or_else(|| node.children.first().and_then(|&c| self.nodes[c].msg))
    }

    /// The sort key of a node: sent date and sequence number of the message, a dummy's
    /// earliest child.
    fn key(&self, msgs: &[SortMessage], n: usize) -> (i64, u32) {
        let of = |m: usize| (msgs[m].sent, msgs[m].seq);
        match self.nodes[n].msg {
            Some(m) => of(m),
            None => self.nodes[n]
                .children
                .iter()
                .filter_map(|&c| self.nodes[c].msg.map(of))
                .min()
                .unwrap_or((i64::MAX, u32::MAX)),
        }
    }

    /// Sorts every set of siblings, the roots too, by [`Forest::key`].
    fn sort(&mut self, msgs: &[SortMessage]) {
        for n in 0..self.nodes.len() {
            if self.nodes[n].children.len() > 1 {
                let mut children = std::mem::take(&mut self.nodes[n].children);
                children.sort_by_key(|&c| self.key(msgs, c));
                self.nodes[n].children = children;
            }
        }
        let mut roots = std::mem::take(&mut self.roots);
        roots.sort_by_key(|&r| self.key(msgs, r));
        self.roots = roots;
    }

    /// The `* THREAD` tokens for the forest (`uid`: UIDs, else sequence numbers).
    fn tokens(&self, msgs: &[SortMessage], uid: bool) -> Vec<ThreadToken> {
        enum Work {
            Thread(usize),
            Close,
        }
        let id = |m: usize| if uid { msgs[m].uid } else { msgs[m].seq };
        let mut out = Vec::new();
        let mut stack: Vec<Work> = self.roots.iter().rev().map(|&r| Work::Thread(r)).collect();
        while let Some(w) = stack.pop() {
            let Work::Thread(n) = w else {
                out.push(ThreadToken::Close);
                continue;
            };
            out.push(ThreadToken::Open);
            let mut cur = n;
            loop {
                if let Some(m) = self.nodes[cur].msg {
                    out.push(ThreadToken::Id(id(m)));
                }
                let children = &self.nodes[cur].children;
                match children.len() {
                    0 => {
                        out.push(ThreadToken::Close);
                        break;
                    }
                    1 => cur = children[0],
                    _ => {
                        stack.push(Work::Close);
                        stack.extend(children.iter().rev().map(|&c| Work::Thread(c)));
                        break;
                    }
                }
            }
        }
        out
    }
}

/// The `* THREAD` response for `messages` (UIDs for UID THREAD, else sequence numbers).
pub fn response(algorithm: ThreadAlgorithm, uid: bool, messages: &[SortMessage]) -> Response {
    Response::Data(Data::Thread(tokens(algorithm, uid, messages)))
}

/// The tokens of the `* THREAD` response ([`response`]).
pub fn tokens(algorithm: ThreadAlgorithm, uid: bool, messages: &[SortMessage]) -> Vec<ThreadToken> {
    let mut msgs = messages.to_vec();
    msgs.sort_by_key(|m| m.seq);
    let forest = match algorithm {
        ThreadAlgorithm::OrderedSubject => ordered_subject(&msgs),
        ThreadAlgorithm::References => references(&msgs),
    };
    forest.tokens(&msgs, uid)
}

fn ordered_subject(msgs: &[SortMessage]) -> Forest {
    let mut order: Vec<usize> = (0..msgs.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&msgs[a], &msgs[b]);
        (&a.subject, a.sent, a.seq).cmp(&(&b.subject, b.sent, b.seq))
    });
    let mut f = Forest::default();
    let mut i = 0;
    while i < order.len() {
        let parent = f.add(Some(order[i]));
        f.roots.push(parent);
        let mut j = i + 1;
        while j < order.len() && msgs[order[j]].subject == msgs[order[i]].subject {
            let child = f.add(Some(order[j]));
            f.link(parent, child);
            j += 1;
        }
        i = j;
    }
    f.sort(msgs);
    f
}

fn references(msgs: &[SortMessage]) -> Forest {
    let mut f = Forest::default();
    // Step 1: containers by Message-ID, linked by references.
    let mut ids: HashMap<&str, usize> = HashMap::new();
    for (i, m) in msgs.iter().enumerate() {
        let this = match m.message_id.as_deref() {
            Some(id) => match ids.get(id) {
                Some(&c) if f.is_dummy(c) => {
                    f.nodes[c].msg = Some(i);
                    c
                }
                // A duplicate Message-ID: as if it had none.
                Some(_) => f.add(Some(i)),
                None => {
                    let c = f.add(Some(i));
                    ids.insert(id, c);
                    c
                }
            },
            None => f.add(Some(i)),
        };
        // 1.B: each reference the parent of the next, unless already linked or a loop.
        let mut prev: Option<usize> = None;
        for r in &m.references {
            let c = match ids.get(r.as_str()) {
                Some(&c) => c,
                None => {
                    let c = f.add(None);
                    ids.insert(r, c);
                    c
                }
            };
            if let Some(p) = prev
                && f.nodes[c].parent.is_none()
                && !f.is_ancestor(c, p)
            {
                f.link(p, c);
            }
            prev = Some(c);
        }
        // 1.C: the last reference is the parent.
        let parent = prev.filter(|&p| p != this);
        if f.nodes[this].parent != parent {
            f.unlink(this);
            if let Some(p) = parent
                && !f.is_ancestor(this, p)
            {
                f.link(p, this);
            }
        }
    }
    // Steps 2, 3: the root set.
    let roots: Vec<usize> = (0..f.nodes.len())
        .filter(|&n| f.nodes[n].parent.is_none())
        .collect();
    // Step 4: prune dummies.
    f.roots = prune_level(&mut f, roots, true);
    let mut stack = f.roots.clone();
    while let Some(n) = stack.pop() {
        let children = std::mem::take(&mut f.nodes[n].children);
        let kept = prune_level(&mut f, children, false);
        for &k in &kept {
            f.nodes[k].parent = Some(n);
        }
        stack.extend(&kept);
        f.nodes[n].children = kept;
    }
    for r in f.roots.clone() {
        f.nodes[r].parent = None;
    }
    // Step 5: sort the roots (a dummy by its first child).
    f.sort(msgs);
    // Step 6: group the roots by base subject.
    group_by_subject(&mut f, msgs);
    // Step 7: sort all siblings.
    f.sort(msgs);
    f
}

/// Step 4 for one set of siblings: dummies without children go; a dummy's children take its
/// place (at the root level only when it has one child). Only the root level can keep a
/// dummy.
fn prune_level(f: &mut Forest, list: Vec<usize>, root: bool) -> Vec<usize> {
    let mut out = Vec::with_capacity(list.len());
    let mut queue: std::collections::VecDeque<usize> = list.into();
    while let Some(n) = queue.pop_front() {
        if !f.is_dummy(n) {
            out.push(n);
            continue;
        }
        let children = std::mem::take(&mut f.nodes[n].children);
        if !root {
            for &c in children.iter().rev() {
                queue.push_front(c);
            }
            continue;
        }
        // A root dummy: its children pruned first (they are then real messages).
        let kept = prune_level(f, children, false);
        match kept.len() {
            0 => {}
            1 => queue.push_front(kept[0]),
            _ => {
                for &k in &kept {
                    f.nodes[k].parent = Some(n);
                }
                f.nodes[n].children = kept;
                out.push(n);
            }
        }
    }
    out
}

/// Step 6: roots with the same base subject are gathered.
fn group_by_subject(f: &mut Forest, msgs: &[SortMessage]) {
    const GONE: usize = usize::MAX;
    let subject = |f: &Forest, n: usize| -> Option<(String, bool)> {
        let m = &msgs[f.message(n)?];
        (!m.subject.is_empty()).then(|| (m.subject.clone(), m.reply))
    };
    // 6.A–C: the table, preferring dummies, then non-replies.
    let mut table: HashMap<String, usize> = HashMap::new();
    for &r in &f.roots {
        let Some((s, reply)) = subject(f, r) else {
            continue;
        };
        match table.get(&s) {
            None => {
                table.insert(s, r);
            }
            Some(&t) => {
                let t_reply = subject(f, t).is_some_and(|(_, reply)| reply);
                if (f.is_dummy(r) && !f.is_dummy(t))
                    || (!f.is_dummy(r) && !f.is_dummy(t) && t_reply && !reply)
                {
                    table.insert(s, r);
                }
            }
        }
    }
    // 6.D: merge every other root with the same subject into the table's.
    let mut roots = std::mem::take(&mut f.roots);
    let mut pos: HashMap<usize, usize> = roots.iter().enumerate().map(|(i, &r)| (r, i)).collect();
    for i in 0..roots.len() {
        let r = roots[i];
        if r == GONE {
            continue;
        }
        let Some((s, reply)) = subject(f, r) else {
            continue;
        };
        let Some(&t) = table.get(&s) else {
            continue;
        };
        if t == r {
            continue;
        }
        match (f.is_dummy(t), f.is_dummy(r)) {
            (true, true) => {
                for c in std::mem::take(&mut f.nodes[r].children) {
                    f.link(t, c);
                }
                roots[i] = GONE;
            }
            (true, false) => {
                f.link(t, r);
                roots[i] = GONE;
            }
            (false, true) => {
                f.link(r, t);
                roots[pos[&t]] = GONE;
                table.insert(s, r);
            }
            (false, false) => {
                let t_reply = subject(f, t).is_some_and(|(_, reply)| reply);
                if reply && !t_reply {
                    f.link(t, r);
                    roots[i] = GONE;
                } else if t_reply && !reply {
                    f.link(r, t);
                    roots[pos[&t]] = GONE;
                    table.insert(s, r);
                } else {
                    let d = f.add(None);
                    f.link(d, t);
                    f.link(d, r);
                    let at = pos[&t];
                    roots[at] = d;
                    pos.insert(d, at);
                    roots[i] = GONE;
                    table.insert(s, d);
                }
            }
        }
    }
    f.roots = roots.into_iter().filter(|&r| r != GONE).collect();
}

#[cfg(test)]
mod tests;
