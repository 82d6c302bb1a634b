//! The webhook server end to end: real policies built from source behind
//! each protocol, real brokers (amqtt, RabbitMQ) where they can run here,
//! and every kind of bad request.

mod common;

mod amqtt; // amqtt 0.12.1's HTTP plugins: request shapes, and the real broker driven by paho-mqtt
mod azure; // Azure Web PubSub connect events: certificates, thumbprints, signatures, codes
mod emqx; // EMQX 5 authn/authz request templates and responses
mod http; // the server itself: bad requests, limits, timeouts, caller auth, TLS, metrics, reload
mod rabbitmq; // RabbitMQ's HTTP auth backend: request shapes, and the real broker driven by paho-mqtt
