//! The JAAS configuration text Kafka reads from `sasl.jaas.config` settings:
//! `<LoginModule class> <flag> key="value" ...;`. Kafka's PLAIN users are the
//! `user_<name>="<password>"` options of a `PlainLoginModule`; a broker's own credentials
//! for inter-broker connections are its `username` and `password`.
//!
//! [`parse_file`] reads the file form a JVM reads from `-Djava.security.auth.login.config`
//! (`Client { ... };` sections), where Kafka finds its ZooKeeper login.

use std::collections::BTreeMap;

/// One login module entry.
#[derive(Clone, PartialEq, Eq)]
pub struct LoginModule {
    /// The class name, e.g. `org.apache.kafka.common.security.plain.PlainLoginModule`.
    pub class: String,
    /// `required`, `requisite`, `sufficient` or `optional`.
    pub flag: String,
    /// The options, in order of their names.
    pub options: BTreeMap<String, String>,
}

impl std::fmt::Debug for LoginModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Options hold passwords: only their names are printed.
        f.debug_struct("LoginModule")
            .field("class", &self.class)
            .field("flag", &self.flag)
            .field("options", &self.options.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl LoginModule {
    /// The PLAIN users a broker accepts: `user_<name>="<password>"`.
    pub fn plain_users(&self) -> BTreeMap<String, String> {
        self.options
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("user_").map(|name| (name.to_string(), v.clone())))
            .collect()
    }

    /// `username` and `password`, the credentials this process logs in with.
    pub fn login(&self) -> Option<(String, String)> {
        Some((self.options.get("username")?.clone(), self.options.get("password")?.clone()))
    }

    /// The entry as `sasl.jaas.config` text, which [`parse`] reads back to this entry.
    pub fn to_text(&self) -> String {
        let mut out = format!("{} {}", self.class, self.flag);
        for (key, value) in &self.options {
            let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
            out.push_str(&format!(" {key}=\"{escaped}\""));
        }
        out.push(';');
        out
    }
}

/// Parses the value of a `sasl.jaas.config` setting: one or more modules, each ended by ';'.
///
/// # Errors
/// A message naming what is wrong and where (never an option's value).
pub fn parse(text: &str) -> Result<Vec<LoginModule>, String> {
    let mut tokens = Tokens { chars: text.chars().collect(), at: 0 };
    let mut modules = Vec::new();
    loop {
        tokens.skip_space();
        if tokens.done() {
            break;
        }
        let class = tokens.word().ok_or_else(|| format!("expected a login module class at character {}", tokens.at))?;
        tokens.skip_space();
        let flag = tokens.word().ok_or_else(|| format!("expected a control flag after {class}"))?;
        if !matches!(flag.to_ascii_lowercase().as_str(), "required" | "requisite" | "sufficient" | "optional") {
            return Err(format!("invalid control flag {flag:?} after {class}; use required"));
        }
        let mut options = BTreeMap::new();
        loop {
            tokens.skip_space();
            if tokens.eat(';') {
                break;
            }
            if tokens.done() {
                return Err(format!("the entry for {class} does not end with ';'"));
            }
            let key = tokens.word().ok_or_else(|| format!("expected an option name at character {}", tokens.at))?;
            tokens.skip_space();
            if !tokens.eat('=') {
                return Err(format!("option {key} of {class} has no '='"));
            }
            tokens.skip_space();
            let value = if tokens.eat('"') {
                tokens.quoted().ok_or_else(|| format!("the value of option {key} has no closing quote"))?
            } else {
                tokens.word().ok_or_else(|| format!("option {key} of {class} has no value"))?
            };
            options.insert(key, value);
        }
        modules.push(LoginModule { class, flag, options });
    }
    if modules.is_empty() {
        return Err("no login module".into());
    }
    Ok(modules)
}

/// A JAAS file's sections by name.
pub type Sections = BTreeMap<String, Vec<LoginModule>>;

