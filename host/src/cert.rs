//! TLS client certificates → the `certificate` records of the contract.
//!
//! Accepts PEM (one or more `CERTIFICATE` blocks, leaf first; text around the
//! blocks, such as the output of `openssl x509 -text`, is ignored) or a single
//! DER certificate, parses each with `x509-parser`, and computes the
//! thumbprints a policy compares against. Any malformed input is a
//! [`CertError`], never a panic; brokers turn that into a deny.
//!
//! The text fields are what OpenSSL 3.0 prints for the same certificate, so a
//! value copied from `openssl x509` output matches. Hex is always uppercase
//! without separators.
//!
//! - `subject`, `issuer`: RFC 4514 strings, equal to the output of
//!   `openssl x509 -noout -subject -nameopt RFC2253,-esc_msb` (and `-issuer`)
//!   after the `subject=`/`issuer=` prefix. (`-esc_msb` is the normalisation:
//!   plain `RFC2253` writes each byte of non-ASCII UTF-8 as `\XX`; this keeps
//!   the UTF-8.) RDNs come in reverse DER order joined by `,` without spaces;
//!   the members of a multi-valued RDN are joined by `+`, also in reverse DER
//!   order, as openssl prints them. Attribute types are openssl's short names:
//!   `CN`, `SN`, `serialNumber`, `C`, `L`, `ST`, `street`, `O`, `OU`, `title`,
//!   `GN`, `initials`, `pseudonym`, `DC`, `UID`, `emailAddress`,
//!   `organizationIdentifier`, `jurisdictionC`, … (every type openssl 3.0
//!   names under 2.5.4, 0.9.2342.19200300.100.1, 1.2.840.113549.1.9,
//!   1.3.6.1.4.1.311.60.2.1, 1.2.643.100 and 1.2.643.3.131.1). Any other type
//!   is its dotted OID and the value is `#` with the hex of the value's DER
//!   encoding, whatever its type (`1.2.3.4=#0C026869`), as RFC 4514 §2.4 and
//!   openssl both write a type they have no name for.
//!
//!   Values are decoded to Unicode: UTF8String as UTF-8; PrintableString,
//!   IA5String, VisibleString, NumericString and T61String one byte per
//!   character as Latin-1 (as openssl does, so a T61String `caf\xE9` is
//!   `café`); BMPString as UTF-16BE; UniversalString as UTF-32BE. Then they are
//!   escaped per RFC 4514 §2.4: `,` `+` `"` `\` `<` `>` `;` anywhere, `#` or
//!   space in first place and space in last place get a backslash before them;
//!   control characters (U+0000–U+001F and U+007F) become `\XX` (NUL is
//!   `\00`); everything else is written as is. A value of another type
//!   (SEQUENCE, BIT STRING, INTEGER, ...) or one that does not decode (invalid
//!   UTF-8, a lone UTF-16 surrogate, a code point past U+10FFFF) is written as
//!   `#` and the hex of its DER encoding. So a CN `dev, O=Acme` prints as
//!   `CN=dev\, O=Acme` and cannot pass for a CN `dev` with an O `Acme`.
//! - `common-name`: the decoded, unescaped value of the subject's most
//!   specific CN: the last CN in DER order, i.e. the first one in the RFC 4514
//!   string (a multi-valued RDN counts in DER order too). `None` when there is
//!   no CN or that CN is not a string that decodes; there is no fallback to
//!   another CN.
//! - `sans`: the subject alternative names in certificate order: `DNS:<name>`,
//!   `email:<address>`, `URI:<uri>` (as encoded); `IP:<address>`, IPv4 dotted
//!   and IPv6 in RFC 5952 form as Rust's `Ipv6Addr` `Display` writes it
//!   (`2001:db8::1`, `::ffff:1.2.3.4`; openssl prints `2001:DB8:0:0:0:0:0:1`),
//!   and `IP:#<hex>` for an address that is neither 4 nor 16 bytes;
//!   `dirName:<RFC 4514 string, as for subject>`; `RID:<dotted OID>`;
//!   `otherName:<dotted type-id OID>;<hex of the DER encoding of the value
//!   inside [0]>`; `x400Address:<hex>` and `ediPartyName:<hex>`, the DER of
//!   the whole GeneralName element as it is in the certificate (context tag
//!   included); and `invalid:<context tag number>;<hex of the content
//!   octets>` for a name `x509-parser` cannot read, such as a DNS, email or
//!   URI name that is not UTF-8.
//! - `serial`: the integer in hex, two digits per byte, without the `00` byte
//!   DER puts before a high bit, exactly as `openssl x509 -serial` prints it
//!   (`80`, `01`, `00` for zero). A negative serial (against RFC 5280, but
//!   issued in the wild) is `-` and its magnitude in the same form, which is
//!   also what openssl prints (`-05` for -5, `-80` for -128, `-0100` for
//!   -256). openssl breaks serials of more than 35 bytes over lines ending in
//!   `\`; this string never does.
//!
//! Where this differs from openssl 3.0 on purpose: a value that is exactly `#`
//! is `\#` as RFC 4514 requires (openssl leaves it bare); an OID openssl
//! names outside the arcs above (a signature algorithm used as an attribute
//! type, say) is written in dotted form; certificates openssl refuses to load
//! (a VisibleString or a BMPString surrogate pair in a name, values of types
//! other than strings, SEQUENCE and BIT STRING, non-minimal serial encodings)
//! still get the forms above. Certificates with a malformed OID or an OID arc
//! past 128 bits in a name or SAN, an empty serial, or an otherName that is
//! not `type-id [0] value` are refused as malformed.

