//! hato-delivery: the building blocks of outbound delivery, kept free of sockets where possible.
//!
//! * [`backoff`]: the retry schedule (RFC 5321 4.5.4.1) and queue lifetime.
//! * [`dane`]: DANE for SMTP (RFC 7672, RFC 6698, RFC 7671): usable TLSA records, chain matching.
//! * [`dane_lookup`]: the DNSSEC-validated TLSA lookup (hickory-resolver with validation) and
//!   the RFC 7672 2.2 outcomes: secure/insecure/bogus/indeterminate, MX host address security,
//!   CNAME-expanded TLSA base domains.
//! * [`dane_verify`]: the rustls certificate verifier for DANE-EE(3) and DANE-TA(2).
//! * [`dsn`]: delivery status notifications (RFC 3464, RFC 3461, RFC 6522, RFC 6533, RFC 3834).
//! * [`mta_sts`]: MTA-STS (RFC 8461) TXT record and policy parsing, MX matching, verdicts.
//! * [`mta_sts_fetch`]: MTA-STS discovery, the HTTPS policy fetch (hyper, rustls with ring)
//!   and the policy cache (RFC 8461 3.3, 5, 5.1), with RFC 8460 result types.
//! * [`route`]: MX resolution (RFC 5321 5.1, RFC 7505 null MX) with hickory-resolver, and loop
//!   detection.
//! * [`tls_policy`]: outgoing TLS security levels (Postfix-like `none`/`may`/`encrypt`/`verify`/
//!   `dane`, RFC 7672 for DANE, RFC 8689 REQUIRETLS) mapped to the SMTP client's requirement.
//! * [`tlsrpt`]: SMTP TLS Reporting (RFC 8460): the `_smtp._tls` TXT record, a recorder that
//!   counts TLS sessions per UTC day, domain and policy in a shared ledger, the JSON report and
//!   the report message (`multipart/report; report-type="tlsrpt"`).
//! * [`state`]: what must outlive the process and be shared by every node of one database,
//!   as traits the `hato` crate implements over its store (this crate does not depend on
//!   hato-store): the MTA-STS [`state::PolicyCache`] and the TLS-RPT [`state::ReportLedger`];
//!   in-memory implementations for tests.
//! * `testing` (feature `test-support`, for tests only): an in-process authoritative DNS server
//!   for a private DNSSEC-signed tree, to test DANE lookups and deliveries.
//!
//! The scheduler that claims queue entries (`hato_store::Store::due_queue`), drives
//! `hato_smtp::client` over TCP/TLS and records the outcome lives in the `hato` binary.

pub mod backoff;
pub mod dane;
pub mod dane_lookup;
pub mod dane_verify;
pub mod dsn;
pub mod mta_sts;
pub mod mta_sts_fetch;
pub mod route;
pub mod state;
#[cfg(feature = "test-support")]
pub mod testing;
pub mod tls_policy;
pub mod tlsrpt;
