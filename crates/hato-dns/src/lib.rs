//! hato-dns: the one DNS layer of hato, for inbound checks (FCrDNS today; SPF, DKIM, DMARC
//! next), outbound routing (MX, RFC 5321 5.1; MTA-STS and TLS-RPT TXT records) and
//! diagnostics.
//!
//! * [`DnsConfig`] and [`TrustAnchor`]: `[dns]` in the configuration, and [`resolver_builder`],
//!   the one place a hickory resolver is configured (UDP with TCP fallback or TCP only, no
//!   search list). The DNSSEC-validating resolver for DANE (`hato_delivery::dane_lookup`) is
//!   built from the same builder with validation on; lookups that do not need DNSSEC go through
//!   the plain one, so a forwarder that strips signatures breaks DANE only, never mail routing.
//! * [`Resolver`]: the lookups everything else uses (MX, A/AAAA, TXT, PTR), as a trait so tests
//!   substitute answers ([`testing::Fixed`]); [`HickoryResolver`] is the real one, built once by
//!   the server and shared. [`addresses`] and [`confirmed_reverse_name`] (FCrDNS, RFC 8601
//!   2.7.3) are built on the trait.
//! * `testing` (feature `test-support`, for tests only): an in-process authoritative DNS server
//!   for a private DNSSEC-signed tree, and a resolver of fixed answers.
//!
//! Must never: decide mail policy (what an answer means for delivery belongs to the caller),
//! cache answers across TTLs itself (hickory does), or panic on any answer.

mod config;
mod lookup;
#[cfg(feature = "test-support")]
pub mod testing;

pub use config::{DnsConfig, TrustAnchor, TrustAnchorError, resolver_builder};
/// Re-exported for the DANE resolver and tests.
pub use hickory_resolver;
pub use lookup::{
    Answer, Family, HickoryResolver, Resolver, absolute, addresses, confirmed_reverse_name,
    normalize,
};
