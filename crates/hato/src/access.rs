//! What the SMTP session asks beyond login: which sender an authenticated user may use, which
//! clients may relay without AUTH (`relay_networks`), and where each recipient goes (local
//! mailbox, outbound queue, or refused: hato is never an open relay), with quota and
//! postmaster (RFC 5321 4.5.1).

use std::net::IpAddr;
use std::sync::Arc;

use hato_smtp::{Address, Reply};
use hato_store::{AccountId, Store};
use tracing::info;

pub use hato_wire::domain::{normalize as normalize_domain, normalize_address};

/// Where an accepted recipient goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Local(AccountId),
    Remote,
}

/// The sender and recipient rules of this server; built once.
pub struct Access {
    store: Arc<dyn Store>,
    local_domains: Vec<String>,
    hostname: String,
    /// Client networks that may relay on `smtp` listeners without AUTH.
    relay_networks: Vec<crate::config::IpNet>,
    /// `[limits] quota_bytes`: accounts at or over it get no more mail (RCPT 452 4.2.2).
    quota_bytes: Option<u64>,
}

impl Access {
    pub fn new(
        store: Arc<dyn Store>,
        local_domains: Vec<String>,
        hostname: &str,
        relay_networks: Vec<crate::config::IpNet>,
    ) -> Access {
        Access {
            store,
            local_domains,
            hostname: hostname.to_ascii_lowercase(),
            relay_networks,
            quota_bytes: None,
        }
    }

    /// The per-account storage limit that incoming mail respects.
    pub fn with_quota(mut self, quota_bytes: Option<u64>) -> Access {
        self.quota_bytes = quota_bytes;
        self
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn is_local_domain(&self, domain: &str) -> bool {
        normalize_domain(domain).is_some_and(|d| self.local_domains.contains(&d))
    }

    /// The client address is in `relay_networks`: it may relay on `smtp` listeners without AUTH.
    pub fn relay_network(&self, ip: IpAddr) -> Option<crate::config::IpNet> {
        self.relay_networks.iter().find(|n| n.contains(ip)).copied()
    }

    /// Submission: the authenticated account may use its own address and its aliases only.
    pub async fn check_sender(
        &self,
        account: Option<AccountId>,
        sender: Option<&Address>,
    ) -> Result<(), Reply> {
        let Some(account) = account else {
            return Err(Reply::new(530, (5, 7, 0), "Authentication required"));
        };
        let Some(sender) = sender else {
            return Err(Reply::new(
                553,
                (5, 7, 1),
                "The null sender is not allowed on submission",
            ));
        };
        let owned = match normalize_address(&format!("{}@{}", sender.local_part(), sender.domain()))
        {
            Some(a) => self.store.resolve(&a).await.map_err(temp_failure)?,
            None => None,
        };
        if owned == Some(account) {
            Ok(())
        } else {
            Err(Reply::new(
                553,
                (5, 7, 1),
                format!("Sender address <{sender}> is not owned by the authenticated user"),
            ))
        }
    }

    /// RFC 5321 4.5.1: postmaster must always be deliverable. Without an explicit
    /// `postmaster@<domain>` account or alias, it goes to postmaster@<first local domain>, else to
    /// the oldest account (normally the admin who set hato up).
    async fn postmaster(&self) -> Result<Option<AccountId>, Reply> {
        let first = format!("postmaster@{}", self.local_domains[0]);
        if let Some(id) = self.store.resolve(&first).await.map_err(temp_failure)? {
            return Ok(Some(id));
        }
        let accounts = self.store.list_accounts().await.map_err(temp_failure)?;
        Ok(accounts.iter().map(|a| a.id).min())
    }

    /// Where a recipient goes. `may_relay`: the client authenticated on submission, or connected
    /// to an `smtp` listener from one of the `relay_networks`.
    /// A full mailbox is a temporary condition (RFC 3463 4.2.2): the sender retries and the
    /// owner may make room meanwhile. The message that crosses the limit is still accepted
    /// (the limit is checked before the size is known); the next is refused.
    async fn check_quota(&self, account: AccountId, rcpt: &Address) -> Result<(), Reply> {
        let Some(limit) = self.quota_bytes else {
            return Ok(());
        };
        let usage = self
            .store
            .account_usage(account)
            .await
            .map_err(temp_failure)?;
        if usage.bytes >= limit {
            info!(rcpt = %rcpt, used = usage.bytes, limit, "recipient over quota");
            return Err(Reply::new(
                452,
                (4, 2, 2),
                format!("<{rcpt}>: Mailbox full, try again later"),
            ));
        }
        Ok(())
    }

    pub async fn check_recipient(&self, rcpt: &Address, may_relay: bool) -> Result<Target, Reply> {
        let postmaster = rcpt.local_part().eq_ignore_ascii_case("postmaster")
            && normalize_domain(rcpt.domain()).as_deref() == Some(self.hostname.as_str());
        let local =
            !rcpt.is_domain_literal() && (self.is_local_domain(rcpt.domain()) || postmaster);
        if local {
            let addr = normalize_address(&format!("{}@{}", rcpt.local_part(), rcpt.domain()));
            let found = match addr {
                Some(a) => self.store.resolve(&a).await.map_err(temp_failure)?,
                None => None,
            };
            let found = match found {
                None if rcpt.local_part().eq_ignore_ascii_case("postmaster") => {
                    self.postmaster().await?
                }
                other => other,
            };
            return match found {
                // RFC 5321 4.5.1: postmaster is always accepted, full or not.
                Some(id) if !rcpt.local_part().eq_ignore_ascii_case("postmaster") => {
                    self.check_quota(id, rcpt).await?;
                    Ok(Target::Local(id))
                }
                Some(id) => Ok(Target::Local(id)),
                None => Err(Reply::new(
                    550,
                    (5, 1, 1),
                    format!("<{rcpt}>: Recipient address rejected: User unknown"),
                )),
            };
        }
        if may_relay {
            return Ok(Target::Remote);
        }
        Err(Reply::new(
            554,
            (5, 7, 1),
            format!("<{rcpt}>: Relay access denied"),
        ))
    }
}

fn temp_failure(e: hato_store::StoreError) -> Reply {
    tracing::error!(error = %e, "store lookup failed");
    Reply::new(451, (4, 3, 0), "Temporary lookup failure, try again later")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_idn_and_case() {
        assert_eq!(
            normalize_address("Alice@EXAMPLE.com").as_deref(),
            Some("alice@example.com")
        );
        assert_eq!(
            normalize_address("bob@bücher.example").as_deref(),
            Some("bob@xn--bcher-kva.example")
        );
        assert_eq!(
            normalize_domain("BÜCHER.example").as_deref(),
            Some("xn--bcher-kva.example")
        );
    }
}
