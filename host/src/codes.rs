//! Decisions → what goes on the wire for the client's protocol version.
//!
//! Sources: MQTT 3.1.1 (OASIS, 2014) §3.2.2.3 CONNACK return codes, §3.9.3
//! SUBACK return codes, §3.3.5 (a server that refuses a PUBLISH "MUST either
//! make a positive acknowledgement, according to the normal QoS rules, or
//! close the Network Connection"), §3.11 (UNSUBACK has no payload); MQTT 5.0
//! (OASIS, 2019) §3.2.2.2 CONNACK, §3.4.2.1 PUBACK, §3.5.2.1 PUBREC, §3.9.3
//! SUBACK and §3.11.3 UNSUBACK reason codes; MQTT 3.1 (IBM, 2010) §3.2
//! CONNACK return codes 0–5 and §3.9 SUBACK, whose payload holds only
//! granted QoS levels (no failure code exists).

use crate::decision::{ConnectDecision, Outcome, TopicDecision};
use crate::request::ProtocolVersion;
use crate::verdict::DenyReason;

/// MQTT 5 "unspecified error".
pub const V5_UNSPECIFIED_ERROR: u8 = 0x80;
/// MQTT 5 "not authorized".
pub const V5_NOT_AUTHORIZED: u8 = 0x87;
/// MQTT 3.1.1 SUBACK "failure".
pub const V311_SUBACK_FAILURE: u8 = 0x80;

/// What the broker puts on the wire in answer to a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// Nothing: a QoS 0 PUBLISH, or a delivery to a subscriber (a refused
    /// delivery is dropped for that subscriber only).
    Nothing,
    /// The normal acknowledgement of a version that has no code for it: a
    /// PUBACK/PUBREC before MQTT 5 (the message is still not forwarded when
    /// refused, MQTT 3.1.1 §3.3.5), or an UNSUBACK before MQTT 5.
    Ack,
    /// The acknowledgement carries this code: a CONNACK return/reason code,
    /// a SUBACK entry (granted QoS or failure), an MQTT 5 PUBACK/PUBREC or
    /// UNSUBACK reason code.
    Code(u8),
    /// The version has no way to refuse this: close the network connection
    /// without acknowledging (an MQTT 3.1 SUBSCRIBE refused for any filter).
    Disconnect,
}

/// The CONNACK code of an accepted connection.
pub const CONNACK_ACCEPTED: u8 = 0;

/// The CONNACK code refusing a connection for `reason`.
pub fn connack(reason: DenyReason, version: ProtocolVersion) -> u8 {
    match version {
        ProtocolVersion::V5 => match reason {
            DenyReason::NotAuthorized => V5_NOT_AUTHORIZED,
            DenyReason::BadUsernameOrPassword => 0x86,
            DenyReason::Banned => 0x8A,
            DenyReason::BadAuthenticationMethod => 0x8C,
            DenyReason::ClientIdentifierNotValid => 0x85,
            DenyReason::ServerUnavailable => 0x88,
        },
        // 3.1 and 3.1.1 share return codes 1-5; reasons without their own
        // code fall back to "not authorized".
        ProtocolVersion::V3_1 | ProtocolVersion::V3_1_1 => match reason {
            DenyReason::NotAuthorized
            | DenyReason::Banned
            | DenyReason::BadAuthenticationMethod => 5,
            DenyReason::BadUsernameOrPassword => 4,
            DenyReason::ClientIdentifierNotValid => 2,
            DenyReason::ServerUnavailable => 3,
        },
    }
}

fn v5_topic_code(reason: DenyReason) -> u8 {
    match reason {
        DenyReason::ServerUnavailable => V5_UNSPECIFIED_ERROR,
        _ => V5_NOT_AUTHORIZED,
    }
}

/// The SUBACK entry for a filter: the granted QoS, or the refusal.
pub fn suback(refused: Option<DenyReason>, version: ProtocolVersion, granted_qos: u8) -> Reply {
    match (refused, version) {
        (None, _) => Reply::Code(granted_qos.min(2)),
        (Some(reason), ProtocolVersion::V5) => Reply::Code(v5_topic_code(reason)),
        (Some(_), ProtocolVersion::V3_1_1) => Reply::Code(V311_SUBACK_FAILURE),
        (Some(_), ProtocolVersion::V3_1) => Reply::Disconnect,
    }
}

