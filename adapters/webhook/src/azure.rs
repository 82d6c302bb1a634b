//! Azure Web PubSub's MQTT `connect` event (CloudEvents, binary mode), as
//! Microsoft's reference "CloudEvents extension for Azure Web PubSub MQTT
//! event handler with HTTP protocol" documents it.
//!
//! - `OPTIONS` with `WebHook-Request-Origin`: the abuse-protection
//!   handshake, answered 200 with `WebHook-Allowed-Origin` (`*` or the
//!   origin) when the origin is allowed.
//! - `POST` with `ce-type: azure.webpubsub.sys.connect`: the client id is
//!   `ce-connectionId`; the body has `mqtt.protocolVersion` (4 or 5),
//!   `mqtt.cleanStart`, `mqtt.username`, `mqtt.password` (base64),
//!   `mqtt.userProperties` and `clientCertificates` (`thumbprint`, PEM
//!   `content`). Allowed: 200 with `userId`, `roles` (the grant's roles),
//!   `groups` and `mqtt.userProperties`. Refused: 401 with `mqtt.code` (the
//!   CONNACK code of the client's version) and `mqtt.reason`.
//! - The `thumbprint` beside a certificate is a claim: the certificate is
//!   parsed and its SHA-1 compared (letter case aside); a mismatch refuses
//!   the connect without asking the chain.
//! - With access keys configured, `ce-signature` (`sha256=<hex>`, one per
//!   key) must be the HMAC-SHA256 of `ce-connectionId` under one of them.
//! - `connected` and `disconnected` events are acknowledged (204); other
//!   events are refused.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use hyper::header::HeaderValue;
use hyper::{HeaderMap, Method, StatusCode};
use mqtt_policy_host::{ConnectRequest, DenyReason, ProtocolVersion, codes};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::common::{self, Answer, Request};
use crate::config::AzureConfig;
use crate::context::Context;
use crate::error::RequestError;
use crate::metrics::Verdict;