/// Reads and parses the JAAS file at `path` (see [`parse_file`]).
///
/// # Errors
/// "cannot read the JAAS file ..." or the parser's message.
pub fn read_file(path: &std::path::Path) -> Result<Sections, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read the JAAS file {}: {e}", path.display()))?;
    parse_file(&text)
}

/// The `username` and `password` a process logs in with for SASL `mechanism`: those of
/// the mechanism's login module when the text holds several (a `KafkaServer` section with
/// a PLAIN and a SCRAM module), else of the first module that has them.
pub fn login_for(modules: &[LoginModule], mechanism: &str) -> Option<(String, String)> {
    let class = if mechanism.eq_ignore_ascii_case("PLAIN") { ".PlainLoginModule" } else { ".ScramLoginModule" };
    modules.iter().filter(|m| m.class.ends_with(class)).chain(modules).find_map(LoginModule::login)
}

/// Parses a JAAS file: named sections, each `Name { <modules> };`, with `//` and `/* */`
/// comments. Returns the sections by name.
///
/// # Errors
/// A message naming the section and what is wrong (never an option's value).
pub fn parse_file(text: &str) -> Result<Sections, String> {
    let chars = strip_comments(text);
    let mut sections = BTreeMap::new();
    let mut at = 0;
    loop {
        while chars.get(at).is_some_and(|c| c.is_whitespace()) {
            at += 1;
        }
        if at >= chars.len() {
            break;
        }
        let start = at;
        while chars.get(at).is_some_and(|c| !c.is_whitespace() && *c != '{') {
            at += 1;
        }
        let name: String = chars[start..at].iter().collect();
        while chars.get(at).is_some_and(|c| c.is_whitespace()) {
            at += 1;
        }
        if chars.get(at) != Some(&'{') {
            return Err(format!("expected '{{' after section name {name:?}"));
        }
        at += 1;
        let body_start = at;
        let mut quoted = false;
        loop {
            match chars.get(at) {
                None => return Err(format!("section {name} has no closing '}}'")),
                Some('\\') if quoted => at += 1,
                Some('"') => quoted = !quoted,
                Some('}') if !quoted => break,
                Some(_) => {}
            }
            at += 1;
        }
        let body: String = chars[body_start..at].iter().collect();
        at += 1;
        while chars.get(at).is_some_and(|c| c.is_whitespace()) {
            at += 1;
        }
        if chars.get(at) == Some(&';') {
            at += 1;
        }
        let modules = parse(&body).map_err(|e| format!("section {name}: {e}"))?;
        if sections.insert(name.clone(), modules).is_some() {
            return Err(format!("section {name} appears twice"));
        }
    }
    Ok(sections)
}

/// The text without `//` and `/* */` comments (kept inside quoted values).
fn strip_comments(text: &str) -> Vec<char> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::with_capacity(chars.len());
    let (mut at, mut quoted) = (0, false);
    while at < chars.len() {
        let c = chars[at];
        let next = chars.get(at + 1).copied();
        if quoted {
            out.push(c);
            if c == '\\' {
                if let Some(n) = next {
                    out.push(n);
                    at += 1;
                }
            } else if c == '"' {
                quoted = false;
            }
        } else if c == '/' && next == Some('/') {
            while at < chars.len() && chars[at] != '\n' {
                at += 1;
            }
            continue;
        } else if c == '/' && next == Some('*') {
            at += 2;
            while at < chars.len() && !(chars[at] == '*' && chars.get(at + 1) == Some(&'/')) {
                at += 1;
            }
            at += 2;
            out.push(' ');
            continue;
        } else {
            quoted = c == '"';
            out.push(c);
        }
        at += 1;
    }
    out
}

struct Tokens {
    chars: Vec<char>,
    at: usize,
}

impl Tokens {
    fn done(&self) -> bool {
        self.at >= self.chars.len()
    }

    fn skip_space(&mut self) {
        while self.chars.get(self.at).is_some_and(|c| c.is_whitespace()) {
            self.at += 1;
        }
    }

