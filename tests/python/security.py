#!/usr/bin/env python3
"""SASL over TLS with the Python clients: confluent-kafka (librdkafka) and kafka-python
each write records and read them back, with each mechanism, then try a wrong password.
Prints one JSON object: per step, what happened.

  security.py --bootstrap-server B --ca CA.pem --user U --password P --topic T
"""
import argparse
import json
import time
import uuid


def confluent_conf(a, mechanism, password):
    return {
        "bootstrap.servers": a.bootstrap_server,
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": a.ca,
        "sasl.mechanism": mechanism,
        "sasl.username": a.user,
        "sasl.password": password,
    }


def kafka_python_kwargs(a, mechanism, password):
    return dict(
        bootstrap_servers=a.bootstrap_server,
        security_protocol="SASL_SSL",
        ssl_cafile=a.ca,
        sasl_mechanism=mechanism,
        sasl_plain_username=a.user,
        sasl_plain_password=password,
    )


def confluent_round_trip(a, mechanism):
    from confluent_kafka import Consumer, Producer

    tag = "confluent-" + mechanism
    p = Producer(confluent_conf(a, mechanism, a.password))
    for i in range(20):
        p.produce(a.topic, key=tag.encode(), value=("%s-%d" % (tag, i)).encode())
    left = p.flush(30)
    if left:
        return {"ok": False, "why": "%d records unacknowledged" % left}
    conf = confluent_conf(a, mechanism, a.password)
    conf.update({"group.id": "sec-" + uuid.uuid4().hex, "auto.offset.reset": "earliest"})
    c = Consumer(conf)
    c.subscribe([a.topic])
    seen = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(seen) < 20:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        if m.key() == tag.encode():
            seen.add(m.value().decode())
    c.close()
    return {"ok": len(seen) == 20, "read": len(seen)}


def kafka_python_round_trip(a, mechanism):
    from kafka import KafkaConsumer, KafkaProducer

    tag = "kafka-python-" + mechanism
    p = KafkaProducer(**kafka_python_kwargs(a, mechanism, a.password))
    for i in range(20):
        p.send(a.topic, key=tag.encode(), value=("%s-%d" % (tag, i)).encode())
    p.flush(30)
    p.close()
    c = KafkaConsumer(
        a.topic,
        group_id="sec-" + uuid.uuid4().hex,
        auto_offset_reset="earliest",
        consumer_timeout_ms=1000,
        **kafka_python_kwargs(a, mechanism, a.password),
    )
    seen = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(seen) < 20:
        for m in c:
            if m.key == tag.encode():
                seen.add(m.value.decode())
    c.close()
    return {"ok": len(seen) == 20, "read": len(seen)}


def confluent_wrong_password(a):
    from confluent_kafka import KafkaError, Producer

    errors = []
    conf = confluent_conf(a, "SCRAM-SHA-256", a.password + "-wrong")
    conf["error_cb"] = lambda e: errors.append(e)
    p = Producer(conf)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not errors:
        p.poll(0.2)
    codes = [e.code() for e in errors]
    return {
        "ok": KafkaError._AUTHENTICATION in codes,
        "errors": [str(e) for e in errors[:3]],
    }


def kafka_python_wrong_password(a):
    from kafka import KafkaProducer

    try:
        p = KafkaProducer(
            request_timeout_ms=10000,
            max_block_ms=10000,
            **kafka_python_kwargs(a, "PLAIN", a.password + "-wrong"),
        )
        p.close()
        return {"ok": False, "why": "connected with a wrong password"}
    except Exception as e:  # kafka-python surfaces the failed login as an error
        return {"ok": True, "error": "%s: %s" % (type(e).__name__, e)}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bootstrap-server", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--topic", required=True)
    a = p.parse_args()
    out = {
        "confluent SCRAM-SHA-512": confluent_round_trip(a, "SCRAM-SHA-512"),
        "confluent PLAIN": confluent_round_trip(a, "PLAIN"),
        "kafka-python SCRAM-SHA-256": kafka_python_round_trip(a, "SCRAM-SHA-256"),
        "kafka-python PLAIN": kafka_python_round_trip(a, "PLAIN"),
        "confluent wrong password": confluent_wrong_password(a),
        "kafka-python wrong password": kafka_python_wrong_password(a),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