use std::fmt::Write as _;
use std::net::IpAddr;

use sha1::Digest as _;
use x509_parser::asn1_rs::{Any, Class};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;
use x509_parser::prelude::FromDer as _;
use x509_parser::x509::X509Name;

use crate::error::CertError;

/// One TLS client certificate with the fields the host parsed from it
/// (the module docs give the exact form of each field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// The certificate's DER encoding.
    pub der: Vec<u8>,
    /// SHA-1 of the DER, uppercase hex.
    pub sha1: String,
    /// SHA-256 of the DER, uppercase hex.
    pub sha256: String,
    pub subject: String,
    pub issuer: String,
    pub common_name: Option<String>,
    pub sans: Vec<String>,
    pub serial: String,
    pub not_before: i64,
    pub not_after: i64,
}

/// Largest certificate input accepted (a chain of several RSA-4096 certs fits).
pub const MAX_INPUT_BYTES: usize = 256 * 1024;
/// Longest chain accepted.
pub const MAX_CHAIN_LEN: usize = 16;

/// Parse a PEM bundle or one DER certificate into a chain, leaf first.
pub fn parse_chain(input: &[u8]) -> Result<Vec<Certificate>, CertError> {
    if input.len() > MAX_INPUT_BYTES {
        return Err(CertError::TooLarge(input.len(), MAX_INPUT_BYTES));
    }
    if input.is_empty() {
        return Err(CertError::Empty);
    }
    if starts_like_der(input) || !has_pem_header(input) {
        return Ok(vec![parse_der(input)?]);
    }
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

/// A SEQUENCE with a long-form length: every real certificate starts so, and
/// text cannot ('0' followed by a byte in 0x81..=0x84 is not ASCII or UTF-8),
/// so a DER certificate is never mistaken for PEM, whatever it contains.
fn starts_like_der(input: &[u8]) -> bool {
    matches!(input, [0x30, 0x81..=0x84, ..])
}

fn has_pem_header(input: &[u8]) -> bool {
    input.windows(11).any(|w| w == b"-----BEGIN ")
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
    let subject = rfc4514(cert.subject()).map_err(|e| malformed(format!("subject: {e}")))?;
    let issuer = rfc4514(cert.issuer()).map_err(|e| malformed(format!("issuer: {e}")))?;
    let common_name = cert
        .subject()
        .iter_common_name()
        .last()
        .and_then(|cn| decode_string(cn.attr_value()));
    let sans = match cert.subject_alternative_name() {
        Ok(Some(ext)) => ext
            .value
            .general_names
            .iter()
            .map(san)
            .collect::<Result<_, _>>()
            .map_err(|e| malformed(format!("subject alternative name: {e}")))?,
        Ok(None) => Vec::new(),
        Err(e) => return Err(malformed(format!("subject alternative name: {e}"))),
    };
    let serial =
        serial_hex(cert.raw_serial()).ok_or_else(|| malformed("empty serial number".to_owned()))?;
    Ok(Certificate {
        sha1: hex::encode_upper(sha1::Sha1::digest(der)),
        sha256: hex::encode_upper(sha2::Sha256::digest(der)),
        subject,
        issuer,
        common_name,
        sans,
        serial,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        der: der.to_vec(),
    })
}

/// The RFC 4514 string of a name, as openssl's `-nameopt RFC2253,-esc_msb`
/// writes it: every attribute in reverse DER order, `+` within an RDN.
fn rfc4514(name: &X509Name<'_>) -> Result<String, String> {
    let mut out = String::new();
    let rdns: Vec<_> = name.iter_rdn().collect();
    for (i, rdn) in rdns.into_iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let members: Vec<_> = rdn.iter().collect();
        for (j, atv) in members.into_iter().rev().enumerate() {
            if j > 0 {
                out.push('+');
            }
            let oid = oid_text(atv.attr_type().as_bytes())
                .ok_or_else(|| format!("malformed attribute type {}", atv.attr_type()))?;
            let value = atv.attr_value();
            match attribute_name(&oid) {
                Some(short) => {
                    out.push_str(short);
                    out.push('=');
                    match decode_string(value) {
                        Some(s) => push_escaped(&mut out, &s),
                        None => push_der_hex(&mut out, value),
                    }
                }
                // RFC 4514 §2.4: a type without a short name takes the
                // numeric OID and the BER form of the value (openssl too).
                None => {
                    out.push_str(&oid);
                    out.push('=');
                    push_der_hex(&mut out, value);
                }
            }
        }
    }
    Ok(out)
}

