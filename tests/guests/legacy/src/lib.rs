//! A policy built against the frozen `mqtt:policy@0.1.0` contract directly
//! (no SDK, which follows the newest version): allows clients whose id
//! starts with `old-`, and their publishes under `old/`. The host must keep
//! loading it beside `0.2.0` policies, and never cache its topic verdicts
//! (`0.1.0` cannot say how long they hold).

// The generated export glue is `unsafe` and has many arguments (the SDK
// wraps it for its users).
#![allow(unsafe_code, clippy::too_many_arguments)]

wit_bindgen::generate!({
    world: "policy",
    path: "../../../wit/v0.1.0",
});

// The world's `use` already brings the request and verdict types in.
use mqtt::policy::types::{Deny, DenyReason, Grant};

// Exported only in the wasm build.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct Legacy;

impl Guest for Legacy {
    fn init(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn connect_check(request: ConnectRequest) -> ConnectVerdict {
        if request.client_id.starts_with("old-") {
            ConnectVerdict::Allow(Grant {
                attributes: Vec::new(),
                roles: vec!["legacy".into()],
            })
        } else {
            ConnectVerdict::Defer
        }
    }

    fn topic_check(request: TopicRequest) -> TopicVerdict {
        if request.topic.starts_with("old/") {
            TopicVerdict::Allow
        } else {
            TopicVerdict::Deny(Deny {
                reason: DenyReason::NotAuthorized,
                message: "only old/".into(),
            })
        }
    }
}

#[cfg(target_arch = "wasm32")]
export!(Legacy);
