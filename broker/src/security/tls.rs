//! A listener's TLS: the server configuration, loaded again when its key store or trust
//! store file changes (certificate rotation without restart: the next connection uses the
//! new files, open ones keep theirs), and the principal of a client certificate.

use std::sync::{Arc, Mutex};

use rustls::ServerConfig;
use tributary_common::tls::{self as common_tls, ClientAuth, PrincipalMapper, Sources, TlsSettings};

use super::Principal;

/// A listener's server configuration, checked against its files at each connection.
pub(crate) struct ReloadingServerConfig {
    listener: String,
    settings: TlsSettings,
    current: Mutex<(Arc<ServerConfig>, Sources)>,
}

impl ReloadingServerConfig {
    /// Loads the listener's key store and trust store.
    ///
    /// # Errors
    /// Missing or unreadable material, named by its setting.
    pub(crate) fn load(listener: &str, settings: TlsSettings) -> Result<ReloadingServerConfig, String> {
        let current = common_tls::server_config(&settings)?;
        Ok(ReloadingServerConfig { listener: listener.to_string(), settings, current: Mutex::new(current) })
    }

    /// `ssl.client.auth`.
    pub(crate) fn client_auth(&self) -> ClientAuth {
        self.settings.client_auth
    }

    /// The configuration for a new connection: reloaded first when a file changed. A
    /// reload that fails keeps the configuration in force and says why.
    pub(crate) fn config(&self) -> Arc<ServerConfig> {
        let mut current = self.current.lock().expect("tls config lock");
        if current.1.changed() {
            match common_tls::server_config(&self.settings) {
                Ok(next) => {
                    tracing::info!(listener = self.listener, "reloaded the TLS key store and trust store after their files changed; new connections use them");
                    *current = next;
                }
                Err(e) => {
                    tracing::error!(listener = self.listener, error = %e, "the TLS files changed but do not load; keeping the certificates in use until they are fixed");
                    // Remember the broken files' times so the error is logged once per change.
                    current.1 = common_tls::server_config_sources(&self.settings);
                }
            }
        }
        current.0.clone()
    }
}

/// The principal of a TLS connection: the client certificate's subject mapped by
/// `ssl.principal.mapping.rules`, or ANONYMOUS without a certificate.
///
/// # Errors
/// A certificate that does not parse, or a subject no rule maps (Kafka refuses the client).
pub(crate) fn principal(peer_certificates: Option<&[rustls::pki_types::CertificateDer<'_>]>, mapper: &PrincipalMapper) -> Result<Principal, String> {
    let Some(leaf) = peer_certificates.and_then(|c| c.first()) else { return Ok(Principal::anonymous()) };
    let dn = common_tls::subject_dn(leaf)?;
    let name = mapper
        .map(&dn)
        .ok_or_else(|| format!("no rule of ssl.principal.mapping.rules matches the client certificate's subject {dn:?}"))?;
    Ok(Principal::user(&name))
}
