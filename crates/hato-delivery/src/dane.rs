//! DANE for SMTP (RFC 7672, with RFC 6698 and RFC 7671): which TLSA records are usable, and
//! whether a server's certificate chain matches them. Pure functions over DER certificates.
//!
//! The DNSSEC-validated TLSA lookup of `_25._tcp.<mx host>` is [`crate::dane_lookup`]; the rustls
//! certificate verifier built on [`match_all`] (with the DANE-TA chain and name checks) is
//! [`crate::dane_verify`].

use ring::digest;

/// One TLSA record (RFC 6698 2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tlsa {
    /// 0 PKIX-TA, 1 PKIX-EE, 2 DANE-TA, 3 DANE-EE.
    pub usage: u8,
    /// 0 full certificate, 1 SubjectPublicKeyInfo.
    pub selector: u8,
    /// 0 exact, 1 SHA-256, 2 SHA-512.
    pub matching: u8,
    pub data: Vec<u8>,
}

pub const DANE_TA: u8 = 2;
pub const DANE_EE: u8 = 3;

impl Tlsa {
    /// The record whose certificate association data is `selected` (the certificate, or its
    /// SubjectPublicKeyInfo, as `selector` says) under `matching`: its SHA-256 (1) or SHA-512 (2)
    /// digest, or `selected` itself (0, or an unknown matching type).
    pub fn for_selected(usage: u8, selector: u8, matching: u8, selected: &[u8]) -> Tlsa {
        Tlsa {
            usage,
            selector,
            matching,
            data: association_data(matching, selected).unwrap_or_else(|| selected.to_vec()),
        }
    }

    /// Usable for SMTP per RFC 7672 3.1: DANE-TA(2) or DANE-EE(3) (PKIX usages are not),
    /// a known selector and matching type, and a digest of the right length.
    pub fn is_usable(&self) -> bool {
        matches!(self.usage, DANE_TA | DANE_EE)
            && matches!(self.selector, 0 | 1)
            && match self.matching {
                0 => !self.data.is_empty(),
                1 => self.data.len() == 32,
                2 => self.data.len() == 64,
                _ => false,
            }
    }

    /// The record's parameters with their RFC 7218 acronyms, e.g. `DANE-EE(3) SPKI(1) SHA2-256(1)`
    /// (for logs and the TLS facts of an attempt).
    pub fn describe(&self) -> String {
        let usage = match self.usage {
            0 => "PKIX-TA",
            1 => "PKIX-EE",
            DANE_TA => "DANE-TA",
            DANE_EE => "DANE-EE",
            _ => "usage",
        };
        let selector = match self.selector {
            0 => "Cert",
            1 => "SPKI",
            _ => "selector",
        };
        let matching = match self.matching {
            0 => "Full",
            1 => "SHA2-256",
            2 => "SHA2-512",
            _ => "matching",
        };
        format!(
            "{usage}({}) {selector}({}) {matching}({})",
            self.usage, self.selector, self.matching
        )
    }

    /// Whether this record matches one certificate (DER).
    fn matches(&self, cert_der: &[u8]) -> Result<bool, DaneError> {
        let selected: Vec<u8> = match self.selector {
            0 => cert_der.to_vec(),
            1 => spki(cert_der)?,
            _ => return Ok(false),
        };
        Ok(association_data(self.matching, &selected).is_some_and(|data| data == self.data))
    }
}

/// The certificate association data of `selected` under a matching type (RFC 6698 2.1.3):
/// 0 exact, 1 SHA-256, 2 SHA-512; None for another type.
fn association_data(matching: u8, selected: &[u8]) -> Option<Vec<u8>> {
    match matching {
        0 => Some(selected.to_vec()),
        1 => Some(digest::digest(&digest::SHA256, selected).as_ref().to_vec()),
        2 => Some(digest::digest(&digest::SHA512, selected).as_ref().to_vec()),
        _ => None,
    }
}

