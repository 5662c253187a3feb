//! TLS as Kafka configures it (`ssl.*` settings), on rustls: PEM key stores and trust
//! stores from files or inline text, the server's client-certificate policy
//! (`ssl.client.auth`), the client's host name check (`ssl.endpoint.identification.algorithm`),
//! and the principal a client certificate stands for (`ssl.principal.mapping.rules`).

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// `ssl.client.auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// No client certificate is asked for.
    #[default]
    None,
    /// Asked for; a client without one connects as ANONYMOUS.
    Requested,
    /// Required; a client without a trusted one is refused during the handshake.
    Required,
}

impl std::str::FromStr for ClientAuth {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" | "" => Ok(ClientAuth::None),
            "requested" => Ok(ClientAuth::Requested),
            "required" => Ok(ClientAuth::Required),
            other => Err(format!("{other:?} is not none, requested or required")),
        }
    }
}

/// Where one listener's (or one client's) TLS material comes from: Kafka's settings,
/// already resolved for the listener (`listener.name.<l>.ssl.*` over `ssl.*`).
#[derive(Clone, Default)]
pub struct TlsSettings {
    /// `ssl.keystore.type`: PEM (PKCS12 and JKS are refused with a conversion hint).
    pub keystore_type: Option<String>,
    /// `ssl.keystore.location`: a PEM file holding the private key and its certificate chain.
    pub keystore_location: Option<PathBuf>,
    /// `ssl.keystore.key`: the private key as PEM text.
    pub keystore_key: Option<String>,
    /// `ssl.keystore.certificate.chain`: the certificate chain as PEM text.
    pub keystore_certificate_chain: Option<String>,
    /// `ssl.key.password`: encrypted keys are not read; set so that the error can say so.
    pub key_password: Option<String>,
    /// `ssl.truststore.type`.
    pub truststore_type: Option<String>,
    /// `ssl.truststore.location`: a PEM file of trusted CA certificates.
    pub truststore_location: Option<PathBuf>,
    /// `ssl.truststore.certificates`: trusted CA certificates as PEM text.
    pub truststore_certificates: Option<String>,
    /// `ssl.client.auth`.
    pub client_auth: ClientAuth,
    /// `ssl.enabled.protocols`: TLSv1.2 and/or TLSv1.3.
    pub enabled_protocols: Vec<String>,
    /// `ssl.endpoint.identification.algorithm`: `https` checks the server's host name (clients).
    pub endpoint_identification: bool,
}

impl TlsSettings {
    /// Reads Kafka's `ssl.*` settings through `get` (which resolves listener prefixes or
    /// reads a client's properties).
    ///
    /// # Errors
    /// An `ssl.client.auth` that is not none, requested or required.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<TlsSettings, String> {
        let client_auth = match get("ssl.client.auth") {
            None => ClientAuth::None,
            Some(v) => v.parse().map_err(|e| format!("ssl.client.auth: {e}"))?,
        };
        Ok(TlsSettings {
            keystore_type: get("ssl.keystore.type"),
            keystore_location: get("ssl.keystore.location").map(Into::into),
            keystore_key: get("ssl.keystore.key"),
            keystore_certificate_chain: get("ssl.keystore.certificate.chain"),
            key_password: get("ssl.key.password"),
            truststore_type: get("ssl.truststore.type"),
            truststore_location: get("ssl.truststore.location").map(Into::into),
            truststore_certificates: get("ssl.truststore.certificates"),
            client_auth,
            enabled_protocols: get("ssl.enabled.protocols")
                .map(|v| v.split(',').map(|p| p.trim().to_string()).collect())
                .unwrap_or_default(),
            endpoint_identification: get("ssl.endpoint.identification.algorithm")
                .is_none_or(|v| v.eq_ignore_ascii_case("https")),
        })
    }
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("keystore_location", &self.keystore_location)
            .field("keystore_key", &self.keystore_key.as_ref().map(|_| "[hidden]"))
            .field("truststore_location", &self.truststore_location)
            .field("client_auth", &self.client_auth)
            .finish_non_exhaustive()
    }
}

/// The files a loaded configuration came from, with their modification times: a change
/// means the configuration should be loaded again (certificate rotation without restart).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sources(Vec<(PathBuf, Option<std::time::SystemTime>)>);

impl Sources {
    fn of(settings: &TlsSettings) -> Sources {
        let files = [&settings.keystore_location, &settings.truststore_location];
        Sources(files.into_iter().flatten().map(|p| (p.clone(), modified(p))).collect())
    }

    /// Whether any file changed since these were read.
    pub fn changed(&self) -> bool {
        self.0.iter().any(|(p, t)| modified(p) != *t)
    }
}

