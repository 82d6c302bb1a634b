//! Semantic deny reasons → the codes each MQTT protocol version puts on the wire.
//!
//! Per `shared/protocols.md`: MQTT 3.1 and 3.1.1 CONNACK return codes 0–5; MQTT 5
//! reason codes for CONNACK, SUBACK and PUBACK/PUBREC. 3.1.1 has no code for a
//! refused publish, so `puback` returns `None` there (brokers drop or disconnect).

use crate::bindings::DenyReason;
use crate::error::ProtocolError;

/// MQTT 5 "unspecified error", used where the reason has no closer code.
pub const V5_UNSPECIFIED_ERROR: u8 = 0x80;
/// MQTT 5 "not authorized".
pub const V5_NOT_AUTHORIZED: u8 = 0x87;
/// MQTT 3.1.1 SUBACK failure return code.
pub const V311_SUBACK_FAILURE: u8 = 0x80;

fn check_version(protocol_version: u8) -> Result<u8, ProtocolError> {
    match protocol_version {
        3..=5 => Ok(protocol_version),
        other => Err(ProtocolError(other)),
    }
}

/// The code for an accepted connection (0 on every version), after checking
/// that the protocol level is one the host knows.
pub fn connack_accepted(protocol_version: u8) -> Result<u8, ProtocolError> {
    check_version(protocol_version).map(|_| 0)
}

/// The CONNACK code refusing a connection for `reason`.
pub fn connack(reason: DenyReason, protocol_version: u8) -> Result<u8, ProtocolError> {
    Ok(match check_version(protocol_version)? {
        5 => match reason {
            DenyReason::NotAuthorized => V5_NOT_AUTHORIZED,
            DenyReason::BadUsernameOrPassword => 0x86,
            DenyReason::Banned => 0x8A,
            DenyReason::BadAuthenticationMethod => 0x8C,
            DenyReason::ClientIdentifierNotValid => 0x85,
            DenyReason::ServerUnavailable => 0x88,
        },
        // 3.1 and 3.1.1 share return codes 1-5; reasons without their own code
        // fall back to "not authorized".
        _ => match reason {
            DenyReason::NotAuthorized
            | DenyReason::Banned
            | DenyReason::BadAuthenticationMethod => 5,
            DenyReason::BadUsernameOrPassword => 4,
            DenyReason::ClientIdentifierNotValid => 2,
            DenyReason::ServerUnavailable => 3,
        },
    })
}

/// The per-filter SUBACK code refusing a subscription for `reason`.
pub fn suback(reason: DenyReason, protocol_version: u8) -> Result<u8, ProtocolError> {
    Ok(match check_version(protocol_version)? {
        5 => v5_topic_code(reason),
        _ => V311_SUBACK_FAILURE,
    })
}

/// The PUBACK/PUBREC code refusing a QoS>0 publish; `None` before MQTT 5.
pub fn puback(reason: DenyReason, protocol_version: u8) -> Result<Option<u8>, ProtocolError> {
    Ok(match check_version(protocol_version)? {
        5 => Some(v5_topic_code(reason)),
        _ => None,
    })
}

fn v5_topic_code(reason: DenyReason) -> u8 {
    match reason {
        DenyReason::ServerUnavailable => V5_UNSPECIFIED_ERROR,
        _ => V5_NOT_AUTHORIZED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            assert_eq!(connack(reason, 4), Ok(v311), "{reason:?} on 3.1.1");
            assert_eq!(connack(reason, 3), Ok(v311), "{reason:?} on 3.1");
            assert_eq!(connack(reason, 5), Ok(v5), "{reason:?} on 5");
        }
    }

    #[test]
    fn topic_codes() {
        assert_eq!(suback(DenyReason::NotAuthorized, 4), Ok(0x80));
        assert_eq!(suback(DenyReason::NotAuthorized, 5), Ok(0x87));
        assert_eq!(puback(DenyReason::NotAuthorized, 5), Ok(Some(0x87)));
        assert_eq!(puback(DenyReason::NotAuthorized, 4), Ok(None));
        assert_eq!(suback(DenyReason::ServerUnavailable, 5), Ok(0x80));
    }

    #[test]
    fn unknown_protocol_levels_are_an_error() {
        assert_eq!(connack(DenyReason::NotAuthorized, 6), Err(ProtocolError(6)));
        assert_eq!(suback(DenyReason::NotAuthorized, 0), Err(ProtocolError(0)));
    }
}
