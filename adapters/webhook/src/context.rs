//! What the protocol handlers read from the running server: the host, the
//! configuration, the session map, the rate limiter and the Azure access
//! keys. Routing, caller authentication and the counters stay in `server`,
//! so the handlers depend on this and `server` depends on the handlers,
//! never the other way round.

use mqtt_policy_host::PolicyHost;

use crate::config::ServeConfig;
use crate::ratelimit::RateLimiter;
use crate::sessions::SessionMap;

/// Everything a protocol handler reads.
pub(crate) struct Context {
    pub host: PolicyHost,
    pub config: ServeConfig,
    pub sessions: SessionMap,
    pub limiter: RateLimiter,
    /// Azure Web PubSub access keys, for the `connect` event's signature.
    pub azure_keys: Vec<Vec<u8>>,
}