/// A string-typed attribute value as Unicode, or `None` when it is another
/// type or does not decode.
fn decode_string(value: &Any<'_>) -> Option<String> {
    if value.class() != Class::Universal || value.header.is_constructed() {
        return None;
    }
    let data = value.data;
    match value.tag().0 {
        // UTF8String
        12 => std::str::from_utf8(data).ok().map(str::to_owned),
        // Numeric, Printable, T61 (Teletex), IA5, Visible: one byte per
        // character, read as Latin-1 as openssl does; for the ASCII-only types
        // that only matters to certificates that break their charset.
        18 | 19 | 20 | 22 | 26 => Some(data.iter().copied().map(char::from).collect()),
        // BMPString: UTF-16BE.
        30 => {
            if !data.len().is_multiple_of(2) {
                return None;
            }
            let units = data
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]));
            char::decode_utf16(units).collect::<Result<_, _>>().ok()
        }
        // UniversalString: UTF-32BE.
        28 => {
            if !data.len().is_multiple_of(4) {
                return None;
            }
            data.chunks_exact(4)
                .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect()
        }
        _ => None,
    }
}

/// Append `value` escaped per RFC 4514 §2.4, with control characters as `\XX`
/// (as openssl's `RFC2253` option does).
fn push_escaped(out: &mut String, value: &str) {
    let mut chars = value.chars().peekable();
    let mut first = true;
    while let Some(c) = chars.next() {
        let last = chars.peek().is_none();
        match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' => {
                out.push('\\');
                out.push(c);
            }
            '#' | ' ' if first => {
                out.push('\\');
                out.push(c);
            }
            ' ' if last => out.push_str("\\ "),
            '\0'..='\x1f' | '\x7f' => {
                let _ = write!(out, "\\{:02X}", u32::from(c));
            }
            _ => out.push(c),
        }
        first = false;
    }
}

