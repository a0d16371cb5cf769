//! The server-wide cache of decoded header fields per message blob, for SEARCH on header keys,
//! and of SORT/THREAD keys per message blob.

use super::*;

/// Decoded, case-folded header fields per message blob (blobs never change and ids are never
/// reused), shared by all IMAP sessions: a SEARCH on SUBJECT/FROM/HEADER... over a mailbox
/// reads each message's header once, not once per search, like Dovecot's cache file. The
/// same for the keys SORT and THREAD compare ([`SortMessage`], kept with zero metadata).
/// Bounded in bytes (both kinds together); the oldest entries go first.
pub struct HeaderCache {
    pub(super) inner: std::sync::Mutex<HeaderCacheInner>,
    pub(super) limit: usize,
}

/// Which map an entry of [`HeaderCacheInner::order`] is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Fields,
    SortKeys,
}

#[derive(Default)]
pub(super) struct HeaderCacheInner {
    pub(super) map: HashMap<hato_store::BlobId, Arc<[(String, String)]>>,
    pub(super) sort_keys: HashMap<hato_store::BlobId, Arc<SortMessage>>,
    pub(super) order: std::collections::VecDeque<(hato_store::BlobId, Kind)>,
    pub(super) bytes: usize,
}

fn fields_size(fields: &[(String, String)]) -> usize {
    fields
        .iter()
        .map(|(n, v)| n.len() + v.len() + 48)
        .sum::<usize>()
        + 64
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
        let size = fields_size(&fields);
        if size > self.limit / 4 {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.map.insert(blob, fields).is_some() {
            return;
        }
        inner.order.push_back((blob, Kind::Fields));
        inner.bytes += size;
        self.evict(&mut inner);
    }

    pub(super) fn get_sort_keys(&self, blob: hato_store::BlobId) -> Option<Arc<SortMessage>> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.sort_keys.get(&blob).cloned()
    }

    pub(super) fn insert_sort_keys(&self, blob: hato_store::BlobId, keys: Arc<SortMessage>) {
        let size = keys.footprint() + 64;
        if size > self.limit / 4 {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.sort_keys.insert(blob, keys).is_some() {
            return;
        }
        inner.order.push_back((blob, Kind::SortKeys));
        inner.bytes += size;
        self.evict(&mut inner);
    }

    fn evict(&self, inner: &mut HeaderCacheInner) {
        while inner.bytes > self.limit {
            let Some((old, kind)) = inner.order.pop_front() else {
                break;
            };
            let freed = match kind {
                Kind::Fields => inner.map.remove(&old).map(|f| fields_size(&f)),
                Kind::SortKeys => inner.sort_keys.remove(&old).map(|k| k.footprint() + 64),
            };
            inner.bytes -= freed.unwrap_or(0);
        }
    }
}
