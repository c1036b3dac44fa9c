//! How events sit in Kafka: the topic of each event, its record key, the sealed subject, and
//! the clients' settings. One codec: the relay encodes, subscriptions and live streams decode.
//!
//! - Topic: `KafkaConfig::topic_for` (per ente by default, so Kafka's ACLs can grant what
//!   `events.readers` grants).
//! - Key: `hex(HMAC-SHA256(k_key, subject))[..32]`, or the event id without a subject: one
//!   subject, one partition (murmur2, as the Java clients), without the codice fiscale in the
//!   clear in the broker.
//! - Subject: in `ce_subject` only when the type's contract says it is no personal data;
//!   otherwise in `varco_sealed_subject` as `base64url(nonce ‖ AES-256-GCM(k_seal, subject,
//!   aad = event id))`, which varco opens on the way out. `k_key` and `k_seal` are HKDF-SHA256
//!   expansions of `subject_key` (salt `varco kafka subject`, infos `record-key` and
//!   `subject-seal`), so another system holding the key can compute and open both.

use crate::contract::Registry;
use base64::Engine as _;
use cloudevents::binding::rdkafka::{record_to_event, FutureRecordExt, MessageRecord};
use cloudevents::{AttributesReader, AttributesWriter, Event};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use ring::{aead, hkdf, hmac, rand::SecureRandom};
use std::collections::HashSet;
use std::time::Duration;
use varco_config::KafkaConfig;

/// The header carrying a sealed subject.
pub const SEALED_SUBJECT: &str = "varco_sealed_subject";
const SALT: &[u8] = b"varco kafka subject";
const NONCE: usize = 12;

/// Topics, keys and subject sealing for one Kafka configuration.
pub struct KafkaCodec {
    pub cfg: KafkaConfig,
    record_key: hmac::Key,
    seal: aead::LessSafeKey,
    /// Types whose subject is no personal data (sent in the clear).
    public_subject: HashSet<String>,
    rng: ring::rand::SystemRandom,
}

impl std::fmt::Debug for KafkaCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The keys are secrets: never printed.
        f.debug_struct("KafkaCodec").field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

/// Why a Kafka record could not become the event varco delivers.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("the record is not a CloudEvent: {0}")]
    NotAnEvent(String),
    #[error("the sealed subject of event `{0}` does not open with this subject_key (another instance's key?)")]
    Seal(String),
    /// Only varco writes these topics: an event whose source ente or type does not belong to
    /// the topic it was found in was forged by another producer.
    #[error("event `{id}` from `{from}` does not belong in topic `{topic}`")]
    WrongTopic { id: String, from: String, topic: String },
}

impl KafkaCodec {
    /// The codec of `cfg`, with `secret` (the resolved `subject_key`, at least 32 bytes).
    pub fn new(cfg: &KafkaConfig, secret: &[u8], registry: &Registry) -> Result<Self, String> {
        if secret.len() < 32 {
            return Err("server.events.kafka.subject_key: at least 32 bytes".into());
        }
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(secret);
        let record_key: hmac::Key = prk
            .expand(&[b"record-key"], hmac::HMAC_SHA256)
            .map_err(|_| "cannot derive the record key".to_owned())?
            .into();
        let seal: aead::UnboundKey = prk
            .expand(&[b"subject-seal"], &aead::AES_256_GCM)
            .map_err(|_| "cannot derive the subject seal".to_owned())?
            .into();
        let public_subject = registry
            .names()
            .filter(|n| registry.get(n).is_some_and(|t| !t.subject_personal))
            .map(str::to_owned)
            .collect();
        Ok(Self {
            cfg: cfg.clone(),
            record_key,
            seal: aead::LessSafeKey::new(seal),
            public_subject,
            rng: ring::rand::SystemRandom::new(),
        })
    }

    /// The topic of an event (by its source ente and type).
    pub fn topic_of(&self, e: &Event) -> String {
        self.cfg.topic_for(source_ente(e).unwrap_or("unknown"), e.ty())
    }

