//! Change events for downstream consumers: an outbox table in the target database
//! (fed in the same transaction as each change) drained to a RabbitMQ topic exchange.

pub mod relay;
