//! Mail that hato writes itself (delivery status notifications, and the TLS reports built by
//! the outbound side) enters the store like received mail: local recipients get it in their
//! INBOX, others through the queue. Used by the SMTP driver and the outbound scheduler; it
//! imports neither.

use hato_delivery::dsn;
use hato_store::{Delivery, Store};

/// Stores a DSN for its recipient (the original sender): into a local account's INBOX, or
/// into the queue for another domain (sent from the null sender: never bounced itself).
/// `Ok(false)`: dropped, the local recipient no longer exists.
pub async fn store_dsn(
    store: &dyn Store,
    is_local: impl Fn(&str) -> bool,
    d: dsn::Dsn,
    now: i64,
) -> Result<bool, hato_store::StoreError> {
    let rcpt = d.rcpt_to;
    let mut delivery = Delivery {
        sender: String::new(),
        data: d.message.into(),
        local: Vec::new(),
        remote: Vec::new(),
        received_at: now,
    };
    if is_local(&hato_store::recipient_domain(&rcpt)) {
        let address = hato_wire::domain::normalize_address(&rcpt).unwrap_or(rcpt.clone());
        match store.resolve(&address).await? {
            Some(account) => delivery.local.push(account),
            None => return Ok(false),
        }
    } else {
        delivery.remote.push(rcpt);
    }
    store.deliver(delivery).await?;
    Ok(true)
}