/// Append `#` and the uppercase hex of the value's DER encoding.
fn push_der_hex(out: &mut String, value: &Any<'_>) {
    out.push('#');
    out.push_str(&hex::encode_upper(der_encoding(value)));
}

/// The DER encoding of a parsed element. x509-parser keeps only the content
/// octets, so the identifier and a minimal definite length are rebuilt (as
/// openssl re-encodes too): the certificate's own bytes when it is DER.
fn der_encoding(value: &Any<'_>) -> Vec<u8> {
    let mut der = Vec::with_capacity(value.data.len() + 12);
    let class = (value.class() as u8) << 6;
    let constructed = if value.header.is_constructed() {
        0x20
    } else {
        0
    };
    let tag = value.tag().0;
    match u8::try_from(tag) {
        Ok(small) if small < 0x1f => der.push(class | constructed | small),
        _ => {
            der.push(class | constructed | 0x1f);
            push_base128(&mut der, u128::from(tag));
        }
    }
    let len = value.data.len();
    match u8::try_from(len) {
        Ok(short) if short < 0x80 => der.push(short),
        _ => {
            let bytes = len.to_be_bytes();
            let skip = bytes.iter().take_while(|&&b| b == 0).count();
            let significant = bytes.get(skip..).unwrap_or(&bytes);
            // At most size_of::<usize>() bytes, so this fits the 7 bits.
            der.push(0x80 | significant.len() as u8);
            der.extend_from_slice(significant);
        }
    }
    der.extend_from_slice(value.data);
    der
}

fn push_base128(out: &mut Vec<u8>, mut n: u128) {
    let mut groups = vec![(n & 0x7f) as u8];
    n >>= 7;
    while n > 0 {
        groups.push(0x80 | (n & 0x7f) as u8);
        n >>= 7;
    }
    out.extend(groups.iter().rev());
}

/// The dotted form of an OID's content octets; `None` if malformed (empty,
/// cut off, non-minimal) or if an arc does not fit 128 bits.
fn oid_text(content: &[u8]) -> Option<String> {
    if content.last().is_none_or(|b| b & 0x80 != 0) {
        return None;
    }
    let mut out = String::new();
    let mut arc: u128 = 0;
    let mut at_start = true;
    for &b in content {
        if at_start && b == 0x80 {
            return None;
        }
        arc = arc.checked_mul(128)? | u128::from(b & 0x7f);
        at_start = b & 0x80 == 0;
        if at_start {
            if out.is_empty() {
                // The first subidentifier packs the first two arcs (X.690 8.19.4).
                let (top, second) = match arc {
                    0..40 => (0, arc),
                    40..80 => (1, arc - 40),
                    _ => (2, arc - 80),
                };
                let _ = write!(out, "{top}.{second}");
            } else {
                let _ = write!(out, ".{arc}");
            }
            arc = 0;
        }
    }
    Some(out)
}

/// The short name openssl 3.0 prints for a directory attribute type.
fn attribute_name(oid: &str) -> Option<&'static str> {
    ATTRIBUTE_NAMES
        .iter()
        .find(|(dotted, _)| *dotted == oid)
        .map(|(_, name)| *name)
}

