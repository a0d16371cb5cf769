//! The selected mailbox of a session: its view, and how it takes part in `\Recent`.

use super::*;

/// The selected mailbox.
pub(super) struct Selected {
    pub(super) id: MailboxId,
    pub(super) view: SelectedView,
    pub(super) read_only: bool,
    /// How this session takes part in `\Recent`.
    pub(super) recent: RecentMode,
    /// UIDs below were considered for `\Recent` already: claimed by this session (or, read-only,
    /// shown as recent if unclaimed) or seen claimed by another session.
    pub(super) recent_to: u32,
}

/// A selected mailbox's part in `\Recent` (RFC 3501 §2.3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RecentMode {
    /// SELECT: takes the unclaimed messages (one store write when there are any).
    Claim,
    /// EXAMINE: shows the unclaimed messages as recent, leaves them for the next SELECT.
    Peek,
    /// IMAP4rev2 enabled: the client cannot see `\Recent`, so it takes nothing from IMAP4rev1
    /// clients.
    Off,
}

impl Selected {
    /// Brings this session's `\Recent` UIDs up to date with what the store last reported: its
    /// watermark `recent_uid` and `uidnext` (from `mailbox_status` or `changes_since`). Costs
    /// nothing unless UIDNEXT passed `recent_to`; a read-write session then claims (one write)
    /// unless the read showed everything claimed by others already.
    pub(super) async fn take_recent(&mut self, store: &dyn Store, recent_uid: u32, uidnext: u32) {
        if uidnext <= self.recent_to {
            return;
        }
        match self.recent {
            RecentMode::Claim => {}
            RecentMode::Peek => {
                // EXAMINE does not take \Recent (RFC 3501 6.3.2): show the unclaimed ones.
                self.view
                    .add_recent(recent_uid.max(self.recent_to), uidnext);
                self.recent_to = uidnext;
                return;
            }
            RecentMode::Off => {
                self.recent_to = uidnext;
                return;
            }
        }
        if recent_uid >= uidnext {
            // Another session was notified first.
            self.recent_to = uidnext;
            return;
        }
        match store.claim_recent(self.id).await {
            Ok(Some((from, to))) => {
                self.view.add_recent(from, to);
                self.recent_to = self.recent_to.max(to);
            }
            // The mailbox is gone: the next sync expunges everything.
            Ok(None) => {}
            Err(e) => warn!(error = %e, "cannot claim recent messages"),
        }
    }
}