/// Whether any record of the set is usable (if none is, DANE does not apply: RFC 7672 2.2).
pub fn any_usable(records: &[Tlsa]) -> bool {
    records.iter().any(Tlsa::is_usable)
}

/// How a chain matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DaneMatch {
    /// A DANE-EE(3) record matched the leaf: authenticated, no name or expiry check
    /// (RFC 7672 3.1.1).
    EndEntity { record: usize },
    /// A DANE-TA(2) record matched `chain[chain_index]`: the driver must verify that the leaf
    /// chains to it and that the leaf's name matches (RFC 7672 3.1.2, 3.2).
    TrustAnchor { record: usize, chain_index: usize },
}

/// A certificate could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("certificate {0} of the chain is not valid DER X.509")]
pub struct DaneError(pub usize);

/// Matches a server's chain (DER, leaf first) against the usable records: DANE-EE first
/// (against the leaf), then DANE-TA (against every certificate of the chain). `Ok(None)`: no
/// record matched — with usable records present the delivery must be deferred.
pub fn match_chain(records: &[Tlsa], chain: &[&[u8]]) -> Result<Option<DaneMatch>, DaneError> {
    Ok(match_all(records, chain)?.into_iter().next())
}

/// Every match of the usable records against a chain (DER, leaf first), in the order
/// [`match_chain`] prefers them: DANE-EE matches of the leaf, then DANE-TA matches by record and
/// chain position. The verifier needs them all: a DANE-TA match whose chain does not validate
/// must not hide another record's match (e.g. during a key rollover, RFC 7671 8).
pub fn match_all(records: &[Tlsa], chain: &[&[u8]]) -> Result<Vec<DaneMatch>, DaneError> {
    let mut found = Vec::new();
    let Some(leaf) = chain.first() else {
        return Ok(found);
    };
    for (record, tlsa) in records.iter().enumerate() {
        if tlsa.is_usable()
            && tlsa.usage == DANE_EE
            && tlsa.matches(leaf).map_err(|_| DaneError(0))?
        {
            found.push(DaneMatch::EndEntity { record });
        }
    }
    for (record, tlsa) in records.iter().enumerate() {
        if !(tlsa.is_usable() && tlsa.usage == DANE_TA) {
            continue;
        }
        for (chain_index, cert) in chain.iter().enumerate() {
            if tlsa.matches(cert).map_err(|_| DaneError(chain_index))? {
                found.push(DaneMatch::TrustAnchor {
                    record,
                    chain_index,
                });
            }
        }
    }
    Ok(found)
}