/// Every attribute type openssl 3.0 names in the arcs names use (found by
/// printing a certificate that has each OID with `-nameopt RFC2253`).
const ATTRIBUTE_NAMES: &[(&str, &str)] = &[
    ("2.5.4.3", "CN"),
    ("2.5.4.4", "SN"),
    ("2.5.4.5", "serialNumber"),
    ("2.5.4.6", "C"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.9", "street"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.12", "title"),
    ("2.5.4.13", "description"),
    ("2.5.4.14", "searchGuide"),
    ("2.5.4.15", "businessCategory"),
    ("2.5.4.16", "postalAddress"),
    ("2.5.4.17", "postalCode"),
    ("2.5.4.18", "postOfficeBox"),
    ("2.5.4.19", "physicalDeliveryOfficeName"),
    ("2.5.4.20", "telephoneNumber"),
    ("2.5.4.21", "telexNumber"),
    ("2.5.4.22", "teletexTerminalIdentifier"),
    ("2.5.4.23", "facsimileTelephoneNumber"),
    ("2.5.4.24", "x121Address"),
    ("2.5.4.25", "internationaliSDNNumber"),
    ("2.5.4.26", "registeredAddress"),
    ("2.5.4.27", "destinationIndicator"),
    ("2.5.4.28", "preferredDeliveryMethod"),
    ("2.5.4.29", "presentationAddress"),
    ("2.5.4.30", "supportedApplicationContext"),
    ("2.5.4.31", "member"),
    ("2.5.4.32", "owner"),
    ("2.5.4.33", "roleOccupant"),
    ("2.5.4.34", "seeAlso"),
    ("2.5.4.35", "userPassword"),
    ("2.5.4.36", "userCertificate"),
    ("2.5.4.37", "cACertificate"),
    ("2.5.4.38", "authorityRevocationList"),
    ("2.5.4.39", "certificateRevocationList"),
    ("2.5.4.40", "crossCertificatePair"),
    ("2.5.4.41", "name"),
    ("2.5.4.42", "GN"),
    ("2.5.4.43", "initials"),
    ("2.5.4.44", "generationQualifier"),
    ("2.5.4.45", "x500UniqueIdentifier"),
    ("2.5.4.46", "dnQualifier"),
    ("2.5.4.47", "enhancedSearchGuide"),
    ("2.5.4.48", "protocolInformation"),
    ("2.5.4.49", "distinguishedName"),
    ("2.5.4.50", "uniqueMember"),
    ("2.5.4.51", "houseIdentifier"),
    ("2.5.4.52", "supportedAlgorithms"),
    ("2.5.4.53", "deltaRevocationList"),
    ("2.5.4.54", "dmdName"),
    ("2.5.4.65", "pseudonym"),
    ("2.5.4.72", "role"),
    ("2.5.4.97", "organizationIdentifier"),
    ("2.5.4.98", "c3"),
    ("2.5.4.99", "n3"),
    ("2.5.4.100", "dnsName"),
    ("0.9.2342.19200300.100.1.1", "UID"),
    ("0.9.2342.19200300.100.1.2", "textEncodedORAddress"),
    ("0.9.2342.19200300.100.1.3", "mail"),
    ("0.9.2342.19200300.100.1.4", "info"),
    ("0.9.2342.19200300.100.1.5", "favouriteDrink"),
    ("0.9.2342.19200300.100.1.6", "roomNumber"),
    ("0.9.2342.19200300.100.1.7", "photo"),
    ("0.9.2342.19200300.100.1.8", "userClass"),
    ("0.9.2342.19200300.100.1.9", "host"),
    ("0.9.2342.19200300.100.1.10", "manager"),
    ("0.9.2342.19200300.100.1.11", "documentIdentifier"),
    ("0.9.2342.19200300.100.1.12", "documentTitle"),
    ("0.9.2342.19200300.100.1.13", "documentVersion"),
    ("0.9.2342.19200300.100.1.14", "documentAuthor"),
    ("0.9.2342.19200300.100.1.15", "documentLocation"),
    ("0.9.2342.19200300.100.1.20", "homeTelephoneNumber"),
    ("0.9.2342.19200300.100.1.21", "secretary"),
    ("0.9.2342.19200300.100.1.22", "otherMailbox"),
    ("0.9.2342.19200300.100.1.23", "lastModifiedTime"),
    ("0.9.2342.19200300.100.1.24", "lastModifiedBy"),
    ("0.9.2342.19200300.100.1.25", "DC"),
    ("0.9.2342.19200300.100.1.26", "aRecord"),
    ("0.9.2342.19200300.100.1.27", "pilotAttributeType27"),
    ("0.9.2342.19200300.100.1.28", "mXRecord"),
    ("0.9.2342.19200300.100.1.29", "nSRecord"),
    ("0.9.2342.19200300.100.1.30", "sOARecord"),
    ("0.9.2342.19200300.100.1.31", "cNAMERecord"),
    ("0.9.2342.19200300.100.1.37", "associatedDomain"),
    ("0.9.2342.19200300.100.1.38", "associatedName"),
    ("0.9.2342.19200300.100.1.39", "homePostalAddress"),
    ("0.9.2342.19200300.100.1.40", "personalTitle"),
    ("0.9.2342.19200300.100.1.41", "mobileTelephoneNumber"),
    ("0.9.2342.19200300.100.1.42", "pagerTelephoneNumber"),
    ("0.9.2342.19200300.100.1.43", "friendlyCountryName"),
    ("0.9.2342.19200300.100.1.44", "uid"),
    ("0.9.2342.19200300.100.1.45", "organizationalStatus"),
    ("0.9.2342.19200300.100.1.46", "janetMailbox"),
    ("0.9.2342.19200300.100.1.47", "mailPreferenceOption"),
    ("0.9.2342.19200300.100.1.48", "buildingName"),
    ("0.9.2342.19200300.100.1.49", "dSAQuality"),
    ("0.9.2342.19200300.100.1.50", "singleLevelQuality"),
    ("0.9.2342.19200300.100.1.51", "subtreeMinimumQuality"),
    ("0.9.2342.19200300.100.1.52", "subtreeMaximumQuality"),
    ("0.9.2342.19200300.100.1.53", "personalSignature"),
    ("0.9.2342.19200300.100.1.54", "dITRedirect"),
    ("0.9.2342.19200300.100.1.55", "audio"),
    ("0.9.2342.19200300.100.1.56", "documentPublisher"),
    ("1.2.840.113549.1.9.1", "emailAddress"),
    ("1.2.840.113549.1.9.2", "unstructuredName"),
    ("1.2.840.113549.1.9.3", "contentType"),
    ("1.2.840.113549.1.9.4", "messageDigest"),
    ("1.2.840.113549.1.9.5", "signingTime"),
    ("1.2.840.113549.1.9.6", "countersignature"),
    ("1.2.840.113549.1.9.7", "challengePassword"),
    ("1.2.840.113549.1.9.8", "unstructuredAddress"),
    ("1.2.840.113549.1.9.9", "extendedCertificateAttributes"),
    ("1.2.840.113549.1.9.14", "extReq"),
    ("1.2.840.113549.1.9.15", "SMIME-CAPS"),
    ("1.2.840.113549.1.9.16", "SMIME"),
    ("1.2.840.113549.1.9.20", "friendlyName"),
    ("1.2.840.113549.1.9.21", "localKeyID"),
    ("1.3.6.1.4.1.311.60.2.1.1", "jurisdictionL"),
    ("1.3.6.1.4.1.311.60.2.1.2", "jurisdictionST"),
    ("1.3.6.1.4.1.311.60.2.1.3", "jurisdictionC"),
    ("1.2.643.3.131.1.1", "INN"),
    ("1.2.643.100.1", "OGRN"),
    ("1.2.643.100.3", "SNILS"),
    ("1.2.643.100.5", "OGRNIP"),
    ("1.2.643.100.111", "subjectSignTool"),
    ("1.2.643.100.112", "issuerSignTool"),
    ("1.2.643.100.113", "classSignTool"),
];

