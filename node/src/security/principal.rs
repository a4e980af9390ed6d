//! The principal of a client that authenticates with a TLS certificate: its subject's
//! distinguished name in RFC 2253 form (`CN=alice,OU=eng,O=Acme`), as Kafka's default
//! principal builder names it. A small DER reader, since this is the one field of a
//! certificate Fjord reads (rustls has already verified the certificate).

/// The subject DN of a DER certificate, or `None` if it does not parse.
pub fn subject_name(cert_der: &[u8]) -> Option<String> {
    let (_, cert, _) = element(cert_der)?; // Certificate SEQUENCE
    let (_, mut tbs, _) = element(cert)?; // TBSCertificate SEQUENCE
                                          // [0] version (optional), serial, signature algorithm, issuer, validity, subject.
    let (tag, _, rest) = element(tbs)?;
    if tag == 0xa0 {
        tbs = rest;
    }
    for _ in 0..4 {
        tbs = element(tbs)?.2; // serial, signature, issuer, validity
    }
    let (tag, subject, _) = element(tbs)?;
    if tag != 0x30 {
        return None;
    }
    // Name: SEQUENCE OF RDN (SET OF AttributeTypeAndValue). RFC 2253 lists the RDNs
    // last to first.
    let mut rdns = Vec::new();
    let mut rest = subject;
    while !rest.is_empty() {
        let (_, set, after) = element(rest)?;
        rest = after;
        let mut parts = Vec::new();
        let mut attrs = set;
        while !attrs.is_empty() {
            let (_, atv, after) = element(attrs)?;
            attrs = after;
            let (oid_tag, oid, value_part) = element(atv)?;
            if oid_tag != 0x06 {
                return None;
            }
            let (_, value, _) = element(value_part)?;
            parts.push(format!(
                "{}={}",
                attribute_name(oid),
                escape(&String::from_utf8_lossy(value))
            ));
        }
        rdns.push(parts.join("+"));
    }
    rdns.reverse();
    Some(rdns.join(","))
}

/// One DER element: its tag, its contents, and what follows it.
fn element(buf: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *buf.first()?;
    let first = *buf.get(1)?;
    let (len, header) = if first & 0x80 == 0 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            return None;
        }
        let bytes = buf.get(2..2 + n)?;
        (
            bytes.iter().fold(0usize, |l, b| (l << 8) | *b as usize),
            2 + n,
        )
    };
    let end = header.checked_add(len)?;
    Some((tag, buf.get(header..end)?, buf.get(end..)?))
}

fn attribute_name(oid: &[u8]) -> String {
    match oid {
        [0x55, 0x04, 0x03] => "CN".into(),
        [0x55, 0x04, 0x06] => "C".into(),
        [0x55, 0x04, 0x07] => "L".into(),
        [0x55, 0x04, 0x08] => "ST".into(),
        [0x55, 0x04, 0x09] => "STREET".into(),
        [0x55, 0x04, 0x0a] => "O".into(),
        [0x55, 0x04, 0x0b] => "OU".into(),
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => "DC".into(),
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => "UID".into(),
        other => dotted(other),
    }
}

/// An OID in dotted form, for attributes without a short name.
fn dotted(oid: &[u8]) -> String {
    let Some((first, rest)) = oid.split_first() else {
        return String::new();
    };
    let mut parts = vec![(first / 40).to_string(), (first % 40).to_string()];
    let mut v: u64 = 0;
    for b in rest {
        v = (v << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            parts.push(v.to_string());
            v = 0;
        }
    }
    parts.join(".")
}

/// RFC 2253 escaping of an attribute value.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for (i, c) in v.chars().enumerate() {
        let edge = (i == 0 && (c == ' ' || c == '#')) || (i + 1 == v.chars().count() && c == ' ');
        if edge || matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    #[test]
    fn the_subject_of_a_real_certificate_reads_as_kafka_names_it() {
        let tmp = tempfile::tempdir().expect("tmp");
        let out = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "k.pem",
                "-out",
                "c.pem",
                "-days",
                "1",
                "-subj",
                "/C=NO/O=Fjord, Inc/OU=eng/CN=alice",
            ])
            .current_dir(tmp.path())
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cert = CertificateDer::from_pem_file(tmp.path().join("c.pem")).expect("cert");
        assert_eq!(
            subject_name(&cert).as_deref(),
            Some("CN=alice,OU=eng,O=Fjord\\, Inc,C=NO")
        );
        assert_eq!(subject_name(b"\x30\x03\x02"), None);
        assert_eq!(
            dotted(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d]),
            "1.2.840.113549"
        );
    }
}