/// The PUBACK (QoS 1) or PUBREC (QoS 2) for a PUBLISH; nothing for QoS 0.
pub fn puback(refused: Option<DenyReason>, version: ProtocolVersion, qos: u8) -> Reply {
    match (qos, refused, version) {
        (0, _, _) => Reply::Nothing,
        (_, None, ProtocolVersion::V5) => Reply::Code(0),
        (_, Some(reason), ProtocolVersion::V5) => Reply::Code(v5_topic_code(reason)),
        (_, _, ProtocolVersion::V3_1 | ProtocolVersion::V3_1_1) => Reply::Ack,
    }
}

/// The UNSUBACK entry for a filter (MQTT 5); a plain UNSUBACK before 5.
pub fn unsuback(refused: Option<DenyReason>, version: ProtocolVersion) -> Reply {
    match (refused, version) {
        (None, ProtocolVersion::V5) => Reply::Code(0),
        (Some(reason), ProtocolVersion::V5) => Reply::Code(v5_topic_code(reason)),
        (_, ProtocolVersion::V3_1 | ProtocolVersion::V3_1_1) => Reply::Ack,
    }
}

fn refused<A>(outcome: &Outcome<A>) -> Option<DenyReason> {
    match outcome {
        Outcome::Allow(_) => None,
        Outcome::Deny(d) => Some(d.reason),
    }
}

impl ConnectDecision {
    /// The CONNACK code for the client's protocol version (0 when accepted).
    pub fn connack_code(&self, version: ProtocolVersion) -> u8 {
        refused(&self.outcome).map_or(CONNACK_ACCEPTED, |r| connack(r, version))
    }
}

impl TopicDecision {
    /// The SUBACK entry if this decided a subscription.
    pub fn suback(&self, version: ProtocolVersion, granted_qos: u8) -> Reply {
        suback(refused(&self.outcome), version, granted_qos)
    }

    /// The PUBACK/PUBREC if this decided a publish of `qos`.
    pub fn puback(&self, version: ProtocolVersion, qos: u8) -> Reply {
        puback(refused(&self.outcome), version, qos)
    }

    /// The UNSUBACK entry if this decided an unsubscribe.
    pub fn unsuback(&self, version: ProtocolVersion) -> Reply {
        unsuback(refused(&self.outcome), version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ProtocolVersion::{V3_1, V3_1_1, V5};

    /// MQTT 3.1.1 Table 3.1 and MQTT 5.0 Table 3-1 (CONNACK).
    #[test]
    fn connack_codes_match_the_protocol_tables() {
        let cases = [
            (DenyReason::NotAuthorized, 5, 0x87),
            (DenyReason::BadUsernameOrPassword, 4, 0x86),
            (DenyReason::Banned, 5, 0x8A),
            (DenyReason::BadAuthenticationMethod, 5, 0x8C),
            (DenyReason::ClientIdentifierNotValid, 2, 0x85),
            (DenyReason::ServerUnavailable, 3, 0x88),
        ];
        for (reason, v311, v5) in cases {
            assert_eq!(connack(reason, V3_1_1), v311, "{reason:?} on 3.1.1");
            assert_eq!(connack(reason, V3_1), v311, "{reason:?} on 3.1");
            assert_eq!(connack(reason, V5), v5, "{reason:?} on 5");
        }
    }

    #[test]
    fn topic_codes() {
        let na = Some(DenyReason::NotAuthorized);
        assert_eq!(suback(None, V3_1, 1), Reply::Code(1));
        assert_eq!(suback(None, V5, 7), Reply::Code(2));
        assert_eq!(suback(na, V3_1_1, 1), Reply::Code(0x80));
        assert_eq!(suback(na, V5, 1), Reply::Code(0x87));
        assert_eq!(suback(na, V3_1, 1), Reply::Disconnect);
        assert_eq!(
            suback(Some(DenyReason::ServerUnavailable), V5, 1),
            Reply::Code(0x80)
        );
        assert_eq!(puback(na, V5, 0), Reply::Nothing);
        assert_eq!(puback(na, V5, 1), Reply::Code(0x87));
        assert_eq!(puback(None, V5, 2), Reply::Code(0));
        assert_eq!(puback(na, V3_1_1, 1), Reply::Ack);
        assert_eq!(puback(None, V3_1_1, 0), Reply::Nothing);
        assert_eq!(unsuback(na, V5), Reply::Code(0x87));
        assert_eq!(unsuback(None, V5), Reply::Code(0));
        assert_eq!(unsuback(na, V3_1_1), Reply::Ack);
    }
}