fn san(name: &GeneralName<'_>) -> Result<String, String> {
    Ok(match name {
        GeneralName::DNSName(s) => format!("DNS:{s}"),
        GeneralName::URI(s) => format!("URI:{s}"),
        GeneralName::RFC822Name(s) => format!("email:{s}"),
        GeneralName::IPAddress(bytes) => match ip(bytes) {
            Some(addr) => format!("IP:{addr}"),
            None => format!("IP:#{}", hex::encode_upper(bytes)),
        },
        GeneralName::DirectoryName(dn) => format!("dirName:{}", rfc4514(dn)?),
        GeneralName::RegisteredID(oid) => format!(
            "RID:{}",
            oid_text(oid.as_bytes()).ok_or("malformed registeredID")?
        ),
        GeneralName::OtherName(oid, explicit) => {
            let type_id = oid_text(oid.as_bytes()).ok_or("malformed otherName type")?;
            // x509-parser hands over the `[0] EXPLICIT` wrapper; the value is
            // the one element inside it.
            let value = match Any::from_der(explicit) {
                Ok((rest, wrapper))
                    if rest.is_empty()
                        && wrapper.class() == Class::ContextSpecific
                        && wrapper.tag().0 == 0
                        && wrapper.header.is_constructed()
                        && matches!(Any::from_der(wrapper.data), Ok((inner_rest, _)) if inner_rest.is_empty()) =>
                {
                    wrapper.data
                }
                _ => return Err("malformed otherName value".to_owned()),
            };
            format!("otherName:{type_id};{}", hex::encode_upper(value))
        }
        GeneralName::X400Address(any) => {
            format!("x400Address:{}", hex::encode_upper(der_encoding(any)))
        }
        GeneralName::EDIPartyName(any) => {
            format!("ediPartyName:{}", hex::encode_upper(der_encoding(any)))
        }
        GeneralName::Invalid(tag, content) => {
            format!("invalid:{};{}", tag.0, hex::encode_upper(content))
        }
    })
}

