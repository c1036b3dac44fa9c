//! CloudEvents between enti: the event contracts, the durable outbox, the Kafka relay and
//! delivery to back-office webhooks.
#![forbid(unsafe_code)]

pub mod outbox;
