//! TLS client certificates → the `certificate` records of the contract.
//!
//! Accepts PEM (one or more `CERTIFICATE` blocks, leaf first) or a single DER
//! certificate, parses each with `x509-parser`, and computes the thumbprints a
//! policy compares against. Any malformed input is a [`CertError`], never a
//! panic; brokers turn that into a deny.

use std::net::IpAddr;

use sha1::Digest as _;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;
use x509_parser::prelude::FromDer as _;

use crate::request::Certificate;
use crate::error::CertError;

/// Largest certificate input accepted (a chain of several RSA-4096 certs fits).
pub const MAX_INPUT_BYTES: usize = 256 * 1024;
/// Longest chain accepted.
pub const MAX_CHAIN_LEN: usize = 16;

/// Parse a PEM bundle or one DER certificate into a chain, leaf first.
pub fn parse_chain(input: &[u8]) -> Result<Vec<Certificate>, CertError> {
    if input.len() > MAX_INPUT_BYTES {
        return Err(CertError::TooLarge(input.len(), MAX_INPUT_BYTES));
    }
    if looks_like_pem(input) {
        let mut chain = Vec::new();
        for (index, block) in Pem::iter_from_buffer(input).enumerate() {
            let pem = block.map_err(|e| CertError::Pem(e.to_string()))?;
            if pem.label != "CERTIFICATE" {
                return Err(CertError::NotACertificate {
                    index,
                    label: pem.label,
                });
            }
            if chain.len() == MAX_CHAIN_LEN {
                return Err(CertError::TooMany(MAX_CHAIN_LEN + 1, MAX_CHAIN_LEN));
            }
            chain.push(parse_der_at(&pem.contents, index)?);
        }
        if chain.is_empty() {
            return Err(CertError::Empty);
        }
        Ok(chain)
    } else if input.is_empty() {
        Err(CertError::Empty)
    } else {
        Ok(vec![parse_der(input)?])
    }
}

/// Parse DER certificates (as a TLS stack hands them over), leaf first.
pub fn parse_der_chain<'a>(
    ders: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<Certificate>, CertError> {
    let mut chain = Vec::new();
    for (index, der) in ders.into_iter().enumerate() {
        if index == MAX_CHAIN_LEN {
            return Err(CertError::TooMany(index + 1, MAX_CHAIN_LEN));
        }
        chain.push(parse_der_at(der, index)?);
    }
    Ok(chain)
}

/// Parse one DER certificate.
pub fn parse_der(der: &[u8]) -> Result<Certificate, CertError> {
    parse_der_at(der, 0)
}

fn looks_like_pem(input: &[u8]) -> bool {
    let start = input
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(input.len());
    input[start..].starts_with(b"-----BEGIN")
}

fn parse_der_at(der: &[u8], index: usize) -> Result<Certificate, CertError> {
    if der.len() > MAX_INPUT_BYTES {
        return Err(CertError::TooLarge(der.len(), MAX_INPUT_BYTES));
    }
    let malformed = |message: String| CertError::Der { index, message };
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(malformed(format!("{} trailing bytes", rest.len())));
    }
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned);
    let sans = match cert.subject_alternative_name() {
        Ok(Some(ext)) => ext.value.general_names.iter().filter_map(san).collect(),
        Ok(None) => Vec::new(),
        Err(e) => return Err(malformed(format!("subject alternative name: {e}"))),
    };
    Ok(Certificate {
        sha1: hex::encode_upper(sha1::Sha1::digest(der)),
        sha256: hex::encode_upper(sha2::Sha256::digest(der)),
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        common_name,
        sans,
        serial: hex::encode_upper(cert.raw_serial()),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        der: der.to_vec(),
    })
}

fn san(name: &GeneralName<'_>) -> Option<String> {
    match name {
        GeneralName::DNSName(s) => Some(format!("DNS:{s}")),
        GeneralName::URI(s) => Some(format!("URI:{s}")),
        GeneralName::RFC822Name(s) => Some(format!("email:{s}")),
        GeneralName::IPAddress(bytes) => ip(bytes).map(|a| format!("IP:{a}")),
        _ => None,
    }
}

fn ip(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert_eq!(parse_chain(b""), Err(CertError::Empty));
        assert!(matches!(
            parse_chain(b"\x30\x82\x01"),
            Err(CertError::Der { .. })
        ));
        assert!(matches!(
            parse_chain(b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n"),
            Err(CertError::Pem(_) | CertError::Der { .. })
        ));
        assert!(matches!(
            parse_chain(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
            Err(CertError::NotACertificate { .. })
        ));
        let huge = vec![b'A'; MAX_INPUT_BYTES + 1];
        assert!(matches!(parse_chain(&huge), Err(CertError::TooLarge(..))));
    }
}
