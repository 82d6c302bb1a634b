//! `mqtt:policy@0.2.0` (`wit/v0.2.0/policy.wit`): generated bindings, the
//! conversions between its records and the host's types, and its imports
//! (`0.1.0`'s plus `verify-signature`).

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{AsContextMut, Result};

use crate::request as host;
use crate::state::{GuestLevel, StoreState};
use crate::verdict;

wasmtime::component::bindgen!({
    world: "policy",
    path: "../wit/v0.2.0",
    // Past its per-call bound or the deadline, verifying traps the check.
    imports: { "mqtt:policy/host.verify-signature": trappable },
    // Requests are lowered straight from the host's own strings and lists,
    // without copying them into owned records first.
    ownership: Borrowing { duplicate_if_necessary: true },
});

use mqtt::policy::host::{PublicKey, SignatureAlgorithm};
use mqtt::policy::types as wit;

/// The version string policies built against this contract carry.
pub(crate) const VERSION: &str = "0.2.0";

pub(crate) fn add_to_linker(linker: &mut Linker<StoreState>) -> Result<()> {
    Policy::add_to_linker::<_, HasSelf<_>>(linker, |state| state)
}

// The types interface has no functions; the trait only marks it as linked.
impl mqtt::policy::types::Host for StoreState {}

impl mqtt::policy::host::Host for StoreState {
    fn log(
        &mut self,
        level: mqtt::policy::host::Level,
        message: String,
        fields: Vec<(String, String)>,
    ) {
        self.guest_log(self::level(level), &message, &fields);
    }

    fn now_unix_ms(&mut self) -> u64 {
        crate::state::now_unix_ms()
    }

    fn verify_signature(
        &mut self,
        algorithm: SignatureAlgorithm,
        key: PublicKey,
        message: Vec<u8>,
        signature: Vec<u8>,
    ) -> Result<std::result::Result<bool, String>> {
        use crate::signature::{Algorithm as A, PublicKey as K};
        let algorithm = match algorithm {
            SignatureAlgorithm::Rs256 => A::Rs256,
            SignatureAlgorithm::Rs384 => A::Rs384,
            SignatureAlgorithm::Rs512 => A::Rs512,
            SignatureAlgorithm::Ps256 => A::Ps256,
            SignatureAlgorithm::Ps384 => A::Ps384,
            SignatureAlgorithm::Ps512 => A::Ps512,
            SignatureAlgorithm::Es256 => A::Es256,
            SignatureAlgorithm::Es384 => A::Es384,
            SignatureAlgorithm::EdDsa => A::EdDsa,
        };
        let key = match &key {
            PublicKey::RsaDer(der) => K::RsaDer(der),
            PublicKey::RsaComponents(c) => K::RsaComponents { n: &c.n, e: &c.e },
            PublicKey::EcPoint(point) => K::EcPoint(point),
            PublicKey::Ed25519(raw) => K::Ed25519(raw),
        };
        crate::signature::verify_for(self, algorithm, key, &message, &signature)
    }
}

fn certificate<'a>(c: &'a crate::cert::Certificate, sans: &'a [&'a str]) -> wit::Certificate<'a> {
    wit::Certificate {
        der: &c.der,
        sha1: &c.sha1,
        sha256: &c.sha256,
        subject: &c.subject,
        issuer: &c.issuer,
        common_name: c.common_name.as_deref(),
        sans,
        serial: &c.serial,
        not_before: c.not_before,
        not_after: c.not_after,
    }
}

super::shared_conversions!();

pub(crate) fn connect_check(
    policy: &Policy,
    store: impl AsContextMut<Data = StoreState>,
    request: &host::ConnectRequest,
) -> Result<verdict::ConnectVerdict> {
    let r = request;
    let user_properties: Vec<wit::UserProperty<'_>> = r
        .user_properties
        .iter()
        .map(|p| wit::UserProperty {
            name: &p.name,
            value: &p.value,
        })
        .collect();
    let sans: Vec<Vec<&str>> = r
        .certificates
        .iter()
        .map(|c| c.sans.iter().map(String::as_str).collect())
        .collect();
    let certificates: Vec<wit::Certificate<'_>> = r
        .certificates
        .iter()
        .zip(&sans)
        .map(|(c, sans)| certificate(c, sans))
        .collect();
    let request = wit::ConnectRequest {
        client_id: &r.client_id,
        username: r.username.as_deref(),
        password: r.password.as_ref().map(|p| p.as_bytes()),
        protocol_version: r.protocol_version.level(),
        clean_start: r.clean_start,
        keep_alive: r.keep_alive,
        peer_address: r.peer_address.as_deref(),
        listener: r.listener.as_deref(),
        user_properties: &user_properties,
        certificates: &certificates,
    };
    Ok(connect_verdict(policy.call_connect_check(store, request)?))
}

pub(crate) fn topic_check(
    policy: &Policy,
    store: impl AsContextMut<Data = StoreState>,
    request: &host::TopicRequest,
) -> Result<(verdict::TopicVerdict, verdict::VerdictLifetime)> {
    let r = request;
    // Empty (and then not allocated) unless the session was granted some.
    let attributes: Vec<wit::AttributeParam<'_>> = r
        .attributes
        .iter()
        .map(|a| wit::AttributeParam {
            key: &a.key,
            value: &a.value,
        })
        .collect();
    let roles: Vec<&str> = r.roles.iter().map(String::as_str).collect();
    let request = wit::TopicRequest {
        client_id: &r.client_id,
        username: r.username.as_deref(),
        topic: &r.topic,
        access: access(r.access),
        qos: r.qos,
        retain: r.retain,
        attributes: &attributes,
        roles: &roles,
    };
    let answer = policy.call_topic_check(store, request)?;
    let lifetime = match answer.lifetime {
        wit::Lifetime::None => verdict::VerdictLifetime::None,
        wit::Lifetime::Session => verdict::VerdictLifetime::Session,
        wit::Lifetime::Until(ms) => verdict::VerdictLifetime::Until(ms),
    };
    Ok((topic_verdict(answer.verdict), lifetime))
}
