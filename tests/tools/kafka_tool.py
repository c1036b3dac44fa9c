#!/usr/bin/env python3
"""Independent Kafka client for varco's tests (confluent-kafka, its own librdkafka).

  consume BOOTSTRAP TOPIC N TIMEOUT_S   read N records from the beginning; prints a JSON list of
                                        {"key", "value", "headers", "partition", "offset"}
  produce BOOTSTRAP TOPIC N SIZE        produce N records of SIZE bytes as fast as possible
                                        (the raw-producer reference of bench/events); prints
                                        {"records", "seconds"}
"""
import json
import sys
import time
import uuid

from confluent_kafka import Consumer, Producer


def consume(bootstrap, topic, n, timeout):
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "varco-test-" + uuid.uuid4().hex,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
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
        out.append({
            "key": m.key().decode() if m.key() else None,
            "value": m.value().decode() if m.value() else None,
            "headers": headers,
            "partition": m.partition(),
            "offset": m.offset(),
        })
    c.close()
    print(json.dumps(out))


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
    elif cmd == "produce":
        produce(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        sys.exit("unknown command " + cmd)