fn modified(p: &std::path::Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn protocol_versions(settings: &TlsSettings) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, String> {
    if settings.enabled_protocols.is_empty() {
        return Ok(vec![&rustls::version::TLS13, &rustls::version::TLS12]);
    }
    let mut out = Vec::new();
    for p in &settings.enabled_protocols {
        match p.trim() {
            "TLSv1.3" => out.push(&rustls::version::TLS13),
            "TLSv1.2" => out.push(&rustls::version::TLS12),
            "" => {}
            other => {
                return Err(format!("ssl.enabled.protocols: {other} is not offered (TLSv1.2 and TLSv1.3 are; older ones are insecure)"))
            }
        }
    }
    if out.is_empty() {
        return Err("ssl.enabled.protocols names no protocol; use TLSv1.2,TLSv1.3".into());
    }
    Ok(out)
}

fn check_pem_type(key: &str, value: &Option<String>) -> Result<(), String> {
    match value.as_deref().map(str::trim) {
        None | Some("") | Some("PEM") => Ok(()),
        Some(other) => Err(format!(
            "{key}={other} is not read; convert the store to PEM (openssl pkcs12 -in store.p12 -nodes, or keytool -importkeystore to PKCS12 first) and set {key}=PEM"
        )),
    }
}

fn read_text(what: &str, path: &std::path::Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))
}

/// The certificate chain and private key of a key store.
///
/// # Errors
/// What is missing or unreadable, naming the setting.
pub fn load_identity(
    settings: &TlsSettings,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    check_pem_type("ssl.keystore.type", &settings.keystore_type)?;
    let (chain_pem, key_pem, from) = match (&settings.keystore_location, &settings.keystore_key) {
        (Some(path), _) => {
            let text = read_text("ssl.keystore.location", path)?;
            (text.clone(), text, format!("ssl.keystore.location {}", path.display()))
        }
        (None, Some(key)) => {
            let chain = settings.keystore_certificate_chain.as_ref().ok_or(
                "ssl.keystore.key is set without ssl.keystore.certificate.chain; set both (PEM text)",
            )?;
            (chain.clone().into_bytes(), key.clone().into_bytes(), "ssl.keystore.key".to_string())
        }
        (None, None) => {
            return Err("no key store: set ssl.keystore.location (a PEM file with the key and certificate chain), or ssl.keystore.key and ssl.keystore.certificate.chain".into())
        }
    };
    if String::from_utf8_lossy(&key_pem).contains("ENCRYPTED PRIVATE KEY") {
        return Err(format!(
            "the private key in {from} is encrypted; Tributary reads unencrypted PEM keys only (openssl pkey -in key.pem -out plain.pem{})",
            if settings.key_password.is_some() { ", then remove ssl.key.password" } else { "" }
        ));
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&chain_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("the certificates in {from} do not parse: {e}"))?;
    if chain.is_empty() {
        return Err(format!("{from} holds no certificate (-----BEGIN CERTIFICATE-----)"));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| format!("{from} holds no readable private key (PKCS#8, RSA or EC PEM): {e}"))?;
    Ok((chain, key))
}

/// The trusted CA certificates, if a trust store is set.
///
/// # Errors
/// An unreadable store or one without certificates.
pub fn load_trust(settings: &TlsSettings) -> Result<Option<RootCertStore>, String> {
    check_pem_type("ssl.truststore.type", &settings.truststore_type)?;
    let (pem, from) = match (&settings.truststore_location, &settings.truststore_certificates) {
        (Some(path), _) => (read_text("ssl.truststore.location", path)?, format!("ssl.truststore.location {}", path.display())),
        (None, Some(text)) => (text.clone().into_bytes(), "ssl.truststore.certificates".to_string()),
        (None, None) => return Ok(None),
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("the certificates in {from} do not parse: {e}"))?;
        roots.add(cert).map_err(|e| format!("a certificate in {from} cannot be trusted: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("{from} holds no certificate"));
    }
    Ok(Some(roots))
}

/// The files a listener's configuration comes from, as they are now.
pub fn server_config_sources(settings: &TlsSettings) -> Sources {
    Sources::of(settings)
}

/// A server configuration for a listener, and the files it came from.
///
/// # Errors
/// Missing or unreadable material, named by its setting.
pub fn server_config(settings: &TlsSettings) -> Result<(Arc<ServerConfig>, Sources), String> {
    let sources = Sources::of(settings);
    let (chain, key) = load_identity(settings)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&protocol_versions(settings)?)
        .map_err(|e| format!("TLS protocol versions: {e}"))?;
    let builder = match settings.client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        auth => {
            let roots = load_trust(settings)?.ok_or(
                "ssl.client.auth asks for client certificates but no trust store is set; set ssl.truststore.location to the CA that signs them",
            )?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            let verifier = if auth == ClientAuth::Requested { verifier.allow_unauthenticated() } else { verifier };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| format!("client certificate verifier: {e}"))?)
        }
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("the key store's key does not fit its certificate: {e}"))?;
    Ok((Arc::new(config), sources))
}