    fn eat(&mut self, c: char) -> bool {
        if self.chars.get(self.at) == Some(&c) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn word(&mut self) -> Option<String> {
        let start = self.at;
        while self.chars.get(self.at).is_some_and(|c| !c.is_whitespace() && !matches!(c, '=' | ';' | '"')) {
            self.at += 1;
        }
        (self.at > start).then(|| self.chars[start..self.at].iter().collect())
    }

    /// A quoted value after its opening quote; `\"` and `\\` are escapes.
    fn quoted(&mut self) -> Option<String> {
        let mut out = String::new();
        loop {
            let c = *self.chars.get(self.at)?;
            self.at += 1;
            match c {
                '"' => return Some(out),
                '\\' => {
                    out.push(*self.chars.get(self.at)?);
                    self.at += 1;
                }
                c => out.push(c),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafkas_documented_examples_parse() {
        let plain = parse(
            r#"org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="admin-secret" user_admin="admin-secret" user_alice="alice-secret";"#,
        )
        .unwrap();
        assert_eq!(plain.len(), 1);
        assert_eq!(plain[0].class, "org.apache.kafka.common.security.plain.PlainLoginModule");
        assert_eq!(plain[0].login(), Some(("admin".into(), "admin-secret".into())));
        let users = plain[0].plain_users();
        assert_eq!(users.get("alice").map(String::as_str), Some("alice-secret"));
        assert_eq!(users.len(), 2);
        let scram = parse(
            "org.apache.kafka.common.security.scram.ScramLoginModule required\n  username=\"admin\"\n  password=\"a \\\"quoted\\\" pass;word\";\n",
        )
        .unwrap();
        assert_eq!(scram[0].login().unwrap().1, "a \"quoted\" pass;word");
        let unquoted = parse("x.Module required debug=true;").unwrap();
        assert_eq!(unquoted[0].options["debug"], "true");
    }

    #[test]
    fn jaas_files_read_as_a_jvm_reads_them() {
        let text = r#"
// Kafka's broker side
KafkaServer {
   org.apache.kafka.common.security.plain.PlainLoginModule required
   username="admin" password="a}b//c" user_admin="x";
};
/* ZooKeeper login */
Client {
   org.apache.zookeeper.server.auth.DigestLoginModule required
   username="kafka"
   password="kafka-secret";
}
"#;
        let sections = parse_file(text).unwrap();
        assert_eq!(sections.keys().collect::<Vec<_>>(), ["Client", "KafkaServer"]);
        assert_eq!(sections["Client"][0].class, "org.apache.zookeeper.server.auth.DigestLoginModule");
        assert_eq!(sections["Client"][0].login(), Some(("kafka".into(), "kafka-secret".into())));
        assert_eq!(sections["KafkaServer"][0].login().unwrap().1, "a}b//c");
        assert!(parse_file("").unwrap().is_empty());
        for (text, want) in [
            ("Client", "expected '{'"),
            ("Client { x.M required a=\"b\";", "no closing"),
            ("Client { };", "section Client: no login module"),
            ("A { x.M required; }; A { x.M required; };", "appears twice"),
        ] {
            let e = parse_file(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn mistakes_are_named_and_secrets_never_printed() {
        for (text, want) in [
            ("", "no login module"),
            ("x.Module", "control flag"),
            ("x.Module maybe;", "invalid control flag"),
            ("x.Module required username=\"a\"", "does not end"),
            ("x.Module required username \"a\";", "has no '='"),
            ("x.Module required password=\"open;", "closing quote"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        let m = parse("x.Module required password=\"hunter2\";").unwrap();
        let tricky = parse("x.M required a=\"q\\\"uo;te\\\\\" b=plain;").unwrap();
        assert_eq!(parse(&tricky[0].to_text()).unwrap(), tricky);
        assert!(!format!("{m:?}").contains("hunter2"));
    }
}
