#!/usr/bin/env python3
"""Independent Kafka client for varco's tests (confluent-kafka, its own librdkafka).

  consume BOOTSTRAP TOPIC N TIMEOUT_S   read N records from the beginning; prints a JSON list of
                                        {"key", "value", "headers", "partition", "offset"}; with
                                        VARCO_SUBJECT_KEY set, also "subject" (ce_subject, or the
                                        sealed subject opened) and "subject_key" (the record key
                                        that subject must have), computed here independently
  topics BOOTSTRAP                      the broker's topic names, as a JSON list
  produce BOOTSTRAP TOPIC N SIZE        produce N records of SIZE bytes as fast as possible
                                        (the raw-producer reference of bench/events); prints
                                        {"records", "seconds"}
"""
import base64
import hashlib
import hmac
import json
import os
import sys
import time
import uuid

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def derive(secret, info):
    """varco's documented derivation: HKDF-SHA256, salt "varco kafka subject"."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"varco kafka subject", info=info).derive(secret)


def subject_of(headers, secret):
    if "ce_subject" in headers:
        return headers["ce_subject"]
    sealed = headers.get("varco_sealed_subject")
    if sealed is None:
        return None
    raw = base64.urlsafe_b64decode(sealed + "=" * (-len(sealed) % 4))
    plain = AESGCM(derive(secret, b"subject-seal")).decrypt(raw[:12], raw[12:], headers["ce_id"].encode())
    return plain.decode()


def consume(bootstrap, topic, n, timeout):
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "varco-test-" + uuid.uuid4().hex,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        # A topic created after the subscription (varco creates some on demand) is seen soon.
        "topic.metadata.refresh.interval.ms": 1000,
    })
    c.subscribe([topic])
    out = []
    deadline = time.time() + timeout
    while len(out) < n and time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            continue
        headers = {k: (v.decode() if v is not None else None) for k, v in (m.headers() or [])}
        rec = {
            "key": m.key().decode() if m.key() else None,
            "value": m.value().decode() if m.value() else None,
            "headers": headers,
            "partition": m.partition(),
            "offset": m.offset(),
        }
        secret = os.environ.get("VARCO_SUBJECT_KEY")
        if secret:
            subject = subject_of(headers, secret.encode())
            rec["subject"] = subject
            if subject is not None:
                tag = hmac.new(derive(secret.encode(), b"record-key"), subject.encode(), hashlib.sha256).digest()
                rec["subject_key"] = tag[:16].hex()
        out.append(rec)
    c.close()
    print(json.dumps(out))


def topics(bootstrap):
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    print(json.dumps(sorted(md.topics.keys())))


def produce(bootstrap, topic, n, size):
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 5})
    value = b"x" * size
    start = time.time()
    for i in range(n):
        while True:
            try:
                p.produce(topic, value=value, key=str(i % 1000).encode())
                break
            except BufferError:
                p.poll(0.01)
        p.poll(0)
    p.flush(60)
    print(json.dumps({"records": n, "seconds": time.time() - start}))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "consume":
        consume(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))
    elif cmd == "topics":
        topics(sys.argv[2])
    elif cmd == "produce":
        produce(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        sys.exit("unknown command " + cmd)
