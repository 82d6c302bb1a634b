//! Host-side bindings generated from `wit/policy.wit`: the only place the
//! contract's types come from. Kept private to the crate; `lib.rs` re-exports
//! the types a broker needs.

wasmtime::component::bindgen!({
    world: "policy",
    path: "../wit",
    additional_derives: [PartialEq, Eq],
});

pub use mqtt::policy::host::Level;
pub use mqtt::policy::types::{
    Access, Attribute, Certificate, Deny, DenyReason, Grant, UserProperty,
};
