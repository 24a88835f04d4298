//! PEM as Kafka's PEM key and trust stores hold it (KIP-651): inline values rewritten into
//! the line form the reader wants, the keystore's private key (plain, or encrypted PKCS#8
//! opened with `ssl.key.password`), and the reader's errors worded without the bytes they
//! quote. Apart from the listener's settings because this is where key material is handled.
//!
//! No files: the caller reads them and hands over the text.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;

/// An inline PEM value (`ssl.keystore.certificate.chain`, `ssl.keystore.key`,
/// `ssl.truststore.certificates`) in the line form the PEM reader wants. Kafka reads a
/// block's base64 with any whitespace in it, line breaks or not, so a value joined into one
/// line (`-----BEGIN CERTIFICATE----- MIIB... -----END CERTIFICATE-----`, what a properties
/// file's continued lines give) works there; here each block is rewritten with its base64 in
/// lines of 64. Text outside the blocks is dropped, as Kafka ignores it; a block with
/// RFC 1421 headers (`Proc-Type:`, a legacy encrypted key) and an unfinished block are kept
/// as they are, for the reader to report.
pub(super) fn pem_lines(text: &str) -> String {
    const BEGIN: &str = "-----BEGIN ";
    const DASHES: &str = "-----";
    let mut out = String::with_capacity(text.len() + text.len() / 64 + 64);
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let block = &rest[start..];
        let after = &block[BEGIN.len()..];
        let Some(label_len) = after.find(DASHES) else {
            out.push_str(block);
            return out;
        };
        let label = after[..label_len].trim();
        let body_and_rest = &after[label_len + DASHES.len()..];
        let end_marker = format!("-----END {label}-----");
        let Some(body_len) = body_and_rest.find(&end_marker) else {
            out.push_str(block);
            return out;
        };
        let body = &body_and_rest[..body_len];
        let block_len = BEGIN.len() + label_len + DASHES.len() + body_len + end_marker.len();
        if body.contains(':') {
            out.push_str(&block[..block_len]);
            out.push('\n');
        } else {
            let base64: Vec<u8> = body.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
            out.push_str(&format!("-----BEGIN {label}-----\n"));
            for line in base64.chunks(64) {
                out.push_str(&String::from_utf8_lossy(line));
                out.push('\n');
            }
            out.push_str(&end_marker);
            out.push('\n');
        }
        rest = &block[block_len..];
    }
    out
}

/// What is wrong with a PEM text, without the bytes the reader's own message quotes: those
/// can be a private key's.
pub(super) fn pem_error(e: &rustls_pki_types::pem::Error) -> String {
    use rustls_pki_types::pem::Error;
    match e {
        Error::MissingSectionEnd { .. } => "a BEGIN line without its END line".into(),
        Error::IllegalSectionStart { .. } => "a malformed BEGIN line".into(),
        Error::Base64Decode(_) => "a block that is not valid base64".into(),
        Error::NoItemsFound => "no PEM block of the expected kind".into(),
        other => other.to_string(),
    }
}

