//! Kafka's config-provider references (KIP-297, KIP-887) in property values:
//! `${env:NAME}`, `${file:PATH:KEY}` and `${dir:DIR:FILE}`, so that passwords and key
//! locations can stay out of the config file. Resolved once, when the config loads; an error
//! says where the secret was to come from, never the secret.
//!
//! Reads the files a reference names; writes none.

use super::ConfigError;

/// Replaces Kafka's config-provider references (KIP-297, KIP-887) in one property's value:
/// `${env:NAME}`, `${file:PATH:KEY}` (a key of a Java properties file) and
/// `${dir:DIR:FILE}` (a file's contents, without its final newline). Errors name the
/// property and where the secret was to come from, never the secret.
pub(super) fn resolve_references(property: &str, value: &str) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        let reference = &rest[start + 2..start + len];
        out.push_str(&rest[..start]);
        let fail =
            |why: String| ConfigError::Invalid(format!("{property}: ${{{reference}}}: {why}"));
        let Some((provider, spec)) = reference.split_once(':') else {
            // Not a reference (no provider): kept as written, as Kafka does.
            out.push_str(&rest[start..start + len + 1]);
            rest = &rest[start + len + 1..];
            continue;
        };
        let resolved = match provider {
            "env" => {
                let name = spec.strip_prefix(':').unwrap_or(spec);
                std::env::var(name)
                    .map_err(|_| fail(format!("environment variable {name} is not set")))?
            }
            "file" => {
                let (path, key) = spec
                    .rsplit_once(':')
                    .ok_or_else(|| fail("expected ${file:PATH:KEY}".into()))?;
                let text = std::fs::read_to_string(path)
                    .map_err(|e| fail(format!("reading {path}: {e}")))?;
                properties_value(&text, key)
                    .ok_or_else(|| fail(format!("{path} has no key {key}")))?
            }
            "dir" => {
                let (dir, file) = spec
                    .rsplit_once(':')
                    .ok_or_else(|| fail("expected ${dir:DIR:FILE}".into()))?;
                if file.contains('/') || file == ".." {
                    return Err(fail("the file name must not contain a path".into()));
                }
                let path = std::path::Path::new(dir).join(file);
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| fail(format!("reading {}: {e}", path.display())))?;
                let text = text.strip_suffix('\n').unwrap_or(&text);
                text.strip_suffix('\r').unwrap_or(text).to_string()
            }
            other => {
                return Err(fail(format!(
                    "unknown config provider {other:?} (env, file and dir are known)"
                )))
            }
        };
        out.push_str(&resolved);
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// One key of a Java properties file (`key=value`, `key: value` or `key value`; `#` and `!`
/// comments).
fn properties_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            return None;
        }
        let split = line.find(['=', ':', ' ', '\t'])?;
        let (k, v) = (&line[..split], &line[split + 1..]);
        (k.trim_end() == key).then(|| {
            v.trim_start_matches([' ', '\t'])
                .trim_start_matches(['=', ':'])
                .trim()
                .to_string()
        })
    })
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, Overrides};

    #[test]
    fn secrets_come_from_the_environment_files_and_directories() {
        let dir = tempfile::tempdir().expect("tmp");
        let props = dir.path().join("secrets.properties");
        std::fs::write(&props, "# c\nkeystore = /etc/ks.pem\nother=1\n").expect("write");
        std::fs::write(dir.path().join("pw"), "s3cret\n").expect("write");
        std::env::set_var("STRATA_TEST_SECRET_LOCATION", "/from/env.pem");
        let load = |v: String| {
            Config::load(
                None,
                Overrides {
                    properties: vec![
                        format!("ssl.keystore.location={v}"),
                        "config.providers=env,file".into(),
                        "config.providers.env.class=x".into(),
                    ],
                    ..Default::default()
                },
            )
        };
        let c = load("${env:STRATA_TEST_SECRET_LOCATION}".into()).expect("env");
        assert_eq!(c.props.get("ssl.keystore.location"), "/from/env.pem");
        let c = load(format!("${{file:{}:keystore}}", props.display())).expect("file");
        assert_eq!(c.props.get("ssl.keystore.location"), "/etc/ks.pem");
        let c = load(format!("x-${{dir:{}:pw}}", dir.path().display())).expect("dir");
        assert_eq!(c.props.get("ssl.keystore.location"), "x-s3cret");
        let err = load("${env:STRATA_TEST_NOT_SET_ANYWHERE}".into()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("ssl.keystore.location"), "{msg}");
        assert!(msg.contains("STRATA_TEST_NOT_SET_ANYWHERE"), "{msg}");
        let err = load(format!("${{file:{}:missing}}", props.display())).unwrap_err();
        assert!(!err.to_string().contains("/etc/ks.pem"), "{err}");
    }
}
