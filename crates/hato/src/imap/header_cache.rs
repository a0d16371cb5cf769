//! The server-wide cache of decoded header fields per message blob, for SEARCH on header keys.

use super::*;

/// Decoded, case-folded header fields per message blob (blobs never change and ids are never
/// reused), shared by all IMAP sessions: a SEARCH on SUBJECT/FROM/HEADER... over a mailbox
/// reads each message's header once, not once per search, like Dovecot's cache file. Bounded
/// in bytes; the oldest entries go first.
pub struct HeaderCache {
    pub(super) inner: std::sync::Mutex<HeaderCacheInner>,
    pub(super) limit: usize,
}

#[derive(Default)]
pub(super) struct HeaderCacheInner {
    pub(super) map: HashMap<hato_store::BlobId, Arc<[(String, String)]>>,
    pub(super) order: std::collections::VecDeque<hato_store::BlobId>,
    pub(super) bytes: usize,
}

impl HeaderCache {
    pub fn new(limit: usize) -> HeaderCache {
        HeaderCache {
            inner: std::sync::Mutex::new(HeaderCacheInner::default()),
            limit,
        }
    }

    pub(super) fn get(&self, blob: hato_store::BlobId) -> Option<Arc<[(String, String)]>> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.map.get(&blob).cloned()
    }

    pub(super) fn insert(&self, blob: hato_store::BlobId, fields: Arc<[(String, String)]>) {
        let size = fields
            .iter()
            .map(|(n, v)| n.len() + v.len() + 48)
            .sum::<usize>()
            + 64;
        if size > self.limit / 4 {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.map.insert(blob, fields).is_some() {
            return;
        }
        inner.order.push_back(blob);
        inner.bytes += size;
        while inner.bytes > self.limit {
            let Some(old) = inner.order.pop_front() else {
                break;
            };
            if let Some(f) = inner.map.remove(&old) {
                inner.bytes -= f.iter().map(|(n, v)| n.len() + v.len() + 48).sum::<usize>() + 64;
            }
        }
    }
}
