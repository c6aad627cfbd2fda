//! The certificates a `https://` gateway must present a chain to.

use ureq::tls::{Certificate, PemItem, RootCerts};

/// The certificates a `https://` gateway's chain must lead to: those of `ca_file` (PEM)
/// when given, else the system's roots. Read when the configuration is, so `nginx -t`
/// reports a missing or useless file, and the workers need not read it later.
pub fn load_roots(ca_file: Option<&str>) -> Result<RootCerts, String> {
    let certs: Vec<Certificate<'static>> = match ca_file {
        Some(file) => {
            let pem = std::fs::read(file).map_err(|e| format!("cannot read \"{file}\": {e}"))?;
            let mut certs = Vec::new();
            for item in ureq::tls::parse_pem(&pem) {
                match item {
                    Ok(PemItem::Certificate(c)) => certs.push(c),
                    Ok(_) => {}
                    Err(e) => return Err(format!("\"{file}\": {e}")),
                }
            }
            if certs.is_empty() {
                return Err(format!("\"{file}\" holds no PEM certificate"));
            }
            check_anchors(&certs).map_err(|e| format!("\"{file}\": {e}"))?;
            certs
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let certs: Vec<_> = found
                .certs
                .iter()
                .map(|c| Certificate::from_der(c.as_ref()).to_owned())
                .collect();
            if certs.is_empty() {
                let why = found
                    .errors
                    .first()
                    .map_or_else(String::new, |e| format!(" ({e})"));
                return Err(format!(
                    "no system root certificates found{why}; name a CA file with \
                     prometheus_push_ca"
                ));
            }
            certs
        }
    };
    Ok(RootCerts::new_with_certs(&certs))
}

/// Fails on a certificate rustls would not take as a trust anchor (it would otherwise
/// be dropped without a word, and every push fail on an unknown issuer).
fn check_anchors(certs: &[Certificate<'static>]) -> Result<(), String> {
    let mut store = rustls::RootCertStore::empty();
    for (i, c) in certs.iter().enumerate() {
        store
            .add(c.der().to_vec().into())
            .map_err(|e| format!("certificate {}: {e}", i + 1))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_roots_from_files() {
        let dir = std::env::temp_dir().join(format!("ngxprom-roots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let e = load_roots(Some(missing.to_str().unwrap())).unwrap_err();
        assert!(
            e.contains("cannot read") && e.contains("missing.pem"),
            "{e}"
        );
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = load_roots(Some(empty.to_str().unwrap())).unwrap_err();
        assert!(e.contains("no PEM certificate"), "{e}");
        let junk = dir.join("junk.pem");
        std::fs::write(
            &junk,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = load_roots(Some(junk.to_str().unwrap())).unwrap_err();
        assert!(e.contains("junk.pem"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
        // The system's roots (Debian's ca-certificates).
        match load_roots(None) {
            Ok(RootCerts::Specific(c)) => assert!(!c.is_empty()),
            other => panic!("{other:?}"),
        }
    }
}
