//! Typed errors: configuration, startup, and bad requests.

use std::path::PathBuf;
use std::time::Duration;

use hyper::StatusCode;

/// The serve file (or a file it names) is unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid serve config {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// The server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot load the policy chain: {0}")]
    Chain(#[from] mqtt_policy_host::LoadError),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("{0}")]
    Runtime(String),
}

/// Why a request could not be evaluated. Every one is answered with a 4xx
/// and counted as a deny: a request the server does not understand never
/// lets a client in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    #[error("request body is over the {0} byte limit")]
    TooLarge(usize),
    #[error("request body not received within {0:?}")]
    BodyTimeout(Duration),
    #[error("cannot read the request body: {0}")]
    Body(String),
    #[error("method {0} is not allowed here")]
    Method(String),
    #[error(
        "unsupported content type \"{0}\" (expected application/json or application/x-www-form-urlencoded)"
    )]
    ContentType(String),
    #[error("malformed JSON: {0}")]
    Json(String),
    #[error("malformed form data: {0}")]
    Form(String),
    #[error("parameter \"{0}\" is given more than once")]
    Duplicate(String),
    #[error("missing field \"{0}\"")]
    Missing(String),
    #[error("field \"{field}\": {message}")]
    Field { field: String, message: String },
    #[error("unsupported MQTT protocol version {0}")]
    ProtocolVersion(String),
    #[error("\"{0}\" is not valid base64")]
    Base64(String),
    #[error("client certificate: {0}")]
    Certificate(String),
    #[error("missing header \"{0}\"")]
    MissingHeader(String),
    #[error("{0}")]
    Unsupported(String),
}

impl RequestError {
    pub(crate) fn field(field: &str, message: impl Into<String>) -> Self {
        RequestError::Field {
            field: field.to_owned(),
            message: message.into(),
        }
    }

    /// The HTTP status that answers this error.
    pub fn status(&self) -> StatusCode {
        match self {
            RequestError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            RequestError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            RequestError::Method(_) => StatusCode::METHOD_NOT_ALLOWED,
            RequestError::ContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}
