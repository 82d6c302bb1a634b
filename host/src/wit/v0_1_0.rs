//! `mqtt:policy@0.1.0` (frozen: `wit/v0.1.0/policy.wit`): generated bindings
//! and the conversions between its records and the host's types.

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{AsContextMut, Result};

use crate::request as host;
use crate::state::{GuestLevel, StoreState};
use crate::verdict;

wasmtime::component::bindgen!({
    world: "policy",
    path: "../wit/v0.1.0",
});

use mqtt::policy::types as wit;

/// The version string policies built against this contract carry.
pub(crate) const VERSION: &str = "0.1.0";

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
}

fn attributes(list: &[host::Attribute]) -> Vec<wit::Attribute> {
    list.iter()
        .map(|a| wit::Attribute {
            key: a.key.clone(),
            value: a.value.clone(),
        })
        .collect()
}

fn certificate(c: &crate::cert::Certificate) -> wit::Certificate {
    wit::Certificate {
        der: c.der.clone(),
        sha1: c.sha1.clone(),
        sha256: c.sha256.clone(),
        subject: c.subject.clone(),
        issuer: c.issuer.clone(),
        common_name: c.common_name.clone(),
        sans: c.sans.clone(),
        serial: c.serial.clone(),
        not_before: c.not_before,
        not_after: c.not_after,
    }
}

/// The host's CONNECT in this version's shape (the will has no field here).
fn connect_request(r: &host::ConnectRequest) -> wit::ConnectRequest {
    wit::ConnectRequest {
        client_id: r.client_id.clone(),
        username: r.username.clone(),
        password: r.password.as_ref().map(|p| p.as_bytes().to_vec()),
        protocol_version: r.protocol_version.level(),
        clean_start: r.clean_start,
        keep_alive: r.keep_alive,
        peer_address: r.peer_address.clone(),
        listener: r.listener.clone(),
        user_properties: r
            .user_properties
            .iter()
            .map(|p| wit::UserProperty {
                name: p.name.clone(),
                value: p.value.clone(),
            })
            .collect(),
        certificates: r.certificates.iter().map(certificate).collect(),
    }
}

fn topic_request(r: &host::TopicRequest) -> wit::TopicRequest {
    wit::TopicRequest {
        client_id: r.client_id.clone(),
        username: r.username.clone(),
        topic: r.topic.clone(),
        access: access(r.access),
        qos: r.qos,
        retain: r.retain,
        attributes: attributes(&r.attributes),
        roles: r.roles.clone(),
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
) -> Result<verdict::TopicVerdict> {
    Ok(topic_verdict(
        policy.call_topic_check(store, &topic_request(request))?,
    ))
}
