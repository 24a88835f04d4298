//! Who a client certificate names: its subject, read from the DER and printed as Java's
//! `X500Principal.getName()` prints it (RFC 2253), and Kafka's `ssl.principal.mapping.rules`,
//! which turn that subject into a principal's name. Apart from the TLS settings because both
//! must follow Kafka's (Java's) behaviour to the letter; the rules are tested with Kafka's
//! own cases.
//!
//! No files.

/// Kafka's `ssl.principal.mapping.rules`: `DEFAULT` (the subject as it is) and
/// `RULE:pattern/replacement/` with an optional `L` or `U` (lower- or upper-case the
/// result), tried in order; the first rule whose pattern matches the whole subject wins.
#[derive(Debug)]
pub(super) struct PrincipalMapper {
    rules: Vec<Rule>,
}

#[derive(Debug)]
enum Rule {
    Default,
    Replace {
        whole: regex::Regex,
        pattern: regex::Regex,
        replacement: String,
        case: Option<char>,
    },
}

impl PrincipalMapper {
    pub(super) fn parse(rules: &str) -> Result<Self, String> {
        let bad =
            |r: &str, why: &str| format!("ssl.principal.mapping.rules: invalid rule {r:?}: {why}");
        let mut out = Vec::new();
        let mut rest = rules.trim();
        loop {
            // Empty entries (`,,`) are skipped, as Kafka skips them.
            rest = rest.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
            if rest.is_empty() {
                break;
            }
            if let Some(tail) = rest.strip_prefix("DEFAULT") {
                out.push(Rule::Default);
                rest = tail.trim_start();
            } else if let Some(body) = rest.strip_prefix("RULE:") {
                // pattern/replacement/ — a backslash escapes the next character.
                let mut parts = Vec::new();
                let mut cur = String::new();
                let mut chars = body.char_indices();
                let mut end = body.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            cur.push('\\');
                            if let Some((_, n)) = chars.next() {
                                cur.push(n);
                            }
                        }
                        '/' => {
                            parts.push(std::mem::take(&mut cur));
                            if parts.len() == 2 {
                                end = i + 1;
                                break;
                            }
                        }
                        _ => cur.push(c),
                    }
                }
                if parts.len() != 2 {
                    return Err(bad(rest, "expected RULE:pattern/replacement/[LU]"));
                }
                let mut tail = &body[end..];
                let case = match tail.chars().next() {
                    Some(c @ ('L' | 'U')) => {
                        tail = &tail[1..];
                        Some(c)
                    }
                    _ => None,
                };
                let whole = regex::Regex::new(&format!("^(?:{})$", parts[0]))
                    .map_err(|e| bad(rest, &e.to_string()))?;
                let pattern =
                    regex::Regex::new(&parts[0]).map_err(|e| bad(rest, &e.to_string()))?;
                let groups = pattern.captures_len() - 1;
                out.push(Rule::Replace {
                    whole,
                    pattern,
                    replacement: java_replacement(&parts[1], groups),
                    case,
                });
                rest = tail.trim_start();
            } else {
                return Err(bad(
                    rest,
                    "rules are DEFAULT or RULE:pattern/replacement/[LU]",
                ));
            }
            if !rest.is_empty() && !rest.starts_with(',') {
                return Err(bad(rest, "rules are separated by commas"));
            }
        }
        // No rules at all (an empty setting) maps nothing, as in Kafka.
        Ok(PrincipalMapper { rules: out })
    }

    /// The principal name for a subject, or `None` when no rule applies.
    pub(super) fn map(&self, dn: &str) -> Option<String> {
        self.rules.iter().find_map(|rule| match rule {
            Rule::Default => Some(dn.to_string()),
            Rule::Replace {
                whole,
                pattern,
                replacement,
                case,
            } => {
                if !whole.is_match(dn) {
                    return None;
                }
                let out = pattern.replace_all(dn, replacement.as_str()).into_owned();
                Some(match case {
                    Some('L') => out.to_lowercase(),
                    Some('U') => out.to_uppercase(),
                    _ => out,
                })
            }
        })
    }
}