/// A client configuration: trusts the trust store (required), presents the key store's
/// certificate when one is set (for listeners with `ssl.client.auth=required`).
///
/// # Errors
/// Missing or unreadable material, named by its setting.
pub fn client_config(settings: &TlsSettings) -> Result<Arc<ClientConfig>, String> {
    let roots = load_trust(settings)?
        .ok_or("no trust store: set ssl.truststore.location (PEM) to the CA that signs the brokers' certificates")?;
    let provider = provider();
    let algorithms = provider.signature_verification_algorithms;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&protocol_versions(settings)?)
        .map_err(|e| format!("TLS protocol versions: {e}"))?
        .with_root_certificates(roots.clone());
    let mut config = if settings.keystore_location.is_some() || settings.keystore_key.is_some() {
        let (chain, key) = load_identity(settings)?;
        builder.with_client_auth_cert(chain, key).map_err(|e| format!("the key store's key does not fit its certificate: {e}"))?
    } else {
        builder.with_no_client_auth()
    };
    if !settings.endpoint_identification {
        config.dangerous().set_certificate_verifier(Arc::new(NoHostnameCheck { roots, algorithms }));
    }
    Ok(Arc::new(config))
}

/// `ssl.endpoint.identification.algorithm=` (empty): the chain is still verified against
/// the trust store, only the host name is not compared, as Kafka does.
#[derive(Debug)]
struct NoHostnameCheck {
    roots: RootCertStore,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl rustls::client::danger::ServerCertVerifier for NoHostnameCheck {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A server name for the TLS handshake from a host (name or address).
///
/// # Errors
/// A host that is neither.
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_string()).map_err(|e| format!("{host} is not a valid TLS server name: {e}"))
}

/// The subject of a DER certificate as RFC 2253 text, most specific part first, as Java's
/// `X500Principal.getName()` gives it (`CN=alice,OU=eng,O=acme,C=US`).
///
/// # Errors
/// A certificate that does not parse.
pub fn subject_dn(cert: &[u8]) -> Result<String, String> {
    use x509_parser::prelude::*;
    let (_, parsed) = X509Certificate::from_der(cert).map_err(|e| format!("the client certificate does not parse: {e}"))?;
    let mut rdns = Vec::new();
    for rdn in parsed.subject().iter_rdn() {
        let parts: Vec<String> = rdn
            .iter()
            .map(|atv| {
                let oid = atv.attr_type().to_id_string();
                let name = match oid.as_str() {
                    "2.5.4.3" => "CN".to_string(),
                    "2.5.4.11" => "OU".into(),
                    "2.5.4.10" => "O".into(),
                    "2.5.4.7" => "L".into(),
                    "2.5.4.8" => "ST".into(),
                    "2.5.4.6" => "C".into(),
                    "2.5.4.9" => "STREET".into(),
                    "0.9.2342.19200300.100.1.25" => "DC".into(),
                    "0.9.2342.19200300.100.1.1" => "UID".into(),
                    other => other.to_string(),
                };
                let value = atv.as_str().map(escape_rfc2253).unwrap_or_else(|_| {
                    format!("#{}", atv.attr_value().data.iter().map(|b| format!("{b:02x}")).collect::<String>())
                });
                format!("{name}={value}")
            })
            .collect();
        rdns.push(parts.join("+"));
    }
    rdns.reverse();
    Ok(rdns.join(","))
}