/// The DER SubjectPublicKeyInfo of a certificate.
pub(crate) fn spki(cert_der: &[u8]) -> Result<Vec<u8>, DaneError> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).map_err(|_| DaneError(0))?;
    Ok(cert.tbs_certificate.subject_pki.raw.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, PublicKeyData,
    };

    struct Chain {
        leaf: Vec<u8>,
        ca: Vec<u8>,
        leaf_spki: Vec<u8>,
    }

    fn chain() -> Chain {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["mx.example.net".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &ca)
            .unwrap();
        Chain {
            leaf: leaf.der().to_vec(),
            ca: ca.der().to_vec(),
            leaf_spki: leaf_key.subject_public_key_info(),
        }
    }

    #[test]
    fn usable_records() {
        assert!(Tlsa::for_selected(3, 1, 1, b"x").is_usable());
        assert!(Tlsa::for_selected(2, 0, 2, b"x").is_usable());
        assert!(Tlsa::for_selected(3, 0, 0, b"x").is_usable());
        assert!(
            !Tlsa::for_selected(1, 1, 1, b"x").is_usable(),
            "PKIX-EE is unusable for SMTP"
        );
        assert!(
            !Tlsa::for_selected(0, 1, 1, b"x").is_usable(),
            "PKIX-TA is unusable for SMTP"
        );
        assert!(!Tlsa::for_selected(3, 2, 1, b"x").is_usable());
        assert!(!Tlsa::for_selected(3, 1, 3, b"x").is_usable());
        let mut short = Tlsa::for_selected(3, 1, 1, b"x");
        short.data.pop();
        assert!(!short.is_usable(), "a truncated digest");
        assert!(!any_usable(&[Tlsa::for_selected(1, 1, 1, b"x")]));
        assert!(any_usable(&[
            Tlsa::for_selected(1, 1, 1, b"x"),
            Tlsa::for_selected(3, 1, 1, b"x")
        ]));
    }

    #[test]
    fn dane_ee_matches_the_leaf_in_every_selector_and_matching_type() {
        let c = chain();
        let chain = [c.leaf.as_slice(), c.ca.as_slice()];
        for (selector, data) in [(0, &c.leaf), (1, &c.leaf_spki)] {
            for matching in [0, 1, 2] {
                let records = [Tlsa::for_selected(3, selector, matching, data)];
                assert_eq!(
                    match_chain(&records, &chain).unwrap(),
                    Some(DaneMatch::EndEntity { record: 0 }),
                    "3 {selector} {matching}"
                );
            }
        }
        // DANE-EE never matches the issuer.
        let records = [Tlsa::for_selected(3, 0, 1, &c.ca)];
        assert_eq!(match_chain(&records, &chain).unwrap(), None);
    }

    #[test]
    fn records_describe_themselves_with_rfc7218_acronyms() {
        for ((usage, selector, matching), described) in [
            ((3, 1, 1), "DANE-EE(3) SPKI(1) SHA2-256(1)"),
            ((2, 0, 2), "DANE-TA(2) Cert(0) SHA2-512(2)"),
            ((3, 0, 0), "DANE-EE(3) Cert(0) Full(0)"),
            ((1, 1, 1), "PKIX-EE(1) SPKI(1) SHA2-256(1)"),
            ((9, 7, 5), "usage(9) selector(7) matching(5)"),
        ] {
            let record = Tlsa::for_selected(usage, selector, matching, b"x");
            assert_eq!(record.describe(), described);
        }
    }

    #[test]
    fn all_matches_are_listed_in_preference_order() {
        let c = chain();
        let chain = [c.leaf.as_slice(), c.ca.as_slice()];
        let records = [
            Tlsa::for_selected(2, 0, 1, &c.ca),
            Tlsa::for_selected(3, 1, 1, &c.leaf_spki),
            Tlsa::for_selected(2, 0, 1, &c.leaf),
        ];
        assert_eq!(
            match_all(&records, &chain).unwrap(),
            vec![
                DaneMatch::EndEntity { record: 1 },
                DaneMatch::TrustAnchor {
                    record: 0,
                    chain_index: 1
                },
                DaneMatch::TrustAnchor {
                    record: 2,
                    chain_index: 0
                },
            ]
        );
        assert!(match_all(&records, &[]).unwrap().is_empty());
    }

    #[test]
    fn dane_ta_matches_the_issuer() {
        let c = chain();
        let chain = [c.leaf.as_slice(), c.ca.as_slice()];
        let records = [
            Tlsa::for_selected(3, 1, 1, b"other key"),
            Tlsa::for_selected(2, 0, 1, &c.ca),
        ];
        assert_eq!(
            match_chain(&records, &chain).unwrap(),
            Some(DaneMatch::TrustAnchor {
                record: 1,
                chain_index: 1
            })
        );
        // Unusable records are ignored even if they would match.
        let pkix = [
            Tlsa::for_selected(1, 0, 1, &c.leaf),
            Tlsa::for_selected(0, 0, 1, &c.ca),
        ];
        assert_eq!(match_chain(&pkix, &chain).unwrap(), None);
        assert_eq!(match_chain(&records, &[]).unwrap(), None);
        // Garbage in the chain is an error, not a match.
        let spki_ta = [Tlsa::for_selected(2, 1, 1, b"x")];
        assert_eq!(
            match_chain(&spki_ta, &[c.leaf.as_slice(), b"junk"]),
            Err(DaneError(1))
        );
    }
}
