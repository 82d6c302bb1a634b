//! The webhook server (`mqtt-policy serve`): the HTTP auth protocols
//! brokers already call, answered by the policy chain through the host's
//! session API, so verdicts and codes are exactly those of an embedded
//! broker.
//!
//! - amqtt 0.12.1's `UserAuthHttpPlugin` / `TopicAuthHttpPlugin` ([`amqtt`]
//!   module docs),
//! - Azure Web PubSub's MQTT `connect` event,
//! - EMQX 5's HTTP authentication and authorization,
//! - RabbitMQ's `rabbitmq_auth_backend_http` as its MQTT plugin uses it,
//!
//! plus `/metrics` (Prometheus) and `/healthz`. Topic checks of amqtt, EMQX
//! and RabbitMQ arrive without the connect's grant: the session of the last
//! allowed connect of that (client id, username) answers them, from a
//! bounded, expiring map; a topic check with no session is denied.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use mqtt_policy_webhook::{ServeConfig, Server};
//! let config = ServeConfig::from_file("serve.toml".as_ref())?;
//! let host = mqtt_policy_host::PolicyHost::builder(&config.chain).build()?;
//! let server = Server::start(config, host).await?;
//! println!("listening on {}", server.local_addr());
//! server.shutdown().await;
//! # Ok(()) }
//! ```

pub mod amqtt;
pub mod azure;
mod common;
mod config;
mod context;
pub mod emqx;
mod error;
mod metrics;
mod params;
pub mod rabbitmq;
mod ratelimit;
mod run;
mod server;
mod sessions;
mod tls;

pub use config::{
    AmqttConfig, AmqttResponseMode, AzureConfig, CallerAuth, EmqxConfig, Limits, RabbitConfig,
    RateLimitConfig, ServeConfig, SessionsConfig, TlsConfig,
};
pub use error::{ConfigError, RequestError, ServeError};
pub use metrics::{Endpoint, Verdict};
pub use run::run;
pub use server::Server;
