//! Kafka's `sasl.jaas.config` syntax: `<LoginModuleClass> <flag> name=value ... ;`, values
//! bare words or double-quoted strings with backslash escapes, as Java's `StreamTokenizer`
//! reads them in Kafka's `JaasConfig`. Kafka takes exactly one login module from the
//! property; so does this.
//!
//! No files.

use std::collections::BTreeMap;

/// One login module entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginModule {
    pub class: String,
    pub flag: String,
    pub options: BTreeMap<String, String>,
}

const FLAGS: [&str; 4] = ["required", "requisite", "sufficient", "optional"];

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Quoted(String),
    Equals,
    Semicolon,
}

fn is_word_char(c: char) -> bool {
    !c.is_whitespace() && c != '=' && c != ';' && c != '"'
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '=' {
            chars.next();
            tokens.push(Token::Equals);
        } else if c == ';' {
            chars.next();
            tokens.push(Token::Semicolon);
        } else if c == '"' {
            chars.next();
            let mut value = String::new();
            loop {
                match chars.next() {
                    None | Some('\n') | Some('\r') => {
                        return Err("a quoted value is not closed".into())
                    }
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        None => return Err("a quoted value is not closed".into()),
                        Some('n') => value.push('\n'),
                        Some('t') => value.push('\t'),
                        Some('r') => value.push('\r'),
                        Some(other) => value.push(other),
                    },
                    Some(other) => value.push(other),
                }
            }
            tokens.push(Token::Quoted(value));
        } else {
            let mut word = String::new();
            while let Some(&c) = chars.peek() {
                if !is_word_char(c) {
                    break;
                }
                word.push(c);
                chars.next();
            }
            tokens.push(Token::Word(word));
        }
    }
    Ok(tokens)
}

/// Parses a `sasl.jaas.config` value holding one login module. Errors never quote values
/// (they may be passwords).
pub fn parse(text: &str) -> Result<LoginModule, String> {
    let tokens = tokenize(text).map_err(|e| format!("sasl.jaas.config: {e}"))?;
    let mut modules = Vec::new();
    let mut it = tokens.into_iter().peekable();
    while it.peek().is_some() {
        let class = match it.next() {
            Some(Token::Word(w)) => w,
            _ => return Err("sasl.jaas.config: expected a login module class name".into()),
        };
        let flag = match it.next() {
            Some(Token::Word(w)) if FLAGS.contains(&w.to_ascii_lowercase().as_str()) => {
                w.to_ascii_lowercase()
            }
            _ => {
                return Err(format!(
                    "sasl.jaas.config: expected a control flag (required, requisite, sufficient or optional) after {class}"
                ))
            }
        };
        let mut options = BTreeMap::new();
        loop {
            match it.next() {
                Some(Token::Semicolon) => break,
                Some(Token::Word(name)) => {
                    if it.next() != Some(Token::Equals) {
                        return Err(format!(
                            "sasl.jaas.config: expected '=' after option {name}"
                        ));
                    }
                    let value = match it.next() {
                        Some(Token::Word(v)) | Some(Token::Quoted(v)) => v,
                        _ => return Err(format!("sasl.jaas.config: option {name} has no value")),
                    };
                    options.insert(name, value);
                }
                None => {
                    return Err("sasl.jaas.config: the login module does not end with ';'".into())
                }
                Some(_) => return Err("sasl.jaas.config: expected an option name".into()),
            }
        }
        modules.push(LoginModule {
            class,
            flag,
            options,
        });
    }
    match modules.len() {
        1 => Ok(modules.remove(0)),
        n => Err(format!(
            "sasl.jaas.config holds {n} login modules, it must hold exactly 1"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_plain_login_module_parses_with_quoted_and_escaped_values() {
        let m = parse(
            r#"org.apache.kafka.common.security.plain.PlainLoginModule required
               username="admin" password="admin-secret"
               user_admin="admin-secret" user_alice="al\"ice\\sec ret;=" user_bob=bare;"#,
        )
        .expect("parses");
        assert_eq!(
            m.class,
            "org.apache.kafka.common.security.plain.PlainLoginModule"
        );
        assert_eq!(m.flag, "required");
        assert_eq!(m.options["username"], "admin");
        assert_eq!(m.options["user_admin"], "admin-secret");
        assert_eq!(m.options["user_alice"], "al\"ice\\sec ret;=");
        assert_eq!(m.options["user_bob"], "bare");
    }

    #[test]
    fn malformed_configs_are_refused_without_quoting_values() {
        for bad in [
            "",
            "Module required a=\"x\"",
            "Module always a=\"x\";",
            "Module required a=;",
            "Module required a=\"unterminated;",
            "A required; B required;",
        ] {
            let e = parse(bad).expect_err(bad);
            assert!(!e.contains("unterminated"), "{e}");
        }
    }
}
