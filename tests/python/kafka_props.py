"""librdkafka client properties (what confluent-kafka and kcat take) as kafka-python
keyword arguments, so one set of security settings drives every client of a test."""

_NAMES = {
    "security.protocol": "security_protocol",
    "sasl.mechanism": "sasl_mechanism",
    "sasl.username": "sasl_plain_username",
    "sasl.password": "sasl_plain_password",
    "ssl.ca.location": "ssl_cafile",
    "ssl.certificate.location": "ssl_certfile",
    "ssl.key.location": "ssl_keyfile",
}


def to_kafka_python(props):
    out = {}
    for key, value in props.items():
        if key == "ssl.endpoint.identification.algorithm":
            out["ssl_check_hostname"] = value.lower() == "https"
        elif key in _NAMES:
            out[_NAMES[key]] = value
        else:
            raise ValueError("no kafka-python equivalent for " + key)
    return out


def parse(pairs):
    """KEY=VALUE strings (repeated --property flags) as a dict."""
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError("--property wants KEY=VALUE, not " + pair)
        out[key] = value
    return out
