#!/usr/bin/env bash
# Makes a private CA and certificates signed by it, as PEM files Fjord reads
# (ssl.keystore.type=PEM): for trying TLS locally, for the compose example and for tests.
# Production clusters should use their own PKI (cert-manager, Vault, ...).
#
#   deploy/gen-certs.sh DIR NAME [SAN...]            # a node: DIR/ca.pem signs it
#   deploy/gen-certs.sh --client DIR NAME [SAN...]   # a client: DIR/client-ca.pem signs it
#
# Nodes and clients get separate CAs: trust DIR/client-ca.pem for client certificates on
# Kafka listeners (ssl.truststore.location) and DIR/ca.pem between nodes
# (rpc.ssl.truststore.location), so no client certificate passes as a node. Each CA is
# made on first use and reused after (CA=other picks DIR/other.pem instead). For NAME it
# writes NAME.key, NAME.crt and NAME.pem (the key followed by the certificate: a
# keystore). The certificate's subject is CN=NAME; its subjectAltNames are the SANs given
# (DNS:host, IP:addr, wildcards such as DNS:*.fjord-headless.default.svc.cluster.local),
# or DNS:NAME, DNS:localhost and IP:127.0.0.1 when none are. A node's certificate is good
# for both TLS server and client authentication, so one file serves its listeners and its
# peer connections; a client's only for client authentication.
#
# Private keys are written with mode 0600. FJORD_CERT_UID=10001 also gives them to that
# user (the container image's), for bind mounts into containers; that needs root.
set -euo pipefail

client=false
if [ "${1:-}" = --client ]; then
    client=true
    shift
fi
if [ $# -lt 2 ]; then
    sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
command -v openssl >/dev/null || { echo "error: the openssl tool is needed" >&2; exit 1; }

dir=$1 name=$2
shift 2
if $client; then
    ca=${CA:-client-ca}
    usage=clientAuth
else
    ca=${CA:-ca}
    usage=serverAuth,clientAuth
fi
days=${FJORD_CERT_DAYS:-365}
mkdir -p "$dir"
cd "$dir"
umask 077

if [ ! -f "$ca.pem" ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$ca.key" -out "$ca.pem" -days "$days" -subj "/CN=fjord-$ca" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi

if [ $# -eq 0 ]; then
    set -- "DNS:$name" "DNS:localhost" "IP:127.0.0.1"
fi
sans=$(IFS=,; echo "$*")

ext=$(mktemp)
trap 'rm -f "$ext" "$name.csr"' EXIT
cat >"$ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=$usage
subjectAltName=$sans
EOF

openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$name.key" -out "$name.csr" -subj "/CN=$name" 2>/dev/null
openssl x509 -req -in "$name.csr" -CA "$ca.pem" -CAkey "$ca.key" -CAcreateserial \
    -out "$name.crt" -days "$days" -extfile "$ext" 2>/dev/null
cat "$name.key" "$name.crt" >"$name.pem"
chmod 0600 "$name.key" "$name.pem" "$ca.key"
chmod 0644 "$name.crt" "$ca.pem"
if [ -n "${FJORD_CERT_UID:-}" ]; then
    chown "$FJORD_CERT_UID" "$name.key" "$name.pem"
fi
echo "$dir/$name.pem (CN=$name, $sans), signed by $dir/$ca.pem"
