//! The open maildrop of the TRANSACTION state (RFC 1939 §5): the fixed listing, the
//! deletion marks, message-number lookup and the check of the listing a driver gives.

use std::collections::HashSet;

use super::command::{self, Number};
use super::{MAX_UID_LEN, MessageInfo};

/// The open maildrop: the fixed listing and the deletion marks.
#[derive(Debug)]
pub(super) struct Maildrop {
    pub(super) messages: Vec<MessageInfo>,
    pub(super) deleted: Vec<bool>,
    /// Messages not marked deleted, and their total size.
    pub(super) visible: usize,
    pub(super) visible_size: u64,
}

impl Maildrop {
    pub(super) fn new(messages: Vec<MessageInfo>) -> Maildrop {
        let visible_size = total_size(&messages);
        Maildrop {
            deleted: vec![false; messages.len()],
            visible: messages.len(),
            visible_size,
            messages,
        }
    }

    /// Resolves a message-number argument to an index of a message not deleted.
    pub(super) fn lookup(&self, arg: &str) -> Result<usize, String> {
        let no_such = || {
            format!(
                "no such message, only {} messages in maildrop",
                self.messages.len()
            )
        };
        match command::number(arg) {
            Number::Invalid => Err("Invalid message number".to_string()),
            Number::Huge => Err(no_such()),
            Number::Value(n) => {
                let index = usize::try_from(n)
                    .ok()
                    .and_then(|n| n.checked_sub(1))
                    .filter(|&i| i < self.messages.len())
                    .ok_or_else(no_such)?;
                if self.deleted[index] {
                    return Err(format!("message {n} already deleted"));
                }
                Ok(index)
            }
        }
    }

    pub(super) fn delete(&mut self, index: usize) {
        self.deleted[index] = true;
        self.visible -= 1;
        self.visible_size = self.visible_size.saturating_sub(self.messages[index].size);
    }

    pub(super) fn undelete_all(&mut self) {
        self.deleted.iter_mut().for_each(|d| *d = false);
        self.visible = self.messages.len();
        self.visible_size = total_size(&self.messages);
    }

    pub(super) fn deleted_indices(&self) -> Vec<usize> {
        (0..self.messages.len())
            .filter(|&i| self.deleted[i])
            .collect()
    }
}

fn total_size(messages: &[MessageInfo]) -> u64 {
    messages
        .iter()
        .fold(0u64, |acc, m| acc.saturating_add(m.size))
}

/// Checks the listing a driver gave: unique-ids must be valid and unique, or UIDL
/// responses could be malformed or injected.
pub(super) fn listing_valid(messages: &[MessageInfo]) -> bool {
    let mut seen = HashSet::with_capacity(messages.len());
    messages.iter().all(|m| {
        !m.uid.is_empty()
            && m.uid.len() <= MAX_UID_LEN
            && m.uid.bytes().all(|b| (0x21..=0x7e).contains(&b))
            && seen.insert(m.uid.as_str())
    })
}
