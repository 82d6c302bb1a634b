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
