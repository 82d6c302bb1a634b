//! The host-side face of a policy: what the chain asks and what it gets back.
//!
//! [`crate::WasmPolicy`] is the real implementation; native implementations
//! serve adapter tests (fakes) and built-in rules. Both see only the host's
//! own request and verdict types.

use crate::error::PolicyError;
use crate::request::{ConnectRequest, TopicRequest};
use crate::verdict::{ConnectVerdict, TopicVerdict, VerdictLifetime};

/// A policy as the chain sees it. An `Err` is a failed check (trap,
/// deadline, memory cap, malformed result), which the chain handles with the
/// policy's failure mode; it is never the policy's own "no".
pub trait Policy: Send + Sync {
    fn connect_check(&self, request: &ConnectRequest) -> Result<ConnectVerdict, PolicyError>;
    fn topic_check(&self, request: &TopicRequest) -> Result<TopicVerdict, PolicyError>;

    /// The topic verdict and how long it holds. Defaults to
    /// [`Policy::topic_check`] holding for this request only; override to
    /// let sessions cache what the policy answers.
    fn topic_check_lasting(
        &self,
        request: &TopicRequest,
    ) -> Result<(TopicVerdict, VerdictLifetime), PolicyError> {
        Ok((self.topic_check(request)?, VerdictLifetime::None))
    }
}