const CONNECT: &str = "azure.webpubsub.sys.connect";
const CONNECTED: &str = "azure.webpubsub.sys.connected";
const DISCONNECTED: &str = "azure.webpubsub.sys.disconnected";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConnectEvent {
    mqtt: Option<MqttProperties>,
    #[serde(default)]
    client_certificates: Option<Vec<ClientCertificate>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MqttProperties {
    protocol_version: Option<i64>,
    clean_start: Option<bool>,
    username: Option<String>,
    password: Option<String>,
    user_properties: Option<Vec<UserProperty>>,
}

#[derive(Debug, Deserialize)]
struct UserProperty {
    name: String,
    value: String,
}

#[derive(Debug, Deserialize)]
struct ClientCertificate {
    thumbprint: Option<String>,
    content: Option<String>,
}

/// The event's own answer to a request it cannot evaluate: 4xx is a failed
/// connect to the service, with a code valid for the client's version
/// where it is known (an invalid one becomes "unspecified error" anyway).
pub(crate) fn bad_request(error: &RequestError, version: Option<ProtocolVersion>) -> Answer {
    let code = match version {
        Some(ProtocolVersion::V5) | None => codes::V5_UNSPECIFIED_ERROR,
        Some(v) => codes::connack(DenyReason::NotAuthorized, v),
    };
    Answer::new(
        common::json(
            error.status(),
            &json!({ "mqtt": { "code": code, "reason": error.to_string() }, "error": error.to_string() }),
        ),
        Verdict::BadRequest,
        "(bad-request)",
    )
}

fn refuse(version: ProtocolVersion, reason: DenyReason, message: &str, policy: String) -> Answer {
    let code = codes::connack(reason, version);
    let text = if message.is_empty() {
        reason.as_str().to_owned()
    } else {
        format!("{}: {message}", reason.as_str())
    };
    Answer::new(
        common::json(
            StatusCode::UNAUTHORIZED,
            &json!({ "mqtt": { "code": code, "reason": text } }),
        ),
        Verdict::Deny,
        policy,
    )
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, RequestError> {
    headers
        .get(name)
        .ok_or_else(|| RequestError::MissingHeader(name.to_owned()))?
        .to_str()
        .map_err(|_| RequestError::field(name, "header is not visible ASCII"))
}

pub(crate) fn handle(cx: &Context, config: &AzureConfig, req: &Request) -> Answer {
    if req.method == Method::OPTIONS {
        return handshake(config, &req.headers);
    }
    let event_type = match header(&req.headers, "ce-type") {
        Ok(t) => t,
        Err(e) => return bad_request(&e, None),
    };
    let connection_id = match header(&req.headers, "ce-connectionid") {
        Ok(id) => id,
        Err(e) => return bad_request(&e, None),
    };
    if !cx.azure_keys.is_empty() {
        let signature = req
            .headers
            .get("ce-signature")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !signature_valid(&cx.azure_keys, connection_id, signature) {
            let answer = json!({ "mqtt": { "code": codes::V5_UNSPECIFIED_ERROR, "reason": "invalid ce-signature" } });
            return Answer::new(
                common::json(StatusCode::UNAUTHORIZED, &answer),
                Verdict::Deny,
                "(signature)",
            );
        }
    }
    match event_type {
        CONNECT => connect(cx, config, connection_id, req),
        CONNECTED | DISCONNECTED => Answer::new(
            common::empty(StatusCode::NO_CONTENT),
            Verdict::Allow,
            "(event)",
        ),
        other => bad_request(
            &RequestError::Unsupported(format!("event type \"{other}\" is not handled here")),
            None,
        ),
    }
}

fn handshake(config: &AzureConfig, headers: &HeaderMap) -> Answer {
    let origin = match header(headers, "webhook-request-origin") {
        Ok(o) => o,
        Err(e) => return common::bad_request(&e),
    };
    let allowed = if config.allowed_origins.iter().any(|o| o == "*") {
        Some("*")
    } else if config
        .allowed_origins
        .iter()
        .any(|o| o.eq_ignore_ascii_case(origin))
    {
        Some(origin)
    } else {
        None
    };
    match allowed.and_then(|a| HeaderValue::from_str(a).ok()) {
        Some(value) => {
            let mut r = common::empty(StatusCode::OK);
            r.headers_mut().insert("webhook-allowed-origin", value);
            Answer::new(r, Verdict::Allow, "(handshake)")
        }
        None => Answer::new(
            common::json(
                StatusCode::FORBIDDEN,
                &json!({ "error": format!("origin \"{origin}\" is not allowed") }),
            ),
            Verdict::Deny,
            "(handshake)",
        ),
    }
}

/// Does `header` (`sha256=<hex>[,sha256=<hex>...]`) hold the HMAC-SHA256 of
/// the connection id under one of `keys`? Every pair is compared in
/// constant time.
pub(crate) fn signature_valid(keys: &[Vec<u8>], connection_id: &str, header: &str) -> bool {
    let given: Vec<Vec<u8>> = header
        .split(',')
        .filter_map(|part| part.trim().strip_prefix("sha256="))
        .filter_map(|h| hex::decode(h.trim()).ok())
        .collect();
    let mut valid = false;
    for key in keys {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
            continue;
        };
        mac.update(connection_id.as_bytes());
        let expected = mac.finalize().into_bytes();
        for g in &given {
            use subtle::ConstantTimeEq as _;
            valid |= bool::from(g.as_slice().ct_eq(expected.as_slice()));
        }
    }
    valid
}

/// One certificate entry as PEM text (entries that hold bare base64 DER
/// are wrapped).
fn entry_pem(content: &str) -> Result<String, RequestError> {
    let trimmed = content.trim();
    if trimmed.starts_with("-----BEGIN") {
        return Ok(format!("{trimmed}\n"));
    }
    let compact: String = trimmed.chars().filter(|c| !c.is_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map_err(|_| RequestError::Base64("clientCertificates[].content".into()))?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(chunk));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    Ok(pem)
}

fn connect(cx: &Context, config: &AzureConfig, client_id: &str, req: &Request) -> Answer {
    let event: ConnectEvent = match serde_json::from_slice(&req.body) {
        Ok(e) => e,
        Err(e) => return bad_request(&RequestError::Json(e.to_string()), None),
    };
    let Some(mqtt) = event.mqtt else {
        return bad_request(&RequestError::Missing("mqtt".into()), None);
    };
    let version = match mqtt.protocol_version {
        Some(4) => ProtocolVersion::V3_1_1,
        Some(5) => ProtocolVersion::V5,
        Some(other) => {
            return bad_request(&RequestError::ProtocolVersion(other.to_string()), None);
        }
        None => return bad_request(&RequestError::Missing("mqtt.protocolVersion".into()), None),
    };
    let fail = |e: RequestError| bad_request(&e, Some(version));
    if let Err(e) = common::client_id(client_id, "ce-connectionId") {
        return fail(e);
    }
    let mut request = ConnectRequest::new(client_id)
        .protocol_version(version)
        .clean_start(mqtt.clean_start.unwrap_or(true))
        .listener("azure");
    if let Some(u) = mqtt.username {
        request = request.username(u);
    }
    if let Some(p) = mqtt.password {
        match base64::engine::general_purpose::STANDARD.decode(p.trim().as_bytes()) {
            Ok(bytes) => request = request.password(bytes),
            Err(_) => return fail(RequestError::Base64("mqtt.password".into())),
        }
    }
    for p in mqtt.user_properties.unwrap_or_default() {
        request = request.user_property(p.name, p.value);
    }
    let certificates = event.client_certificates.unwrap_or_default();
    if !certificates.is_empty() {
        let mut pem = String::new();
        for c in &certificates {
            let Some(content) = c.content.as_deref() else {
                return fail(RequestError::Missing("clientCertificates[].content".into()));
            };
            match entry_pem(content) {
                Ok(p) => pem.push_str(&p),
                Err(e) => return fail(e),
            }
        }
        request = request.certificate_chain_pem(pem.as_bytes());
        if let Some(e) = request.certificate_error() {
            return fail(RequestError::Certificate(e.to_string()));
        }
        if request.certificates.len() != certificates.len() {
            return fail(RequestError::Certificate(format!(
                "{} entries hold {} certificates; each entry must hold one",
                certificates.len(),
                request.certificates.len()
            )));
        }
        // The thumbprint is the service's claim about the content: check it
        // rather than let a policy trust one and match the other.
        for (entry, parsed) in certificates.iter().zip(&request.certificates) {
            let Some(claimed) = entry.thumbprint.as_deref() else {
                continue;
            };
            let claimed: String = claimed.chars().filter(|c| *c != ':').collect();
            if !claimed.eq_ignore_ascii_case(&parsed.sha1) {
                cx.limiter
                    .charge(&crate::ratelimit::keys(request.username.as_deref(), None));
                return refuse(
                    version,
                    DenyReason::NotAuthorized,
                    "certificate thumbprint does not match its content",
                    "(thumbprint)".into(),
                );
            }
        }
    }
    let username = request.username.clone();
    let result = common::connect(cx, request, None, false);
    let Some(grant) = result.grant else {
        let reason = result.reason.unwrap_or(DenyReason::NotAuthorized);
        return refuse(version, reason, &result.message, result.decider);
    };
    let mut body = serde_json::Map::new();
    let user_id = match &config.user_id_attribute {
        Some(attr) => grant.attribute(attr).map(str::to_owned),
        None => username,
    };
    if let Some(id) = user_id {
        body.insert("userId".into(), Value::String(id));
    }
    body.insert("roles".into(), json!(grant.roles));
    if let Some(attr) = &config.groups_attribute
        && let Some(value) = grant.attribute(attr)
    {
        let groups: Vec<String> = match serde_json::from_str::<Vec<String>>(value) {
            Ok(list) => list,
            Err(_) => vec![value.to_owned()],
        };
        body.insert("groups".into(), json!(groups));
    }
    if version == ProtocolVersion::V5 && !config.user_property_attributes.is_empty() {
        let props: Vec<Value> = config
            .user_property_attributes
            .iter()
            .filter_map(|k| grant.attribute(k).map(|v| json!({ "name": k, "value": v })))
            .collect();
        body.insert("mqtt".into(), json!({ "userProperties": props }));
    }
    Answer::new(
        common::json(StatusCode::OK, &Value::Object(body)),
        Verdict::Allow,
        result.decider,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures() {
        let keys = vec![b"primary".to_vec(), b"secondary".to_vec()];
        let mut mac = Hmac::<Sha256>::new_from_slice(b"secondary").expect("key");
        mac.update(b"conn-1");
        let good = hex::encode(mac.finalize().into_bytes());
        assert!(signature_valid(
            &keys,
            "conn-1",
            &format!("sha256=00,sha256={good}")
        ));
        assert!(signature_valid(
            &keys,
            "conn-1",
            &format!("sha256={}", good.to_uppercase())
        ));
        assert!(!signature_valid(&keys, "conn-2", &format!("sha256={good}")));
        assert!(!signature_valid(&keys, "conn-1", ""));
        assert!(!signature_valid(&keys, "conn-1", &good));
    }
}
