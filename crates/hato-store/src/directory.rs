//! The [`Directory`] role: who has mail here.

use async_trait::async_trait;

use crate::{AccountId, Result};

/// The mailboxes every new account gets, as (name, RFC 6154 special-use), in creation order.
pub const DEFAULT_MAILBOXES: [(&str, Option<&str>); 6] = [
    ("INBOX", None),
    ("Sent", Some("\\Sent")),
    ("Drafts", Some("\\Drafts")),
    ("Trash", Some("\\Trash")),
    ("Junk", Some("\\Junk")),
    ("Archive", Some("\\Archive")),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    /// Normalised (lower-case) address, e.g. `alice@example.com`.
    pub address: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Unix seconds.
    pub created: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    pub address: String,
    /// The account address the alias delivers to.
    pub target: String,
}

/// Accounts and aliases: who has mail here, and which account an address delivers to.
///
/// Users: recipient checks and authentication (`resolve`, `account`), the delivery scheduler
/// (local DSN recipients), the CLI (`hato user`, `hato alias`). Addresses passed in are matched
/// case-insensitively (stored lower-case).
///
/// An account owns its mailboxes: creating one creates its default mailboxes
/// ([`DEFAULT_MAILBOXES`]) and deleting one deletes them with their messages, in the same
/// transaction (announced to [`Mailstore::subscribe_changes`] receivers). So the roles of one
/// backend share one database.
///
/// [`Mailstore::subscribe_changes`]: crate::Mailstore::subscribe_changes
#[async_trait]
pub trait Directory: Send + Sync {
    /// Creates an account and its default mailboxes: INBOX, Sent (\Sent), Drafts (\Drafts),
    /// Trash (\Trash), Junk (\Junk), Archive (\Archive), all subscribed. Conflict if the address is
    /// taken by an account or alias.
    async fn create_account(&self, address: &str, password_hash: &str) -> Result<Account>;
    /// Deletes an account, its mailboxes, entries, aliases pointing at it; frees unreferenced blobs.
    /// Returns false if there was no such account.
    async fn delete_account(&self, address: &str) -> Result<bool>;
    async fn set_password(&self, address: &str, password_hash: &str) -> Result<bool>;
    async fn account(&self, address: &str) -> Result<Option<Account>>;
    async fn account_by_id(&self, id: AccountId) -> Result<Option<Account>>;
    async fn list_accounts(&self) -> Result<Vec<Account>>;

    /// Adds an alias to an existing account (NotFound if the target is no account, Conflict if the
    /// alias address is already an account or alias).
    async fn add_alias(&self, alias: &str, target: &str) -> Result<()>;
    async fn remove_alias(&self, alias: &str) -> Result<bool>;
    async fn list_aliases(&self) -> Result<Vec<Alias>>;
    /// The account an address delivers to: the account itself or the alias target.
    async fn resolve(&self, address: &str) -> Result<Option<AccountId>>;
}
