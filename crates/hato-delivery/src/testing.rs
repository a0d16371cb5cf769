//! Test support (feature `test-support`, off by default): hato-dns's in-process DNS server for
//! a private DNSSEC tree and its fixed-answer resolver (re-exported), and TLSA records built
//! from [`Tlsa`] values and certificates.

use hato_dns::hickory_resolver::proto::rr::RData;
use hato_dns::hickory_resolver::proto::rr::Record;
use hato_dns::hickory_resolver::proto::rr::rdata::TLSA;
use hato_dns::hickory_resolver::proto::rr::rdata::tlsa::{CertUsage, Matching, Selector};
pub use hato_dns::testing::*;

use crate::dane::Tlsa;

/// A TLSA record at `owner` (e.g. `_25._tcp.mx.example.test`).
pub fn tlsa(owner: &str, t: &Tlsa) -> Record {
    record(
        owner,
        RData::TLSA(TLSA::new(
            CertUsage::from(t.usage),
            Selector::from(t.selector),
            Matching::from(t.matching),
            t.data.clone(),
        )),
    )
}

/// The TLSA record (`usage selector matching`) for a certificate (DER): selector 0 the whole
/// certificate, 1 its SubjectPublicKeyInfo; matching 0 exact, 1 SHA-256, 2 SHA-512.
pub fn tlsa_for(usage: u8, selector: u8, matching: u8, cert_der: &[u8]) -> Tlsa {
    assert!(
        matches!(matching, 0..=2),
        "matching type {matching} not supported"
    );
    let selected = match selector {
        0 => cert_der.to_vec(),
        1 => crate::dane::spki(cert_der).expect("a DER X.509 certificate"),
        other => panic!("selector {other} not supported"),
    };
    Tlsa::for_selected(usage, selector, matching, &selected)
}