    /// The topics a reader of these (source ente, type) pairs consumes.
    pub fn topics_for<'a>(&self, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<String> {
        let mut out: Vec<String> = pairs.into_iter().map(|(ente, ty)| self.cfg.topic_for(ente, ty)).collect();
        out.sort();
        out.dedup();
        out
    }

    /// The record key of a subject: a keyed hash, the same for every instance sharing the key.
    pub fn key_of_subject(&self, subject: &str) -> String {
        let tag = hmac::sign(&self.record_key, subject.as_bytes());
        tag.as_ref()[..16].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The record key of an event: its subject's keyed hash, or its id.
    pub fn key_of(&self, e: &Event) -> String {
        e.subject().map_or_else(|| e.id().to_owned(), |s| self.key_of_subject(s))
    }

    fn seal_subject(&self, id: &str, subject: &str) -> Result<String, String> {
        let mut nonce = [0u8; NONCE];
        self.rng.fill(&mut nonce).map_err(|_| "no randomness".to_owned())?;
        let mut buf = subject.as_bytes().to_vec();
        self.seal
            .seal_in_place_append_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(id.as_bytes()),
                &mut buf,
            )
            .map_err(|_| "cannot seal the subject".to_owned())?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out))
    }

    fn open_subject(&self, id: &str, sealed: &[u8]) -> Option<String> {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(sealed).ok()?;
        if raw.len() < NONCE + aead::AES_256_GCM.tag_len() {
            return None;
        }
        let (nonce, rest) = raw.split_at(NONCE);
        let nonce = aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = rest.to_vec();
        let plain = self.seal.open_in_place(nonce, aead::Aad::from(id.as_bytes()), &mut buf).ok()?;
        String::from_utf8(plain.to_vec()).ok()
    }

    /// The record of an event: topic, key, and the binary-mode message with the subject in
    /// the clear or sealed.
    pub fn encode(&self, mut e: Event) -> Result<Outgoing, String> {
        let topic = self.topic_of(&e);
        let key = self.key_of(&e);
        let mut sealed = None;
        if let Some(subject) = e.subject().map(str::to_owned) {
            if !self.public_subject.contains(e.ty()) {
                sealed = Some(self.seal_subject(e.id(), &subject)?);
                e.set_subject(None::<String>);
            }
        }
        let record = MessageRecord::from_event(e).map_err(|e| e.to_string())?;
        Ok(Outgoing { topic, key, record, sealed })
    }

    /// The event of a record, its subject restored.
    pub fn decode<M: Message>(&self, msg: &M) -> Result<Event, DecodeError> {
        let mut e = record_to_event(msg).map_err(|e| DecodeError::NotAnEvent(e.to_string()))?;
        if self.topic_of(&e) != msg.topic() {
            return Err(DecodeError::WrongTopic {
                id: e.id().to_owned(),
                from: e.source().to_string(),
                topic: msg.topic().to_owned(),
            });
        }
        let sealed = msg.headers().and_then(|h| h.iter().find(|h| h.key == SEALED_SUBJECT).and_then(|h| h.value));
        if let Some(sealed) = sealed {
            let subject = self.open_subject(e.id(), sealed).ok_or_else(|| DecodeError::Seal(e.id().to_owned()))?;
            e.set_subject(Some(subject));
        }
        Ok(e)
    }
}

/// One event ready to produce.
pub struct Outgoing {
    pub topic: String,
    pub key: String,
    pub record: MessageRecord,
    sealed: Option<String>,
}

impl Outgoing {
    /// The record for `FutureProducer::send_result`; `extra` headers are added (dead letters).
    pub fn future_record<'a>(&'a self, extra: &[(&'a str, &'a str)]) -> FutureRecord<'a, String, Vec<u8>> {
        let mut r = FutureRecord::to(&self.topic).key(&self.key).message_record(&self.record);
        let mut headers = r.headers.take().unwrap_or_else(OwnedHeaders::new);
        if let Some(s) = &self.sealed {
            headers = headers.insert(Header { key: SEALED_SUBJECT, value: Some(s.as_str()) });
        }
        for (k, v) in extra {
            headers = headers.insert(Header { key: k, value: Some(*v) });
        }
        r.headers = Some(headers);
        r
    }
}

/// The ente of an event's `source` (`/enti/<ente>/…`).
pub fn source_ente(e: &Event) -> Option<&str> {
    e.source().as_str().strip_prefix("/enti/").and_then(|r| r.split('/').next()).filter(|s| !s.is_empty())
}

/// librdkafka settings shared by varco's producers and consumers.
pub fn client_config(k: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.brokers);
    c.set("client.id", "varco");
    for (key, v) in &k.properties {
        c.set(key, v);
    }
    c
}

/// How long a consumer's fetch may wait for data. A real Kafka answers a fetch as soon as a
/// record arrives (`fetch.min.bytes` 1), so this is only the idle poll interval there (40
/// fetches a second per consumer); a broker that holds every fetch for the whole wait (tansu)
/// adds up to this much to each delivery. librdkafka's 500 ms made cross-comune delivery take
/// half a second on such a broker. `kafka.properties` may set another value.
pub const FETCH_WAIT_MS: &str = "25";

