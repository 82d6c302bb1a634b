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

super::shared_conversions!();

pub(crate) fn connect_check(
    policy: &Policy,
    store: impl AsContextMut<Data = StoreState>,
    request: &host::ConnectRequest,
) -> Result<verdict::ConnectVerdict> {
    Ok(connect_verdict(
        policy.call_connect_check(store, &connect_request(request))?,
    ))
}

pub(crate) fn topic_check(
    policy: &Policy,
    store: impl AsContextMut<Data = StoreState>,
    request: &host::TopicRequest,
) -> Result<(verdict::TopicVerdict, verdict::VerdictLifetime)> {
    let answer = policy.call_topic_check(store, &topic_request(request))?;
    let lifetime = match answer.lifetime {
        wit::Lifetime::None => verdict::VerdictLifetime::None,
        wit::Lifetime::Session => verdict::VerdictLifetime::Session,
        wit::Lifetime::Until(ms) => verdict::VerdictLifetime::Until(ms),
    };
    Ok((topic_verdict(answer.verdict), lifetime))
}
