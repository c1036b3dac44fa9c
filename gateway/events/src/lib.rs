//! CloudEvents between enti: the event contracts, the durable outbox, the Kafka relay and
//! delivery to back-office webhooks.
#![forbid(unsafe_code)]

pub mod bus;
pub mod contract;
pub mod outbox;
pub mod publish;
pub mod structured;

pub use bus::EventBus;
pub use publish::EventsAdapter;
mod bench;
pub mod dead_letter;
pub mod delivery;
mod delivery_kafka;
pub mod kafka;
pub mod relay;
pub mod stream;
pub mod webhook;