/// A consumer's settings: varco's defaults, then the configured `properties` (which win).
pub fn consumer_config(k: &KafkaConfig, group: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.brokers)
        .set("client.id", "varco")
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", FETCH_WAIT_MS)
        // A topic created after the consumer subscribed (a new ente) is seen within 10 s.
        .set("topic.metadata.refresh.interval.ms", "10000");
    for (key, v) in &k.properties {
        c.set(key, v);
    }
    c
}

/// Creates the topics that are missing (when `create_partitions` > 0).
pub async fn ensure_topics(k: &KafkaConfig, topics: &[String]) -> Result<(), String> {
    if k.create_partitions == 0 || topics.is_empty() {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = client_config(k).create().map_err(|e| e.to_string())?;
    let new: Vec<NewTopic> =
        topics.iter().map(|t| NewTopic::new(t, k.create_partitions, TopicReplication::Fixed(1))).collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let res = admin.create_topics(new.iter(), &opts).await.map_err(|e| e.to_string())?;
    for r in res {
        match r {
            Ok(t) => tracing::info!(topic = %t, "created a Kafka topic"),
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => return Err(format!("cannot create topic `{t}`: {code}")),
        }
    }
    Ok(())
}

/// The producer the relay uses (also the reference of the benchmark).
pub fn producer(k: &KafkaConfig) -> Result<FutureProducer, String> {
    let mut c = client_config(k);
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        // The Java clients' partitioner: another producer using the same key lands on the
        // same partition, so the order per subject holds across producers.
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "0")
        .set("queue.buffering.max.messages", "200000");
    c.create().map_err(|e| e.to_string())
}

/// The relay's outbox position (held from the moment the bus opens in Kafka mode).
pub const RELAY_CURSOR: &str = "relay";

/// The producer of dead-letter topics.
#[derive(Clone)]
pub(crate) struct TopicProducer(pub(crate) rdkafka::producer::FutureProducer);

impl std::fmt::Debug for TopicProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TopicProducer")
    }
}