fn escape_rfc2253(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == ' ' || c == '#'))
            || (i + 1 == value.chars().count() && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// One rule of `ssl.principal.mapping.rules`.
#[derive(Debug, Clone)]
enum Rule {
    /// `DEFAULT`: the distinguished name as it is.
    Default,
    /// `RULE:pattern/replacement/[LU]`.
    Map { pattern: regex::Regex, replacement: String, case: Option<char> },
}

/// `ssl.principal.mapping.rules`: the first rule whose pattern matches the whole
/// distinguished name gives the principal's name; no match refuses the client.
#[derive(Debug, Clone)]
pub struct PrincipalMapper {
    rules: Vec<Rule>,
}

impl Default for PrincipalMapper {
    fn default() -> Self {
        PrincipalMapper { rules: vec![Rule::Default] }
    }
}

impl std::str::FromStr for PrincipalMapper {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut rules = Vec::new();
        let group_reference = regex::Regex::new(r"\$(\d+)").expect("static pattern");
        let mut rest = text.trim();
        while !rest.is_empty() {
            rest = rest.trim_start_matches([',', ' ', '\n', '\t']);
            if rest.is_empty() {
                break;
            }
            if let Some(after) = rest.strip_prefix("DEFAULT") {
                rules.push(Rule::Default);
                rest = after;
                continue;
            }
            let body = rest
                .strip_prefix("RULE:")
                .ok_or_else(|| format!("expected DEFAULT or RULE:pattern/replacement/[LU] at {rest:?}"))?;
            let mut fields = body.splitn(3, '/');
            let pattern = fields.next().unwrap_or_default();
            let replacement = fields.next().ok_or_else(|| format!("rule {body:?} has no /replacement/"))?;
            let tail = fields.next().ok_or_else(|| format!("rule {body:?} does not end with / or /L or /U"))?;
            let (case, after) = match tail.chars().next() {
                Some(c @ ('L' | 'U')) => (Some(c), &tail[1..]),
                _ => (None, tail),
            };
            let pattern = regex::Regex::new(&format!("^(?:{pattern})$"))
                .map_err(|e| format!("rule pattern {pattern:?} is not a valid regular expression: {e}"))?;
            // Java's $1 is ${1} here, so that "$1abc" keeps meaning group 1.
            let replacement = group_reference.replace_all(replacement, "$${$1}").into_owned();
            rules.push(Rule::Map { pattern, replacement, case });
            rest = after;
        }
        if rules.is_empty() {
            rules.push(Rule::Default);
        }
        Ok(PrincipalMapper { rules })
    }
}

impl PrincipalMapper {
    /// The principal name for a distinguished name, or `None` when no rule matches.
    pub fn map(&self, dn: &str) -> Option<String> {
        self.rules.iter().find_map(|rule| match rule {
            Rule::Default => Some(dn.to_string()),
            Rule::Map { pattern, replacement, case } => {
                let caps = pattern.captures(dn)?;
                let mut out = String::new();
                caps.expand(replacement, &mut out);
                Some(match case {
                    Some('L') => out.to_lowercase(),
                    Some('U') => out.to_uppercase(),
                    _ => out,
                })
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principal_mapping_rules_follow_kafkas_examples() {
        let mapper: PrincipalMapper =
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L,RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/U,DEFAULT"
                .parse()
                .unwrap();
        let cases = [
            ("CN=kafka-user,OU=ServiceUsers,O=Unknown,L=Unknown,ST=Unknown,C=Unknown", "kafka-user"),
            ("CN=Duke,OU=JavaSoft,O=Sun Microsystems,L=Cupertino,ST=CA,C=US", "duke@javasoft"),
            ("OU=JavaSoft,O=Sun Microsystems,cn=duke.of.earl", "DUKE.OF.EARL"),
            ("O=NoCommonName", "O=NoCommonName"),
        ];
        for (dn, want) in cases {
            assert_eq!(mapper.map(dn).as_deref(), Some(want), "{dn}");
        }
        let strict: PrincipalMapper = "RULE:^CN=([a-z]+)$/$1/".parse().unwrap();
        assert_eq!(strict.map("CN=alice"), Some("alice".into()));
        assert_eq!(strict.map("CN=alice,O=x"), None);
        assert_eq!(PrincipalMapper::default().map("CN=x"), Some("CN=x".into()));
        for bad in ["RULE:(/x/", "RULE:abc", "NOPE", "RULE:a/b"] {
            assert!(bad.parse::<PrincipalMapper>().is_err(), "{bad}");
        }
    }

    #[test]
    fn rfc2253_escapes_special_characters() {
        assert_eq!(escape_rfc2253("a,b"), "a\\,b");
        assert_eq!(escape_rfc2253(" x "), "\\ x\\ ");
        assert_eq!(escape_rfc2253("#1"), "\\#1");
        assert_eq!(escape_rfc2253("plain"), "plain");
    }

    #[test]
    fn client_auth_and_store_types_parse() {
        assert_eq!("REQUIRED".parse::<ClientAuth>(), Ok(ClientAuth::Required));
        assert!("maybe".parse::<ClientAuth>().is_err());
        let e = check_pem_type("ssl.keystore.type", &Some("JKS".into())).unwrap_err();
        assert!(e.contains("PEM"), "{e}");
        let missing = load_identity(&TlsSettings::default()).unwrap_err();
        assert!(missing.contains("ssl.keystore.location"), "{missing}");
        let p = protocol_versions(&TlsSettings { enabled_protocols: vec!["TLSv1.1".into()], ..Default::default() });
        assert!(p.unwrap_err().contains("TLSv1.1"));
    }
}
