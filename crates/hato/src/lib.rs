//! hato: the mail server as a library, under a thin binary (`main.rs` calls [`cli::main`]).
//!
//! # Layout
//!
//! Modules depend downwards only; no module imports one above it.
//!
//! | module | owns | uses |
//! |---|---|---|
//! | [`cli`] | the command line: `serve`, `check-config`, `user`, `alias`, `queue`, `dns` | everything below |
//! | [`app`] | the composition root: builds each service once, binds listeners, runs until a signal | the services, `net`, `delivery` |
//! | [`smtp`], [`pop3`], [`imap`], [`https`] | one protocol driver each: a [`net::Service`] over the sans-IO session of its crate | `net`, `auth`, `access`, `local_mail`, the store |
//! | `delivery` | the outbound scheduler: plan, connect, transact, bounce, TLS reports | `local_mail`, the store, hato-delivery |
//! | [`net`] | the connection skeleton: accept, limits, implicit TLS / STARTTLS, timeouts | hato-tls |
//! | [`auth`] | who may log in: argon2, throttling counted in the store, the verified cache | the store |
//! | [`access`] | who may send and receive: sender, relay networks, recipients, quota | the store |
//! | [`local_mail`] | mail hato writes itself (DSNs) entering the store | the store |
//! | [`metrics`] | the counters (names and labels in one place) and the process's recorder | — |
//! | [`shared_state`] | hato-delivery's shared-state traits (MTA-STS policy cache, TLS-RPT counts) over the store's `SharedState` role | the store, hato-delivery |
//! | [`config`], [`mta_sts_policy`], [`dns_records`] | the TOML configuration, the published MTA-STS policy, the DNS records to publish | — |
//!
//! Must never: hold protocol rules (they live in the sans-IO crates), or let a driver reach
//! into another driver or into `app`.

pub mod access;
pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod dns_records;
pub mod https;
pub mod imap;
pub mod local_mail;
pub mod metrics;
pub mod mta_sts_policy;
pub mod net;
mod outbound;
pub mod pop3;
pub mod shared_state;
pub mod smtp;
pub mod spool;