/// Acknowledged by all replicas, given up after 5 minutes (the dead-letter file holds every
/// dead letter anyway).
pub(crate) fn topic_producer(k: &varco_config::KafkaConfig) -> Result<TopicProducer, String> {
    let mut c = client_config(k);
    c.set("enable.idempotence", "true").set("acks", "all").set("message.timeout.ms", "300000");
    c.create().map(TopicProducer).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn codec(layout: &str) -> KafkaCodec {
        let cfg: KafkaConfig = serde_json::from_value(json!({
            "brokers": "127.0.0.1:9", "layout": layout, "subject_key": {"env": "X"}
        }))
        .unwrap();
        KafkaCodec::new(&cfg, &[7u8; 32], &Registry::load().unwrap()).unwrap()
    }

    fn event(ty: &str, subject: &str) -> Event {
        serde_json::from_value(json!({
            "specversion": "1.0", "id": "ev-1", "source": "/enti/c_e783/anagrafe", "type": ty,
            "subject": subject, "data": {}
        }))
        .unwrap()
    }

    const RES: &str = "it.varco.anagrafe.residenza.cambiata.v1";

    #[test]
    fn topics_follow_the_layout() {
        let e = event(RES, "RSSMRA80A01H501U");
        assert_eq!(codec("ente").topic_of(&e), "varco.events.c_e783");
        assert_eq!(codec("ente_family").topic_of(&e), "varco.events.c_e783.anagrafe");
        assert_eq!(codec("shared").topic_of(&e), "varco.events");
        assert_eq!(codec("ente").cfg.dead_letter_topic("c_a662"), "varco.events.c_a662.dead-letter");
        assert_eq!(codec("shared").cfg.dead_letter_topic("c_a662"), "varco.events.dead-letter");
        let t = codec("ente_family").topics_for([("c_e783", RES), ("c_e783", RES), ("c_a662", RES)]);
        assert_eq!(t, ["varco.events.c_a662.anagrafe", "varco.events.c_e783.anagrafe"]);
    }

    #[test]
    fn the_key_is_a_keyed_hash_of_the_subject() {
        let c = codec("ente");
        let k = c.key_of(&event(RES, "RSSMRA80A01H501U"));
        assert_eq!(k.len(), 32);
        assert!(!k.contains("RSSMRA"));
        assert_eq!(k, c.key_of(&event(RES, "RSSMRA80A01H501U")), "one subject, one key");
        assert_ne!(k, c.key_of(&event(RES, "VRDLGU75B02E783X")));
        let other = KafkaCodec::new(&c.cfg, &[8u8; 32], &Registry::load().unwrap()).unwrap();
        assert_ne!(k, other.key_of(&event(RES, "RSSMRA80A01H501U")), "another key, another hash");
    }

    #[test]
    fn a_personal_subject_is_sealed_and_opens_only_with_its_key_and_event() {
        let c = codec("ente");
        let sealed = c.seal_subject("ev-1", "RSSMRA80A01H501U").unwrap();
        assert!(!sealed.contains("RSSMRA"));
        assert_ne!(sealed, c.seal_subject("ev-1", "RSSMRA80A01H501U").unwrap(), "a fresh nonce each time");
        assert_eq!(c.open_subject("ev-1", sealed.as_bytes()).as_deref(), Some("RSSMRA80A01H501U"));
        assert_eq!(c.open_subject("ev-2", sealed.as_bytes()), None, "bound to the event id");
        let other = KafkaCodec::new(&c.cfg, &[8u8; 32], &Registry::load().unwrap()).unwrap();
        assert_eq!(other.open_subject("ev-1", sealed.as_bytes()), None);
        let mut bent = sealed.into_bytes();
        bent[20] ^= 1;
        assert_eq!(c.open_subject("ev-1", &bent), None);
        assert_eq!(c.open_subject("ev-1", b"!!"), None);
        assert_eq!(c.open_subject("ev-1", b""), None);
    }

    #[test]
    fn encode_withholds_a_personal_subject_and_keeps_a_public_one() {
        let c = codec("ente");
        let out = c.encode(event(RES, "RSSMRA80A01H501U")).unwrap();
        assert!(out.sealed.is_some());
        let fr = out.future_record(&[("varco_x", "1")]);
        let h = fr.headers.as_ref().unwrap();
        let names: Vec<&str> = h.iter().map(|h| h.key).collect();
        assert!(!names.contains(&"ce_subject"), "{names:?}");
        assert!(names.contains(&SEALED_SUBJECT) && names.contains(&"varco_x"), "{names:?}");
        let out = c.encode(event("it.varco.pratica.stato.cambiato.v1", "PR-2026-1")).unwrap();
        assert!(out.sealed.is_none());
        let fr = out.future_record(&[]);
        let names: Vec<&str> = fr.headers.as_ref().unwrap().iter().map(|h| h.key).collect();
        assert!(names.contains(&"ce_subject"), "{names:?}");
    }

    /// What a consumer would receive for an event the relay sent.
    fn as_received(out: &Outgoing) -> rdkafka::message::OwnedMessage {
        let fr = out.future_record(&[]);
        rdkafka::message::OwnedMessage::new(
            fr.payload.cloned(),
            Some(out.key.clone().into_bytes()),
            out.topic.clone(),
            rdkafka::Timestamp::NotAvailable,
            0,
            0,
            fr.headers.clone(),
        )
    }

    #[test]
    fn decode_restores_the_subject_and_refuses_another_key() {
        let c = codec("ente");
        let sent = event(RES, "RSSMRA80A01H501U");
        let msg = as_received(&c.encode(sent.clone()).unwrap());
        let got = c.decode(&msg).unwrap();
        assert_eq!(got.subject(), Some("RSSMRA80A01H501U"));
        assert_eq!(got.id(), sent.id());
        assert_eq!(got.ty(), sent.ty());
        let other = KafkaCodec::new(&c.cfg, &[8u8; 32], &Registry::load().unwrap()).unwrap();
        assert!(matches!(other.decode(&msg), Err(DecodeError::Seal(id)) if id == "ev-1"));
        let public = as_received(&c.encode(event("it.varco.pratica.stato.cambiato.v1", "PR-1")).unwrap());
        assert_eq!(other.decode(&public).unwrap().subject(), Some("PR-1"), "a clear subject needs no key");
        // Macerata's event found in Bari's topic was written there by someone else.
        let mut forged = c.encode(sent).unwrap();
        forged.topic = "varco.events.c_a662".into();
        assert!(matches!(c.decode(&as_received(&forged)), Err(DecodeError::WrongTopic { .. })));
    }

    #[test]
    fn short_keys_are_refused() {
        let c = codec("ente");
        assert!(KafkaCodec::new(&c.cfg, &[1u8; 31], &Registry::load().unwrap()).is_err());
    }
}
