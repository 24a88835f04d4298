//! Kafka's `sasl.jaas.config` values: one or more JAAS login module entries,
//! `<LoginModuleClass> <flag> key="value" key2=value2;`. SASL mechanisms read their options
//! (credentials, validator settings) from here, so a broker configuration written for
//! Kafka carries over.
//!
//! No files of its own.

use std::collections::BTreeMap;

/// One login module entry of a JAAS configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JaasEntry {
    /// The login module class, e.g.
    /// `org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule`.
    pub login_module: String,
    /// `required`, `requisite`, `sufficient` or `optional`, lower-cased.
    pub flag: String,
    pub options: BTreeMap<String, String>,
}

/// Longest configuration parsed: the value comes from the operator, but a bound keeps a
/// pasted file from turning into a runaway parse.
const MAX_LEN: usize = 1 << 20;

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Quoted(String),
    Equals,
    Semicolon,
}

fn tokens(s: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '=' => {
                chars.next();
                out.push(Token::Equals);
            }
            ';' => {
                chars.next();
                out.push(Token::Semicolon);
            }
            '"' => {
                chars.next();
                let mut value = String::new();
                loop {
                    match chars.next() {
                        None => return Err("unterminated quoted value".into()),
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some('n') => value.push('\n'),
                            Some('t') => value.push('\t'),
                            Some(other) => value.push(other),
                            None => return Err("unterminated quoted value".into()),
                        },
                        Some(other) => value.push(other),
                    }
                }
                out.push(Token::Quoted(value));
            }
            '/' if s_starts(&chars, "//") => {
                // A `//` comment runs to the end of the line, as Java's tokenizer has it.
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '/' if s_starts(&chars, "/*") => {
                chars.next();
                chars.next();
                let mut prev = ' ';
                loop {
                    match chars.next() {
                        None => return Err("unterminated comment".into()),
                        Some('/') if prev == '*' => break,
                        Some(c) => prev = c,
                    }
                }
            }
            _ => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || c == '=' || c == ';' || c == '"' {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                out.push(Token::Word(word));
            }
        }
    }
    Ok(out)
}

fn s_starts(chars: &std::iter::Peekable<std::str::Chars<'_>>, prefix: &str) -> bool {
    chars.clone().take(prefix.len()).eq(prefix.chars())
}

/// Every entry of a JAAS configuration, in order.
pub fn parse(config: &str) -> Result<Vec<JaasEntry>, String> {
    if config.len() > MAX_LEN {
        return Err(format!("JAAS config is longer than {MAX_LEN} bytes"));
    }
    let toks = tokens(config).map_err(|e| format!("invalid JAAS config: {e}"))?;
    let mut it = toks.into_iter().peekable();
    let mut entries = Vec::new();
    while it.peek().is_some() {
        let login_module = match it.next() {
            Some(Token::Word(w)) => w,
            _ => return Err("invalid JAAS config: expected a login module class name".into()),
        };
        let flag = match it.next() {
            Some(Token::Word(w)) => w.to_ascii_lowercase(),
            _ => {
                return Err(format!(
                    "invalid JAAS config: expected a control flag after {login_module}"
                ))
            }
        };
        if !["required", "requisite", "sufficient", "optional"].contains(&flag.as_str()) {
            return Err(format!(
                "invalid JAAS config: invalid control flag {flag:?} (required, requisite, \
                 sufficient or optional)"
            ));
        }
        let mut options = BTreeMap::new();
        loop {
            match it.next() {
                Some(Token::Semicolon) => break,
                Some(Token::Word(key)) => {
                    if it.next() != Some(Token::Equals) {
                        return Err(format!(
                            "invalid JAAS config: value not specified for key '{key}'"
                        ));
                    }
                    let value = match it.next() {
                        Some(Token::Word(v)) | Some(Token::Quoted(v)) => v,
                        _ => {
                            return Err(format!(
                                "invalid JAAS config: value not specified for key '{key}'"
                            ))
                        }
                    };
                    options.insert(key, value);
                }
                None => {
                    return Err(format!(
                        "invalid JAAS config: the entry for {login_module} does not end with ';'"
                    ))
                }
                Some(_) => return Err("invalid JAAS config: expected an option name".into()),
            }
        }
        entries.push(JaasEntry {
            login_module,
            flag,
            options,
        });
    }
    Ok(entries)
}

/// The single entry a `sasl.jaas.config` value must hold, as Kafka requires of it.
pub fn parse_single(config: &str) -> Result<JaasEntry, String> {
    let mut entries = parse(config)?;
    if entries.len() != 1 {
        return Err(format!(
            "JAAS config property contains {} login modules, should be 1 module",
            entries.len()
        ));
    }
    Ok(entries.remove(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_quoted_and_bare() {
        let e = parse_single(
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule Required \
             unsecuredValidatorRequiredScope=\"read write\" \
             unsecuredValidatorAllowableClockSkewMs=3000 \
             quoted=\"a \\\"b\\\" c\";",
        )
        .unwrap();
        assert_eq!(
            e.login_module,
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule"
        );
        assert_eq!(e.flag, "required");
        assert_eq!(e.options["unsecuredValidatorRequiredScope"], "read write");
        assert_eq!(e.options["unsecuredValidatorAllowableClockSkewMs"], "3000");
        assert_eq!(e.options["quoted"], "a \"b\" c");
    }

    #[test]
    fn no_options_and_comments() {
        let e = parse_single("/* broker */ x.Module optional; // done").unwrap();
        assert_eq!(e.login_module, "x.Module");
        assert!(e.options.is_empty());
    }

    #[test]
    fn malformed_configs_are_refused() {
        assert!(parse_single("x.Module required").is_err());
        assert!(parse_single("x.Module maybe;").is_err());
        assert!(parse_single("x.Module required a=;").is_err());
        assert!(parse_single("x.Module required a;").is_err());
        assert!(parse_single("x.Module required a=\"open;").is_err());
        assert!(parse_single("a.M required; b.M required;").is_err());
        assert!(parse_single("").is_err());
    }
}