/// Java's replacement syntax (`$1`, `\$` for a literal) in the `regex` crate's (`${1}`, `$$`).
/// As in Kafka, `$n` names the longest run of digits that is a group of the pattern, and a
/// reference to a group the pattern does not have is literal text.
fn java_replacement(java: &str, groups: usize) -> String {
    let mut out = String::new();
    let mut chars = java.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('$') => out.push_str("$$"),
                Some(n) => out.push(n),
                None => {}
            },
            '$' => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                let values: Vec<usize> = digits.bytes().map(|b| (b - b'0') as usize).collect();
                match values.first() {
                    Some(&first) if first <= groups => {
                        let mut group = first;
                        let mut used = 1;
                        while let Some(&d) = values.get(used) {
                            if group * 10 + d > groups {
                                break;
                            }
                            group = group * 10 + d;
                            used += 1;
                        }
                        out.push_str(&format!("${{{group}}}"));
                        out.push_str(&digits[used..]);
                    }
                    _ => {
                        out.push_str("$$");
                        out.push_str(&digits);
                    }
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// One DER element: tag, contents, and what follows. Bounded by the input's length.
fn der(input: &[u8]) -> Result<(u8, &[u8], &[u8]), String> {
    let short = || "certificate: truncated DER".to_string();
    let (&tag, rest) = input.split_first().ok_or_else(short)?;
    let (&first, mut rest) = rest.split_first().ok_or_else(short)?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return Err("certificate: bad DER length".into());
        }
        let len = rest[..n].iter().fold(0usize, |a, &b| (a << 8) | b as usize);
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return Err(short());
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

fn oid_string(bytes: &[u8]) -> String {
    let mut parts: Vec<u64> = Vec::new();
    let mut acc: u64 = 0;
    for &b in bytes {
        acc = (acc << 7) | (b & 0x7f) as u64;
        if b & 0x80 == 0 {
            if parts.is_empty() {
                let first = (acc / 40).min(2);
                parts.push(first);
                parts.push(acc - first * 40);
            } else {
                parts.push(acc);
            }
            acc = 0;
        }
    }
    parts
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

/// The keywords Java's `X500Principal.getName()` (RFC 2253) prints.
fn keyword(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

fn decode_string(tag: u8, bytes: &[u8]) -> Option<String> {
    match tag {
        0x0c | 0x13 | 0x16 | 0x12 | 0x1a => std::str::from_utf8(bytes).ok().map(str::to_string),
        0x14 => Some(bytes.iter().map(|&b| b as char).collect()),
        0x1e => {
            let units: Vec<u16> = bytes
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))
                .collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

fn escape_rfc2253(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A certificate's subject as Java's `X500Principal.getName()` gives it (RFC 2253): the
/// last RDN first, `CN=alice,OU=dev,O=Strata`.
pub(super) fn subject_rfc2253(cert_der: &[u8]) -> Result<String, String> {
    let (_, cert, _) = der(cert_der)?;
    let (_, tbs, _) = der(cert)?;
    let mut rest = tbs;
    let (tag, _, after) = der(rest)?;
    if tag == 0xa0 {
        rest = after; // version
    }
    for _ in 0..4 {
        // serial, signature algorithm, issuer, validity
        rest = der(rest)?.2;
    }
    let (_, mut name, _) = der(rest)?;
    let mut rdns = Vec::new();
    while !name.is_empty() {
        let (_, mut set, next) = der(name)?;
        name = next;
        let mut avas = Vec::new();
        while !set.is_empty() {
            let (_, ava, next) = der(set)?;
            set = next;
            let (_, oid, value) = der(ava)?;
            let oid = oid_string(oid);
            let (vtag, vbytes, _) = der(value)?;
            let text = match (keyword(&oid), decode_string(vtag, vbytes)) {
                (Some(k), Some(s)) => format!("{k}={}", escape_rfc2253(&s)),
                (k, _) => {
                    let whole_len = value.len() - der(value)?.2.len();
                    let hex: String = value[..whole_len]
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect();
                    format!("{}=#{hex}", k.map(str::to_string).unwrap_or(oid))
                }
            };
            avas.push(text);
        }
        rdns.push(avas.join("+"));
    }
    rdns.reverse();
    Ok(rdns.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principal_mapping_rules_apply_as_in_kafka() {
        let m = PrincipalMapper::parse(
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,RULE:^CN=([a-z]+),OU=(.*?),O=.*$/$1@$2/L, DEFAULT",
        )
        .expect("parses");
        assert_eq!(
            m.map("CN=kafka1,OU=ServiceUsers,O=Org").as_deref(),
            Some("kafka1")
        );
        assert_eq!(
            m.map("CN=alice,OU=DEV,O=Strata").as_deref(),
            Some("alice@dev")
        );
        assert_eq!(
            m.map("CN=Bob Smith,O=x").as_deref(),
            Some("CN=Bob Smith,O=x")
        );
        let upper = PrincipalMapper::parse("RULE:^CN=(.*?),.*$/$1/U").expect("parses");
        assert_eq!(upper.map("CN=alice,O=x").as_deref(), Some("ALICE"));
        assert_eq!(upper.map("O=x"), None);
        assert_eq!(
            PrincipalMapper::parse("DEFAULT")
                .expect("default")
                .map("CN=a")
                .as_deref(),
            Some("CN=a")
        );
        assert!(PrincipalMapper::parse("RULE:^CN=(.*)$").is_err());
        assert!(PrincipalMapper::parse("SOMETHING").is_err());
    }

    #[test]
    fn rules_parse_and_map_as_kafkas_own_cases() {
        for bad in [
            "default",
            "DEFAUL",
            "DEFAULT/L",
            "DEFAULT/U",
            "RULE:CN=(.*?),OU=ServiceUsers.*/$1",
            "rule:^CN=(.*?),OU=ServiceUsers.*$/$1/",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L/U",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/L",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/LU",
        ] {
            assert!(PrincipalMapper::parse(bad).is_err(), "{bad}");
        }
        let m = PrincipalMapper::parse(
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L, \
             RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L, \
             RULE:^cn=(.*?),ou=(.*?),dc=(.*?),dc=(.*?)$/$1@$2/U, \
             RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/U, DEFAULT",
        )
        .expect("parses");
        let name = |dn: &str| m.map(dn).unwrap_or_default();
        assert_eq!(name("CN=Duke,OU=ServiceUsers,O=Org,C=US"), "duke");
        assert_eq!(
            name("CN=Duke,OU=SME,O=mycp,L=Fulton,ST=MD,C=US"),
            "duke@sme"
        );
        assert_eq!(name("cn=duke,ou=sme,dc=mycp,dc=com"), "DUKE@SME");
        assert_eq!(name("cN=duke,OU=JavaSoft,O=Sun Microsystems"), "DUKE");
        assert_eq!(
            name("OU=JavaSoft,O=Sun Microsystems,C=US"),
            "OU=JavaSoft,O=Sun Microsystems,C=US"
        );
        let escaped =
            PrincipalMapper::parse("RULE:^CN=((\\\\, *|\\w)+)(,.*|$)/$1/,DEFAULT").expect("parses");
        assert_eq!(
            escaped
                .map("CN=Tkac\\, Adam,OU=ITZ,DC=geodis,DC=cz")
                .as_deref(),
            Some("Tkac\\, Adam")
        );
        let skipped = PrincipalMapper::parse(",,RULE:^(.*)$/x$1/,,,DEFAULT,,").expect("parses");
        assert_eq!(skipped.map("CN=a").as_deref(), Some("xCN=a"));
        assert_eq!(PrincipalMapper::parse("").expect("empty").map("CN=a"), None);
        let slash = PrincipalMapper::parse("RULE:^CN=a\\/b$/a-b/").expect("escaped slash");
        assert_eq!(slash.map("CN=a/b").as_deref(), Some("a-b"));
    }

    #[test]
    fn java_replacements_become_regex_replacements() {
        assert_eq!(java_replacement("$1@$2x", 2), "${1}@${2}x");
        assert_eq!(java_replacement("\\$1", 1), "$$1");
        assert_eq!(java_replacement("$12", 1), "${1}2");
        assert_eq!(java_replacement("$12", 12), "${12}");
        assert_eq!(java_replacement("$1@$4", 3), "${1}@$$4");
    }

    #[test]
    fn subject_escaping_follows_rfc_2253() {
        assert_eq!(escape_rfc2253("a,b"), "a\\,b");
        assert_eq!(escape_rfc2253(" x "), "\\ x\\ ");
        assert_eq!(escape_rfc2253("#1"), "\\#1");
    }

    #[test]
    fn the_subject_reads_as_java_prints_it() {
        // Subject C=US, O="Strata, Inc.", OU=dev, emailAddress=a@x.io, CN=alice.
        let der = include_bytes!("../testdata/subject.der");
        assert_eq!(
            subject_rfc2253(der).expect("parses"),
            "CN=alice,1.2.840.113549.1.9.1=#16066140782e696f,OU=dev,O=Strata\\, Inc.,C=US"
        );
        for cut in 0..der.len() {
            let _ = subject_rfc2253(&der[..cut]);
        }
    }

    #[test]
    fn truncated_der_is_an_error_not_a_panic() {
        assert!(subject_rfc2253(&[]).is_err());
        assert!(subject_rfc2253(&[0x30, 0x82, 0xff]).is_err());
        assert!(subject_rfc2253(&[0x30, 0x03, 0x30, 0x01]).is_err());
    }
}