fn ip(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// The serial as `openssl x509 -serial` prints it: uppercase hex of the
/// magnitude, whole bytes, no leading zero bytes, `-` first if negative.
fn serial_hex(content: &[u8]) -> Option<String> {
    let &first = content.first()?;
    if first & 0x80 == 0 {
        return Some(hex::encode_upper(without_leading_zeros(content)));
    }
    // Two's complement: the magnitude is the bitwise inverse plus one.
    let mut magnitude: Vec<u8> = content.iter().map(|b| !b).collect();
    for byte in magnitude.iter_mut().rev() {
        let (sum, carry) = byte.overflowing_add(1);
        *byte = sum;
        if !carry {
            break;
        }
    }
    Some(format!(
        "-{}",
        hex::encode_upper(without_leading_zeros(&magnitude))
    ))
}

/// `bytes` without leading zero bytes, keeping at least one.
fn without_leading_zeros(bytes: &[u8]) -> &[u8] {
    let zeros = bytes
        .iter()
        .take(bytes.len().saturating_sub(1))
        .take_while(|&&b| b == 0)
        .count();
    bytes.get(zeros..).unwrap_or(bytes)
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

    #[test]
    fn serials_print_as_openssl_does() {
        for (der, text) in [
            (&[0x00][..], "00"),
            (&[0x01], "01"),
            (&[0x00, 0x80], "80"),
            (&[0x00, 0x00, 0x01], "01"),
            (&[0xFB], "-05"),
            (&[0xFF], "-01"),
            (&[0x80], "-80"),
            (&[0xFF, 0x7F], "-81"),
            (&[0xFF, 0x00], "-0100"),
            (&[0x80, 0x00], "-8000"),
        ] {
            assert_eq!(serial_hex(der).as_deref(), Some(text), "{der:02X?}");
        }
        assert_eq!(serial_hex(&[]), None);
    }

    #[test]
    fn oids_decode_every_arc_form() {
        assert_eq!(oid_text(&[0x55, 0x04, 0x03]).as_deref(), Some("2.5.4.3"));
        assert_eq!(oid_text(&[0x00]).as_deref(), Some("0.0"));
        assert_eq!(oid_text(&[0x28]).as_deref(), Some("1.0"));
        // 2.999: the first subidentifier spans two bytes.
        assert_eq!(oid_text(&[0x88, 0x37, 0x03]).as_deref(), Some("2.999.3"));
        assert_eq!(oid_text(&[]), None);
        assert_eq!(oid_text(&[0x55, 0x84]), None);
        assert_eq!(oid_text(&[0x55, 0x80, 0x01]), None);
        assert_eq!(oid_text(&[0xFF; 40]), None);
        // 2.25.<UUID>: a 128-bit arc fits; one more bit does not.
        let mut uuid = vec![0x69, 0x83];
        uuid.extend([0xFF; 17]);
        uuid.push(0x7F);
        assert_eq!(
            oid_text(&uuid).as_deref(),
            Some("2.25.340282366920938463463374607431768211455")
        );
        uuid[1] = 0x87;
        assert_eq!(oid_text(&uuid), None);
    }

    #[test]
    fn values_are_escaped_per_rfc4514() {
        for (value, escaped) in [
            ("dev, O=Acme", "dev\\, O=Acme"),
            ("a+b\"c\\d<e>f;g", "a\\+b\\\"c\\\\d\\<e\\>f\\;g"),
            ("#x#", "\\#x#"),
            ("#", "\\#"),
            (" x ", "\\ x\\ "),
            (" ", "\\ "),
            ("a\0b\x1f\x7fé", "a\\00b\\1F\\7Fé"),
            ("", ""),
        ] {
            let mut out = String::new();
            push_escaped(&mut out, value);
            assert_eq!(out, escaped, "{value:?}");
        }
    }

    /// The cases openssl refuses to load, so the corpus cannot compare them.
    #[test]
    fn strings_openssl_refuses_still_decode_or_dump() {
        let decode = |der: &[u8]| {
            let (_, any) = Any::from_der(der).expect("valid");
            decode_string(&any)
        };
        // VisibleString, Latin-1 like the other one-byte types.
        assert_eq!(decode(&[0x1A, 0x02, 0x61, 0xE9]).as_deref(), Some("aé"));
        // BMPString with a surrogate pair: UTF-16.
        assert_eq!(
            decode(&[0x1E, 0x04, 0xD8, 0x3D, 0xDE, 0x00]).as_deref(),
            Some("😀")
        );
        // A lone surrogate, odd lengths, invalid UTF-8, a code point past
        // U+10FFFF, non-string types: not strings, so `#` + DER.
        for der in [
            &[0x1E, 0x02, 0xD8, 0x00][..],
            &[0x1E, 0x01, 0x41],
            &[0x1C, 0x03, 0x00, 0x00, 0x41],
            &[0x0C, 0x02, 0xC3, 0x28],
            &[0x1C, 0x04, 0x00, 0x11, 0x00, 0x00],
            &[0x02, 0x01, 0x05],
            &[
                0x17, 0x0D, 0x32, 0x35, 0x30, 0x31, 0x30, 0x31, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30,
                0x5A,
            ],
            &[0x80, 0x01, 0x41],
        ] {
            assert_eq!(decode(der), None, "{der:02X?}");
        }
    }

    #[test]
    fn der_encoding_rebuilds_headers() {
        let (_, any) = Any::from_der(&[0x0C, 0x02, 0x68, 0x69]).expect("valid");
        assert_eq!(der_encoding(&any), [0x0C, 0x02, 0x68, 0x69]);
        let mut long = vec![0x04, 0x82, 0x01, 0x00];
        long.extend([0xAB; 256]);
        let (_, any) = Any::from_der(&long).expect("valid");
        assert_eq!(der_encoding(&any), long);
        let (_, any) = Any::from_der(&[0xBF, 0x81, 0x00, 0x00]).expect("valid");
        assert_eq!(der_encoding(&any), [0xBF, 0x81, 0x00, 0x00]);
    }
}