/// The keystore's private key: plain (PKCS#8, PKCS#1 or SEC1), or an encrypted PKCS#8 key
/// (`ENCRYPTED PRIVATE KEY`, PBES2) opened with `ssl.key.password`, as Kafka's PEM keystores
/// allow (KIP-651).
pub(super) fn private_key(pem: &[u8], password: &str) -> Result<PrivateKeyDer<'static>, String> {
    let text = String::from_utf8_lossy(pem);
    if text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(
            "the keystore's private key is in OpenSSL's legacy encrypted format; convert it to \
             encrypted PKCS#8 with `openssl pkcs8 -topk8 -v2 aes-256-cbc -in KEY.pem -out \
             KEY-pkcs8.pem`"
                .into(),
        );
    }
    const BEGIN: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----";
    const END: &str = "-----END ENCRYPTED PRIVATE KEY-----";
    let Some(start) = text.find(BEGIN) else {
        return PrivateKeyDer::from_pem_slice(pem)
            .map_err(|e| format!("keystore private key: {}", pem_error(&e)));
    };
    let end = text[start..]
        .find(END)
        .map(|e| start + e + END.len())
        .ok_or("keystore private key: ENCRYPTED PRIVATE KEY block without its END line")?;
    if password.is_empty() {
        return Err("the keystore's private key is encrypted: set ssl.key.password".into());
    }
    let (_, document) = pkcs8::der::Document::from_pem(&text[start..end])
        .map_err(|e| format!("keystore private key: {e}"))?;
    let encrypted = pkcs8::EncryptedPrivateKeyInfo::try_from(document.as_bytes())
        .map_err(|e| format!("keystore private key: {e}"))?;
    let plain = encrypted.decrypt(password).map_err(|_| {
        "the keystore's private key does not decrypt with ssl.key.password (wrong password, or \
         an encryption other than PBES2 with AES)"
            .to_string()
    })?;
    Ok(PrivateKeyDer::Pkcs8(plain.as_bytes().to_vec().into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::tls::TlsServer;

    #[test]
    fn an_encrypted_key_opens_with_its_password_only() {
        // The test key as encrypted PKCS#8 (PBES2: PBKDF2-HMAC-SHA256, AES-256-CBC), password
        // "broker-secret".
        let pem = include_bytes!("../testdata/encrypted-key.pem");
        let key = private_key(pem, "broker-secret").expect("decrypts");
        assert!(matches!(key, PrivateKeyDer::Pkcs8(_)));
        let err = private_key(pem, "guess-xyz").expect_err("refused");
        assert!(
            err.contains("ssl.key.password") && !err.contains("guess-xyz"),
            "{err}"
        );
        let err = private_key(pem, "").expect_err("needs a password");
        assert!(err.contains("ssl.key.password"), "{err}");
    }

    /// A PEM text as a properties file's continued lines give it: one line, the line breaks
    /// turned into spaces.
    fn one_line(pem: &str) -> String {
        pem.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn inline_pem_is_read_with_or_without_its_line_breaks() {
        let pem = include_str!("../testdata/server.pem");
        let encrypted = include_str!("../testdata/encrypted-key.pem");
        let chain_end = pem
            .find("-----BEGIN CERTIFICATE-----")
            .expect("a certificate");
        let (key, chain) = pem.split_at(chain_end);
        let load = |chain: &str, key: &str, password: &str| {
            let c = crate::config::Config::load(
                None,
                crate::config::Overrides {
                    properties: vec![
                        format!("ssl.keystore.certificate.chain={chain}"),
                        format!("ssl.keystore.key={key}"),
                        format!("ssl.key.password={password}"),
                        format!("ssl.truststore.certificates={chain}"),
                        "ssl.client.auth=required".into(),
                    ],
                    ..Default::default()
                },
            )
            .expect("load");
            TlsServer::new(&c.props, "SSL", true).map(|s| s.describe())
        };
        let as_given = load(chain, key, "").expect("the PEM as written");
        assert_eq!(
            load(&one_line(chain), &one_line(key), "").expect("one line"),
            as_given
        );
        // what surrounds the blocks (openssl's "Bag Attributes", a comment) is ignored
        let noisy = format!("Bag Attributes\n    friendlyName: broker\n{chain}trailing text");
        assert_eq!(load(&noisy, key, "").expect("noisy"), as_given);
        assert!(load(&one_line(chain), &one_line(encrypted), "broker-secret").is_ok());
        assert_eq!(
            pem_lines(&one_line(pem)),
            pem,
            "a 64-column PEM comes back as it was"
        );
    }

    #[test]
    fn a_malformed_key_is_reported_without_its_bytes() {
        let pem = include_str!("../testdata/server.pem");
        let key_end = pem
            .find("-----BEGIN CERTIFICATE-----")
            .expect("a certificate");
        let key = one_line(&pem[..key_end]);
        let secret = &key[28..60];
        let mut bad_base64: Vec<String> = pem_lines(&key).lines().map(String::from).collect();
        bad_base64[2].push('!');
        for broken in [
            key.clone(),
            key.replace("-----END PRIVATE KEY-----", ""),
            bad_base64.join("\n"),
        ] {
            let err = private_key(broken.as_bytes(), "").expect_err("refused");
            assert!(
                !err.contains(secret) && !err.contains("77, 73, 71"),
                "{err}"
            );
        }
        let unfinished = pem_lines(&key.replace("-----END PRIVATE KEY-----", ""));
        assert!(unfinished.starts_with("-----BEGIN PRIVATE KEY-----"));
    }
}
