//! [`Directory`] on SQLite: accounts and aliases.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::ids::{IdSpace, next_id, next_uidvalidity};
use super::mailboxes::subscribe_tx;
use super::{Context, SqliteStore, is_constraint, normalize, now};
use crate::{Account, AccountId, Alias, DEFAULT_MAILBOXES, Directory, Result, StoreError};

#[async_trait]
impl Directory for SqliteStore {
    async fn create_account(&self, address: &str, password_hash: &str) -> Result<Account> {
        let address = normalize(address);
        let hash = password_hash.to_owned();
        self.write(move |conn| create_account_tx(conn, &address, &hash))
            .await
    }

    async fn delete_account(&self, address: &str) -> Result<bool> {
        // Cascades to aliases, mailboxes and entries; triggers free orphaned blobs.
        self.write_changed(
            "DELETE FROM accounts WHERE address = ?1",
            [normalize(address)],
            "deleting account",
        )
        .await
    }

    async fn set_password(&self, address: &str, password_hash: &str) -> Result<bool> {
        self.write_changed(
            "UPDATE accounts SET password_hash = ?1 WHERE address = ?2",
            [password_hash.to_owned(), normalize(address)],
            "setting password",
        )
        .await
    }

    async fn account(&self, address: &str) -> Result<Option<Account>> {
        self.read_row(
            format!("{ACCOUNT_COLUMNS} WHERE address = ?1"),
            [normalize(address)],
            account_row,
            "reading account",
        )
        .await
    }

    async fn account_by_id(&self, id: AccountId) -> Result<Option<Account>> {
        self.read_row(
            format!("{ACCOUNT_COLUMNS} WHERE id = ?1"),
            [id],
            account_row,
            "reading account",
        )
        .await
    }

    async fn list_accounts(&self) -> Result<Vec<Account>> {
        self.read(|conn| {
            conn.prepare_cached(&format!("{ACCOUNT_COLUMNS} ORDER BY address"))
                .and_then(|mut s| s.query_map([], account_row)?.collect())
                .ctx("listing accounts")
        })
        .await
    }

    async fn add_alias(&self, alias: &str, target: &str) -> Result<()> {
        let alias = normalize(alias);
        let target = normalize(target);
        self.write(move |conn| add_alias_tx(conn, &alias, &target))
            .await
    }

    async fn remove_alias(&self, alias: &str) -> Result<bool> {
        self.write_changed(
            "DELETE FROM aliases WHERE address = ?1",
            [normalize(alias)],
            "removing alias",
        )
        .await
    }

    async fn list_aliases(&self) -> Result<Vec<Alias>> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT al.address, ac.address FROM aliases al
                 JOIN accounts ac ON ac.id = al.account_id ORDER BY al.address",
            )
            .and_then(|mut s| {
                s.query_map([], |r| {
                    Ok(Alias {
                        address: r.get(0)?,
                        target: r.get(1)?,
                    })
                })?
                .collect()
            })
            .ctx("listing aliases")
        })
        .await
    }

    async fn resolve(&self, address: &str) -> Result<Option<AccountId>> {
        let address = normalize(address);
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT id FROM accounts WHERE address = ?1
                 UNION ALL SELECT account_id FROM aliases WHERE address = ?1 LIMIT 1",
            )
            .and_then(|mut s| s.query_row([&address], |r| r.get(0)).optional())
            .ctx("resolving address")
        })
        .await
    }
}

fn create_account_tx(conn: &Connection, address: &str, hash: &str) -> Result<Account> {
    let alias_taken = conn
        .prepare_cached("SELECT 1 FROM aliases WHERE address = ?1")
        .and_then(|mut s| s.exists([address]))
        .ctx("checking aliases")?;
    if alias_taken {
        return Err(StoreError::Conflict(format!("alias {address}")));
    }
    let created = now();
    let id = next_id(conn, IdSpace::Account)?;
    let inserted = conn
        .prepare_cached(
            "INSERT INTO accounts (id, address, password_hash, created) VALUES (?1, ?2, ?3, ?4)",
        )
        .and_then(|mut s| s.execute(params![id, address, hash, created]));
    match inserted {
        Ok(_) => {}
        Err(e) if is_constraint(&e) => {
            return Err(StoreError::Conflict(format!("account {address}")));
        }
        Err(e) => return Err(StoreError::Backend(format!("inserting account: {e}"))),
    }
    let first_uidvalidity = next_uidvalidity(conn, created, DEFAULT_MAILBOXES.len() as u32)?;
    for (uidvalidity, (name, special_use)) in (first_uidvalidity..).zip(DEFAULT_MAILBOXES) {
        let mailbox = next_id(conn, IdSpace::Mailbox)?;
        conn.prepare_cached(
            "INSERT INTO mailboxes (id, account_id, name, special_use, uidvalidity, uidnext,
                                    highest_modseq, subscribed)
             VALUES (?1, ?2, ?3, ?4, ?5, 1, 1, 1)",
        )
        .and_then(|mut s| s.execute(params![mailbox, id, name, special_use, uidvalidity]))
        .ctx("creating default mailboxes")?;
        subscribe_tx(conn, id, name)?;
    }
    Ok(Account {
        id,
        address: address.to_owned(),
        password_hash: hash.to_owned(),
        created,
    })
}

fn add_alias_tx(conn: &Connection, alias: &str, target: &str) -> Result<()> {
    let account_taken = conn
        .prepare_cached("SELECT 1 FROM accounts WHERE address = ?1")
        .and_then(|mut s| s.exists([alias]))
        .ctx("checking accounts")?;
    if account_taken {
        return Err(StoreError::Conflict(format!("account {alias}")));
    }
    let target_id: Option<AccountId> = conn
        .prepare_cached("SELECT id FROM accounts WHERE address = ?1")
        .and_then(|mut s| s.query_row([target], |r| r.get(0)).optional())
        .ctx("looking up the alias target")?;
    let Some(target_id) = target_id else {
        return Err(StoreError::NotFound(format!("account {target}")));
    };
    let inserted = conn
        .prepare_cached("INSERT INTO aliases (address, account_id) VALUES (?1, ?2)")
        .and_then(|mut s| s.execute(params![alias, target_id]));
    match inserted {
        Ok(_) => Ok(()),
        Err(e) if is_constraint(&e) => Err(StoreError::Conflict(format!("alias {alias}"))),
        Err(e) => Err(StoreError::Backend(format!("inserting alias: {e}"))),
    }
}

const ACCOUNT_COLUMNS: &str = "SELECT id, address, password_hash, created FROM accounts";

fn account_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        id: row.get(0)?,
        address: row.get(1)?,
        password_hash: row.get(2)?,
        created: row.get(3)?,
    })
}
