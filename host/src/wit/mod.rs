//! The WIT contract as the host speaks it: one module per released version of
//! `mqtt:policy`, each generated from its frozen folder under `wit/`, with
//! conversions between that version's records and the host's own types
//! ([`crate::request`], [`crate::verdict`]).
//!
//! Adding a version is one file here plus the match arms the compiler points
//! to: [`PolicyPre`] and [`PolicyInstance`] are enums over versions, and a
//! component is matched against the newest version first.

use wasmtime::component::{Component, Linker};
use wasmtime::{AsContextMut, Result};

use crate::request::{ConnectRequest, TopicRequest};
use crate::state::StoreState;
use crate::verdict::{ConnectVerdict, TopicVerdict};

pub(crate) mod v0_1_0;

/// Every contract version the host loads, newest first.
pub const VERSIONS: &[&str] = &[v0_1_0::VERSION];

/// Link the host imports of every version.
pub(crate) fn add_to_linker(linker: &mut Linker<StoreState>) -> Result<()> {
    v0_1_0::add_to_linker(linker)
}

/// A component checked against one contract version and pre-linked.
pub(crate) enum PolicyPre {
    V0_1_0(v0_1_0::PolicyPre<StoreState>),
}

/// One instance of a policy, of whichever version it was built against.
pub(crate) enum PolicyInstance {
    V0_1_0(v0_1_0::Policy),
}

impl PolicyPre {
    /// Match `component` against each version, newest first. The error is
    /// the newest version's, which is what a policy author should target.
    pub(crate) fn new(linker: &Linker<StoreState>, component: &Component) -> Result<Self> {
        let instance_pre = linker.instantiate_pre(component)?;
        v0_1_0::PolicyPre::new(instance_pre).map(PolicyPre::V0_1_0)
    }

    /// The contract version the policy was built against.
    pub(crate) fn version(&self) -> &'static str {
        match self {
            PolicyPre::V0_1_0(_) => v0_1_0::VERSION,
        }
    }

    pub(crate) fn instantiate(
        &self,
        store: impl AsContextMut<Data = StoreState>,
    ) -> Result<PolicyInstance> {
        Ok(match self {
            PolicyPre::V0_1_0(pre) => PolicyInstance::V0_1_0(pre.instantiate(store)?),
        })
    }
}

impl PolicyInstance {
    pub(crate) fn init(
        &self,
        store: impl AsContextMut<Data = StoreState>,
        config: &str,
    ) -> Result<std::result::Result<(), String>> {
        match self {
            PolicyInstance::V0_1_0(p) => p.call_init(store, config),
        }
    }

    pub(crate) fn connect_check(
        &self,
        store: impl AsContextMut<Data = StoreState>,
        request: &ConnectRequest,
    ) -> Result<ConnectVerdict> {
        match self {
            PolicyInstance::V0_1_0(p) => v0_1_0::connect_check(p, store, request),
        }
    }

    pub(crate) fn topic_check(
        &self,
        store: impl AsContextMut<Data = StoreState>,
        request: &TopicRequest,
    ) -> Result<TopicVerdict> {
        match self {
            PolicyInstance::V0_1_0(p) => v0_1_0::topic_check(p, store, request),
        }
    }
}
