//! Opening a ZooKeeper session the way Kafka does: a connect string with an optional chroot
//! (`host:2181,host2:2181/kafka`), created if missing, and a bounded wait for the ensemble
//! (`zookeeper.connection.timeout.ms`) with a log line per failed attempt.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use zookeeper_client::{Acl, Acls, Client, CreateMode, Permission, SaslOptions};

use crate::config::ConfigError;
use crate::znode::{ConfigEntity, PERSISTENT_PATHS};

/// The login a ZooKeeper session authenticates with: SASL DIGEST-MD5, as Kafka's
/// `DigestLoginModule` in the JAAS `Client` section.
#[derive(Clone, PartialEq, Eq)]
pub struct ZkSaslLogin {
    /// The user, which ZooKeeper ACLs name as `sasl:<user>`.
    pub username: String,
    /// The password.
    pub password: String,
    /// Where the login came from, for log lines (`the JAAS file /etc/kafka/jaas.conf`).
    pub origin: String,
}

impl std::fmt::Debug for ZkSaslLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZkSaslLogin").field("username", &self.username).field("origin", &self.origin).finish()
    }
}

/// How a process authenticates to ZooKeeper and protects the znodes it creates
/// (Kafka's JAAS `Client` login and `zookeeper.set.acl`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ZkSecurity {
    /// The SASL login; none: an unauthenticated session.
    pub sasl: Option<ZkSaslLogin>,
    /// `zookeeper.set.acl`: znodes are created writable by this login only.
    pub set_acl: bool,
}

/// Where a ZooKeeper login can be configured besides Tributary's own setting.
const KAFKA_OPTS: &str = "KAFKA_OPTS";

/// The JVM system properties Kafka's ZooKeeper client reads, as given in `KAFKA_OPTS`:
/// the JAAS file, the name of its client section, and whether SASL is on at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JvmZkOptions {
    /// `-Djava.security.auth.login.config=<file>`.
    pub login_config: Option<PathBuf>,
    /// `-Dzookeeper.sasl.clientconfig=<section>` (default `Client`).
    pub section: String,
    /// `-Dzookeeper.sasl.client=false` turns SASL off.
    pub sasl_client: bool,
}

/// Reads the JVM flags of a `KAFKA_OPTS` value (the confluent image's way to name a JAAS
/// file); other flags are left alone.
pub fn jvm_zk_options(kafka_opts: &str) -> JvmZkOptions {
    let mut options = JvmZkOptions { login_config: None, section: "Client".into(), sasl_client: true };
    for flag in kafka_opts.split_whitespace() {
        let Some((key, value)) = flag.strip_prefix("-D").and_then(|f| f.split_once('=')) else { continue };
        let value = value.trim_matches(|c| c == '"' || c == '\'');
        match key {
            "java.security.auth.login.config" => options.login_config = Some(PathBuf::from(value)),
            "zookeeper.sasl.clientconfig" => options.section = value.to_string(),
            "zookeeper.sasl.client" => options.sasl_client = !value.eq_ignore_ascii_case("false"),
            _ => {}
        }
    }
    options
}

/// The JVM flags of the `KAFKA_OPTS` variable in `env`, if it is set.
pub fn kafka_opts(env: &[(String, String)]) -> Option<JvmZkOptions> {
    env.iter().find(|(k, _)| k == KAFKA_OPTS).map(|(_, v)| jvm_zk_options(v))
}

/// The JAAS file `options` names (`-Djava.security.auth.login.config`), read and parsed;
/// none when it names none. Both its readers go through here: the ZooKeeper login (its
/// `Client` section) and the broker's listeners (its `KafkaServer` sections).
///
/// # Errors
/// [`ConfigError::Invalid`] for `KAFKA_OPTS`: the file unreadable or malformed.
pub fn kafka_opts_jaas(options: &JvmZkOptions) -> Result<Option<(PathBuf, crate::jaas::Sections)>, ConfigError> {
    let Some(path) = &options.login_config else { return Ok(None) };
    let sections = crate::jaas::read_file(path).map_err(|reason| ConfigError::Invalid {
        key: KAFKA_OPTS.into(),
        value: format!("-Djava.security.auth.login.config={}", path.display()),
        reason,
    })?;
    Ok(Some((path.clone(), sections)))
}

/// The ZooKeeper login in a JAAS file's sections: the `DigestLoginModule` of `section`;
/// none when the file has no such section (Kafka then opens an unauthenticated session).
///
/// # Errors
/// A sentence naming the file's mistake (never a password).
pub fn zk_login_from_sections(
    sections: &crate::jaas::Sections,
    section: &str,
    origin: &str,
) -> Result<Option<ZkSaslLogin>, String> {
    let Some(modules) = sections.get(section) else { return Ok(None) };
    let module = modules
        .iter()
        .find(|m| m.class.ends_with(".DigestLoginModule"))
        .ok_or_else(|| format!("{origin}: section {section} has no org.apache.zookeeper.server.auth.DigestLoginModule; Tributary logs in to ZooKeeper with SASL DIGEST-MD5 only (Kerberos is not supported)"))?;
    let (username, password) =
        module.login().ok_or_else(|| format!("{origin}: the DigestLoginModule of section {section} needs username and password"))?;
    Ok(Some(ZkSaslLogin { username, password, origin: origin.to_string() }))
}

/// The bitnami image's ZooKeeper login: `KAFKA_ZOOKEEPER_PROTOCOL` (PLAINTEXT or SASL)
/// with `KAFKA_ZOOKEEPER_USER` and `KAFKA_ZOOKEEPER_PASSWORD`.
///
/// # Errors
/// An unknown or unsupported protocol, or SASL without a user.
pub fn zk_login_from_bitnami(env: &[(String, String)]) -> Result<Option<ZkSaslLogin>, String> {
    let var = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim()).filter(|v| !v.is_empty());
    let Some(protocol) = var("KAFKA_ZOOKEEPER_PROTOCOL") else { return Ok(None) };
    match protocol.to_ascii_uppercase().as_str() {
        "PLAINTEXT" => Ok(None),
        "SASL" => {
            let username = var("KAFKA_ZOOKEEPER_USER")
                .ok_or("KAFKA_ZOOKEEPER_PROTOCOL=SASL needs KAFKA_ZOOKEEPER_USER (and KAFKA_ZOOKEEPER_PASSWORD)")?;
            Ok(Some(ZkSaslLogin {
                username: username.to_string(),
                password: var("KAFKA_ZOOKEEPER_PASSWORD").unwrap_or_default().to_string(),
                origin: "KAFKA_ZOOKEEPER_USER and KAFKA_ZOOKEEPER_PASSWORD".into(),
            }))
        }
        "SSL" | "SASL_SSL" => Err(format!("KAFKA_ZOOKEEPER_PROTOCOL={protocol}: Tributary does not connect to ZooKeeper over TLS; use SASL (DIGEST-MD5) or PLAINTEXT")),
        _ => Err(format!("KAFKA_ZOOKEEPER_PROTOCOL={protocol} is not one of PLAINTEXT, SASL, SSL, SASL_SSL")),
    }
}

impl ZkSecurity {
    /// Resolves the ZooKeeper login as Kafka and its images do, first found wins: the JAAS
    /// file of Tributary's `zookeeper.sasl.jaas.file`, the one `KAFKA_OPTS` names
    /// (`-Djava.security.auth.login.config`, section `Client` or `-Dzookeeper.sasl.clientconfig`),
    /// bitnami's `KAFKA_ZOOKEEPER_*` variables. `zookeeper.set.acl` without a login is
    /// refused, as Kafka refuses it.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file or variable at fault.
    pub fn resolve(jaas_file: Option<&Path>, set_acl: bool, env: &[(String, String)]) -> Result<Self, ConfigError> {
        let invalid = |key: &str, value: String, reason: String| ConfigError::Invalid { key: key.into(), value, reason };
        let from_opts = match kafka_opts(env).filter(|o| o.sasl_client) {
            Some(options) => kafka_opts_jaas(&options)?.map(|(path, sections)| (options.section, path, sections)),
            None => None,
        };
        let sasl = if let Some(path) = jaas_file {
            let bad = |reason: String| invalid("zookeeper.sasl.jaas.file", path.display().to_string(), reason);
            let sections = crate::jaas::read_file(path).map_err(bad)?;
            let login = zk_login_from_sections(&sections, "Client", &format!("the JAAS file {}", path.display()));
            Some(login.map_err(bad)?.ok_or_else(|| bad("the file has no Client section".into()))?)
        } else if let Some((section, path, sections)) = from_opts {
            zk_login_from_sections(&sections, &section, &format!("the JAAS file {} named by KAFKA_OPTS", path.display()))
                .map_err(|e| invalid(KAFKA_OPTS, format!("-Djava.security.auth.login.config={}", path.display()), e))?
        } else {
            zk_login_from_bitnami(env).map_err(|e| invalid("KAFKA_ZOOKEEPER_PROTOCOL", String::new(), e))?
        };
        if set_acl && sasl.is_none() {
            return Err(invalid(
                "zookeeper.set.acl",
                "true".into(),
                "znodes can be protected only for an authenticated session: give a ZooKeeper SASL login (zookeeper.sasl.jaas.file, a JAAS file with a Client section named by -Djava.security.auth.login.config in KAFKA_OPTS, or KAFKA_ZOOKEEPER_PROTOCOL=SASL with KAFKA_ZOOKEEPER_USER and KAFKA_ZOOKEEPER_PASSWORD)".into(),
            ));
        }
        Ok(Self { sasl, set_acl })
    }
}

/// `zookeeper.set.acl` of this process, set by [`connect`]: every znode the process
/// creates takes its ACL from [`default_acls`] under it.
static SECURE_ACLS: AtomicBool = AtomicBool::new(false);

/// Paths whose data only the cluster's own login may read (SCRAM credentials, broker
/// configs with passwords, delegation tokens), as Kafka's `ZkData.SensitiveRootPaths`.
const SENSITIVE_ROOTS: &[&str] = &["/config/users", "/config/brokers", "/delegation_token/tokens"];

static CREATOR_ALL_WORLD_READ: [Acl; 2] = [
    Acl::new_const(Permission::ALL, "auth", ""),
    Acl::new_const(Permission::READ, "world", "anyone"),
];

/// The ACL of a new znode, Kafka's `ZkData.defaultAcls`: open to all without
/// `zookeeper.set.acl`; with it, everything for the creating login, plus read for everyone
/// except under the sensitive paths.
pub fn default_acls(secure: bool, path: &str) -> Acls<'static> {
    if !secure {
        Acls::anyone_all()
    } else if SENSITIVE_ROOTS.iter().any(|root| path.starts_with(root)) {
        Acls::creator_all()
    } else {
        Acls::new(&CREATOR_ALL_WORLD_READ)
    }
}

fn acls_for(path: &str) -> Acls<'static> {
    default_acls(SECURE_ACLS.load(Ordering::Relaxed), path)
}

/// Why no session could be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Nothing answered in time.
    #[error("could not open a ZooKeeper session with {hosts} within {waited_ms} ms (last error: {last}); check that ZooKeeper is running and that zookeeper.connect is right")]
    Unreachable {
        /// The hosts part of the connect string.
        hosts: String,
        /// How long we tried.
        waited_ms: u128,
        /// The last client error.
        last: zookeeper_client::Error,
    },
    /// ZooKeeper refused the login.
    #[error("ZooKeeper {hosts} refused the SASL login {}; check the username and password against the Server section of ZooKeeper's JAAS file", user.as_deref().unwrap_or("(none given: the server requires one; see zookeeper.sasl.jaas.file)"))]
    AuthFailed {
        /// The hosts part of the connect string.
        hosts: String,
        /// The user and where it came from.
        user: Option<String>,
    },
    /// The chroot could not be created or entered.
    #[error("could not use chroot {chroot} on ZooKeeper {hosts}: {reason}")]
    Chroot {
        /// Hosts.
        hosts: String,
        /// The chroot path.
        chroot: String,
        /// What went wrong.
        reason: String,
    },
}

/// Splits `hosts[/chroot]`.
pub fn split_connect_string(connect: &str) -> (&str, Option<&str>) {
    match connect.find('/') {
        Some(i) if i + 1 < connect.len() => (&connect[..i], Some(&connect[i..])),
        Some(i) => (&connect[..i], None),
        None => (connect, None),
    }
}

/// Opens a session, retrying until `connection_timeout` has passed.
///
/// # Errors
/// [`ConnectError`] when no server answered in time or the chroot is unusable.
pub async fn connect(
    connect: &str,
    session_timeout: Duration,
    connection_timeout: Duration,
    security: &ZkSecurity,
) -> Result<Client, ConnectError> {
    SECURE_ACLS.store(security.set_acl, Ordering::Relaxed);
    let (hosts, chroot) = split_connect_string(connect);
    let started = Instant::now();
    let client = loop {
        let mut connector = Client::connector()
            .with_session_timeout(session_timeout)
            .with_connection_timeout(Duration::from_secs(2).min(connection_timeout));
        if let Some(login) = &security.sasl {
            connector = connector.with_sasl(SaslOptions::digest_md5(login.username.clone(), login.password.clone()));
        }
        let attempt = connector.connect(hosts).await;
        match attempt {
            Ok(client) => break client,
            // A refused login is refused again: say so now rather than at the timeout.
            Err(zookeeper_client::Error::AuthFailed) => {
                return Err(ConnectError::AuthFailed {
                    hosts: hosts.to_string(),
                    user: security.sasl.as_ref().map(|l| format!("{} (from {})", l.username, l.origin)),
                })
            }
            Err(err) if started.elapsed() < connection_timeout => {
                tracing::warn!(zookeeper = hosts, error = %err, "ZooKeeper not reachable yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(last) => {
                return Err(ConnectError::Unreachable {
                    hosts: hosts.to_string(),
                    waited_ms: started.elapsed().as_millis(),
                    last,
                })
            }
        }
    };
    if let Some(login) = &security.sasl {
        tracing::info!(zookeeper = hosts, user = login.username, from = login.origin, zookeeper_set_acl = security.set_acl, "authenticated to ZooKeeper with SASL DIGEST-MD5");
    }
    let Some(chroot) = chroot else { return Ok(client) };
    let chroot_err = |reason: String| ConnectError::Chroot { hosts: hosts.into(), chroot: chroot.into(), reason };
    client
        .mkdir(chroot, &persistent(chroot))
        .await
        .map_err(|e| chroot_err(e.to_string()))?;
    client.chroot(chroot.to_string()).map_err(|_| chroot_err("not a valid path".into()))
}

/// Creates the persistent paths Kafka brokers create at start-up (`/brokers/ids`, ...).
///
/// # Errors
/// The ZooKeeper error of the first path that could not be created.
pub async fn ensure_persistent_paths(client: &Client) -> Result<(), zookeeper_client::Error> {
    for path in PERSISTENT_PATHS {
        client.mkdir(path, &persistent(path)).await?;
    }
    Ok(())
}

/// Options for a new persistent znode at `path`, its ACL from [`default_acls`].
pub fn persistent(path: &str) -> zookeeper_client::CreateOptions<'static> {
    CreateMode::Persistent.with_acls(acls_for(path))
}

/// Options for a new persistent-sequential znode (a notification) under `path`.
pub fn persistent_sequential(path: &str) -> zookeeper_client::CreateOptions<'static> {
    CreateMode::PersistentSequential.with_acls(acls_for(path))
}

/// Options for a new ephemeral znode at `path`.
pub fn ephemeral(path: &str) -> zookeeper_client::CreateOptions<'static> {
    CreateMode::Ephemeral.with_acls(acls_for(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_znodes_take_kafkas_default_acls() {
        let open = Acls::anyone_all();
        let creator = Acls::creator_all();
        let creator_and_read = Acls::new(&CREATOR_ALL_WORLD_READ);
        let cases = [
            (false, "/brokers/ids/1", open),
            (false, "/config/users/alice", open),
            (true, "/brokers/ids/1", creator_and_read),
            (true, "/kafka", creator_and_read),
            (true, "/config/topics/t", creator_and_read),
            (true, "/config/changes/config_change_", creator_and_read),
            (true, "/kafka-acl/Topic/t", creator_and_read),
            (true, "/config/users", creator),
            (true, "/config/users/alice", creator),
            (true, "/config/users/alice/clients/c", creator),
            (true, "/config/brokers/1", creator),
            (true, "/delegation_token/tokens/x", creator),
        ];
        for (secure, path, want) in cases {
            assert_eq!(&*default_acls(secure, path), &*want, "{secure} {path}");
        }
        assert_eq!(creator_and_read.len(), 2);
        assert_eq!(creator_and_read[0].scheme(), "auth");
        assert_eq!((creator_and_read[1].scheme(), creator_and_read[1].id()), ("world", "anyone"));
        assert_eq!(creator_and_read[1].permission(), Permission::READ);
    }

    #[test]
    fn the_jvm_flags_kafka_reads_are_found_in_kafka_opts() {
        let o = jvm_zk_options("-Xmx1g -Djava.security.auth.login.config=/etc/kafka/jaas.conf -Dfoo=bar");
        assert_eq!(o.login_config.as_deref(), Some(Path::new("/etc/kafka/jaas.conf")));
        assert_eq!((o.section.as_str(), o.sasl_client), ("Client", true));
        let o = jvm_zk_options("-Djava.security.auth.login.config='/j' -Dzookeeper.sasl.clientconfig=ZkClient -Dzookeeper.sasl.client=false");
        assert_eq!(o.login_config.as_deref(), Some(Path::new("/j")));
        assert_eq!((o.section.as_str(), o.sasl_client), ("ZkClient", false));
        assert_eq!(jvm_zk_options("").login_config, None);
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn bitnami_zookeeper_variables_give_a_login() {
        let login = zk_login_from_bitnami(&env(&[
            ("KAFKA_ZOOKEEPER_PROTOCOL", "SASL"),
            ("KAFKA_ZOOKEEPER_USER", "kafka"),
            ("KAFKA_ZOOKEEPER_PASSWORD", "pw"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!((login.username.as_str(), login.password.as_str()), ("kafka", "pw"));
        assert!(!format!("{login:?}").contains("pw\""));
        assert_eq!(zk_login_from_bitnami(&env(&[("KAFKA_ZOOKEEPER_PROTOCOL", "plaintext")])).unwrap(), None);
        assert_eq!(zk_login_from_bitnami(&env(&[])).unwrap(), None);
        for (protocol, want) in [("SASL", "needs KAFKA_ZOOKEEPER_USER"), ("SSL", "over TLS"), ("X", "not one of")] {
            let e = zk_login_from_bitnami(&env(&[("KAFKA_ZOOKEEPER_PROTOCOL", protocol)])).unwrap_err();
            assert!(e.contains(want), "{protocol}: {e}");
        }
    }

    #[test]
    fn the_login_is_resolved_in_kafkas_order_and_set_acl_needs_one() {
        let dir = std::env::temp_dir().join(format!("tributary-zk-jaas-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = |name: &str, user: &str| {
            let path = dir.join(name);
            std::fs::write(&path, format!("Client {{ org.apache.zookeeper.server.auth.DigestLoginModule required username=\"{user}\" password=\"p\"; }};\nOther {{ x.M required; }};\n")).unwrap();
            path
        };
        let (setting, opts) = (file("setting.conf", "from-setting"), file("opts.conf", "from-opts"));
        let kafka_opts = format!("-Djava.security.auth.login.config={}", opts.display());
        let bitnami = [("KAFKA_ZOOKEEPER_PROTOCOL", "SASL"), ("KAFKA_ZOOKEEPER_USER", "from-bitnami")];
        let all = env(&[("KAFKA_OPTS", kafka_opts.as_str()), bitnami[0], bitnami[1]]);
        let user = |s: ZkSecurity| s.sasl.map(|l| l.username);
        assert_eq!(user(ZkSecurity::resolve(Some(&setting), true, &all).unwrap()).as_deref(), Some("from-setting"));
        assert_eq!(user(ZkSecurity::resolve(None, true, &all).unwrap()).as_deref(), Some("from-opts"));
        assert_eq!(user(ZkSecurity::resolve(None, false, &env(&bitnami)).unwrap()).as_deref(), Some("from-bitnami"));
        let off = format!("{kafka_opts} -Dzookeeper.sasl.client=false");
        assert_eq!(ZkSecurity::resolve(None, false, &env(&[("KAFKA_OPTS", off.as_str())])).unwrap(), ZkSecurity::default());
        // A section other than Client, named by the JVM flag.
        let section = format!("{kafka_opts} -Dzookeeper.sasl.clientconfig=Other");
        let e = ZkSecurity::resolve(None, false, &env(&[("KAFKA_OPTS", section.as_str())])).unwrap_err().to_string();
        assert!(e.contains("no org.apache.zookeeper.server.auth.DigestLoginModule"), "{e}");
        let e = ZkSecurity::resolve(None, true, &[]).unwrap_err().to_string();
        assert!(e.contains("zookeeper.set.acl") && e.contains("SASL login"), "{e}");
        let e = ZkSecurity::resolve(Some(&dir.join("missing")), false, &[]).unwrap_err().to_string();
        assert!(e.contains("zookeeper.sasl.jaas.file") && e.contains("cannot read"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn connect_strings_split_at_the_chroot() {
        assert_eq!(split_connect_string("a:1,b:2/kafka"), ("a:1,b:2", Some("/kafka")));
        assert_eq!(split_connect_string("a:1"), ("a:1", None));
        assert_eq!(split_connect_string("a:1/"), ("a:1", None));
    }
}

/// Why a topic write failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum TopicWriteError {
    /// The topic exists already.
    #[error("topic {0:?} already exists")]
    Exists(String),
    /// ZooKeeper failed.
    #[error("writing topic {topic:?} to ZooKeeper failed: {source}")]
    Zk {
        /// The topic.
        topic: String,
        /// The client error.
        source: zookeeper_client::Error,
    },
}

/// Writes a new topic as Kafka's AdminZkClient does: its config and its assignment, in one
/// multi. The controller then creates the partition states and elects leaders.
///
/// # Errors
/// [`TopicWriteError::Exists`] if `/brokers/topics/<t>` exists; ZooKeeper errors.
pub async fn create_topic(
    client: &Client,
    topic: &str,
    topic_id: crate::ids::TopicId,
    replicas: &std::collections::BTreeMap<i32, Vec<crate::ids::BrokerId>>,
    config: std::collections::BTreeMap<String, String>,
) -> Result<(), TopicWriteError> {
    use crate::znode::{topic_config_path, topic_path, EntityConfig, TopicAssignment};
    let zk = |source| TopicWriteError::Zk { topic: topic.to_string(), source };
    let topic_node = topic_path(topic);
    if client.check_stat(&topic_node).await.map_err(zk)?.is_some() {
        return Err(TopicWriteError::Exists(topic.to_string()));
    }
    let config_node = topic_config_path(topic);
    let config_data = EntityConfig::new(config).encode();
    let assignment = TopicAssignment::new(Some(topic_id), replicas).encode();
    let mut multi = client.new_multi_writer();
    // A config left by an earlier, half-finished creation is overwritten.
    match client.check_stat(&config_node).await.map_err(zk)? {
        Some(stat) => multi.add_set_data(&config_node, &config_data, Some(stat.version)),
        None => multi.add_create(&config_node, &config_data, &persistent(&config_node)),
    }
    .map_err(zk)?;
    multi.add_create(&topic_node, &assignment, &persistent(&topic_node)).map_err(zk)?;
    match multi.commit().await {
        Ok(_) => Ok(()),
        Err(e) => match zookeeper_client::Error::from(e) {
            zookeeper_client::Error::NodeExists => Err(TopicWriteError::Exists(topic.to_string())),
            other => Err(zk(other)),
        },
    }
}

/// Marks a topic for deletion (`/admin/delete_topics/<t>`); an existing mark is fine.
///
/// # Errors
/// ZooKeeper errors.
pub async fn mark_topic_for_deletion(client: &Client, topic: &str) -> Result<(), zookeeper_client::Error> {
    match client.create(&crate::znode::delete_topic_path(topic), &[], &persistent(&crate::znode::delete_topic_path(topic))).await {
        Ok(_) | Err(zookeeper_client::Error::NodeExists) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Why a config write failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ConfigWriteError {
    /// The entity's config changed since it was read: read it again and retry.
    #[error("{0} changed concurrently")]
    Conflict(String),
    /// ZooKeeper failed.
    #[error("writing {path} failed: {source}")]
    Zk {
        /// The node.
        path: String,
        /// The client error.
        source: zookeeper_client::Error,
    },
}

/// An entity's config and its zkVersion (`None` while the znode does not exist).
///
/// # Errors
/// ZooKeeper errors; an unreadable payload reads as empty, as Kafka treats it.
pub async fn read_entity_config(
    client: &Client,
    entity: &crate::znode::ConfigEntity,
) -> Result<(std::collections::BTreeMap<String, String>, Option<i32>), ConfigWriteError> {
    let path = entity.path();
    match client.get_data(&path).await {
        Ok((data, stat)) => {
            let config = if data.is_empty() {
                Default::default()
            } else {
                crate::znode::EntityConfig::decode(&path, &data).map(|c| c.config).unwrap_or_default()
            };
            Ok((config, Some(stat.version)))
        }
        Err(zookeeper_client::Error::NoNode) => Ok((Default::default(), None)),
        Err(source) => Err(ConfigWriteError::Zk { path, source }),
    }
}

/// The one way a config is written, as Kafka's `AdminZkClient.changeConfigs` writes it:
/// `/config/<type>/<name>` replaced (conditional on `expected_version`, the zkVersion
/// [`read_entity_config`] gave, `None` meaning the node must not exist yet), then a
/// `/config/changes/config_change_<seq>` notification naming the entity. Brokers pick the
/// change up from their watch on `/config`.
///
/// # Errors
/// [`ConfigWriteError::Conflict`] when the node changed since it was read; ZooKeeper errors.
pub async fn write_entity_config(
    client: &Client,
    entity: &crate::znode::ConfigEntity,
    config: std::collections::BTreeMap<String, String>,
    expected_version: Option<i32>,
) -> Result<(), ConfigWriteError> {
    use crate::znode::{config_change_notification, EntityConfig, CONFIG_CHANGE_PREFIX};
    let path = entity.path();
    let data = EntityConfig::new(config).encode();
    let zk = |path: &str| {
        let path = path.to_string();
        move |source| match source {
            zookeeper_client::Error::BadVersion | zookeeper_client::Error::NodeExists => {
                ConfigWriteError::Conflict(path.clone())
            }
            source => ConfigWriteError::Zk { path: path.clone(), source },
        }
    };
    match expected_version {
        Some(version) => {
            client.set_data(&path, &data, Some(version)).await.map_err(zk(&path))?;
        }
        None => {
            // users/<u>/clients/<c> needs users/<u>; Kafka creates such parents empty.
            if let ConfigEntity::UserClient(user, _) = entity {
                let parent = ConfigEntity::User(user.clone()).path();
                match client.create(&parent, &[], &persistent(&parent)).await {
                    Ok(_) | Err(zookeeper_client::Error::NodeExists) => {}
                    Err(source) => return Err(ConfigWriteError::Zk { path: parent, source }),
                }
                let clients = format!("{parent}/clients");
                match client.create(&clients, &[], &persistent(&clients)).await {
                    Ok(_) | Err(zookeeper_client::Error::NodeExists) => {}
                    Err(source) => return Err(ConfigWriteError::Zk { path: clients, source }),
                }
            }
            client.create(&path, &data, &persistent(&path)).await.map_err(zk(&path))?;
        }
    }
    client
        .create(CONFIG_CHANGE_PREFIX, &config_change_notification(&entity.entity_path()), &persistent_sequential(CONFIG_CHANGE_PREFIX))
        .await
        .map_err(zk(CONFIG_CHANGE_PREFIX))?;
    Ok(())
}

/// Creates a request znode the controller consumes and deletes
/// (`/admin/reassign_partitions`, `/admin/preferred_replica_election`,
/// `/admin/unclean_leader_election`). While an earlier request is still there, waits for it
/// to go, up to `patience`.
///
/// # Errors
/// `NodeExists` when the earlier request outlasts `patience`; other ZooKeeper errors.
pub async fn create_request_node(
    client: &Client,
    path: &str,
    payload: &[u8],
    patience: Duration,
) -> Result<(), zookeeper_client::Error> {
    let deadline = Instant::now() + patience;
    loop {
        match client.create(path, payload, &persistent(path)).await {
            Ok(_) => return Ok(()),
            Err(zookeeper_client::Error::NodeExists) if Instant::now() < deadline => {
                // Woken when the controller deletes the earlier request.
                if let (Some(_), watcher) = client.check_and_watch_stat(path).await? {
                    let _ = tokio::time::timeout_at(deadline, watcher.changed()).await;
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Asks the controller to move partitions (Kafka's `/admin/reassign_partitions`; an empty
/// replica list cancels a move in progress).
///
/// # Errors
/// As [`create_request_node`].
pub async fn request_reassignment(
    client: &Client,
    partitions: Vec<crate::znode::ReassignedPartition>,
    patience: Duration,
) -> Result<(), zookeeper_client::Error> {
    let payload = crate::znode::ReassignPartitions::new(partitions).encode();
    create_request_node(client, crate::znode::REASSIGN_PARTITIONS, &payload, patience).await
}

/// Why [`update_entity_config`] changed nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigUpdateError<E> {
    /// The caller's `change` refused the result.
    Refused(E),
    /// ZooKeeper failed.
    Zk(ConfigWriteError),
    /// Other writers changed the entity on every one of five tries (its znode path).
    KeptChanging(String),
}

/// A read-modify-write of an entity's config: reads it, lets `change` compute the new
/// config from the stored one (or refuse), and writes it through [`write_entity_config`]
/// conditional on the version read, reading again when another writer got there first.
/// With `validate_only` nothing is written. Returns the config written (or that would be).
///
/// # Errors
/// [`ConfigUpdateError`] as documented on each variant.
pub async fn update_entity_config<E>(
    client: &Client,
    entity: &ConfigEntity,
    validate_only: bool,
    change: impl Fn(&std::collections::BTreeMap<String, String>) -> Result<std::collections::BTreeMap<String, String>, E>,
) -> Result<std::collections::BTreeMap<String, String>, ConfigUpdateError<E>> {
    for _ in 0..5 {
        let (current, version) = read_entity_config(client, entity).await.map_err(ConfigUpdateError::Zk)?;
        let next = change(&current).map_err(ConfigUpdateError::Refused)?;
        if validate_only {
            return Ok(next);
        }
        match write_entity_config(client, entity, next.clone(), version).await {
            Ok(()) => return Ok(next),
            Err(ConfigWriteError::Conflict(_)) => continue,
            Err(e) => return Err(ConfigUpdateError::Zk(e)),
        }
    }
    Err(ConfigUpdateError::KeptChanging(entity.path()))
}

/// Every ACL under `/kafka-acl` and `/kafka-acl-extended/prefixed`, as Kafka's authorizer
/// loads them. An unreadable node is logged and skipped.
///
/// # Errors
/// ZooKeeper errors other than a node vanishing mid-read.
pub async fn read_acls(client: &Client) -> Result<crate::acl::AclMap, zookeeper_client::Error> {
    use crate::acl::{PatternType, ResourcePattern, ResourceType, LITERAL_ROOT, PREFIXED_ROOT};
    let mut out = crate::acl::AclMap::new();
    for (root, pattern_type) in [(LITERAL_ROOT, PatternType::Literal), (PREFIXED_ROOT, PatternType::Prefixed)] {
        let types = match client.list_children(root).await {
            Ok(t) => t,
            Err(zookeeper_client::Error::NoNode) => continue,
            Err(e) => return Err(e),
        };
        for type_name in types {
            let Some(resource_type) = ResourceType::from_name(&type_name) else { continue };
            let dir = format!("{root}/{type_name}");
            let names = match client.list_children(&dir).await {
                Ok(n) => n,
                Err(zookeeper_client::Error::NoNode) => continue,
                Err(e) => return Err(e),
            };
            for name in names {
                let path = format!("{dir}/{name}");
                let data = match client.get_data(&path).await {
                    Ok((data, _)) => data,
                    Err(zookeeper_client::Error::NoNode) => continue,
                    Err(e) => return Err(e),
                };
                match crate::acl::decode_acls(&data) {
                    Ok(entries) if !entries.is_empty() => {
                        out.insert(ResourcePattern { resource_type, name, pattern_type }, entries);
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(znode = path, error = %e, "skipping an ACL znode that does not parse; fix or delete it with kafka-acls"),
                }
            }
        }
    }
    Ok(out)
}

/// Changes the ACLs of one pattern as Kafka's authorizer does: reads the node, applies
/// `change`, writes the result conditionally (deleting the node when no entry is left) and
/// announces the change on `/kafka-acl-changes` or `/kafka-acl-extended-changes`; retries
/// when another writer got there first. Returns the entries before and after.
///
/// # Errors
/// ZooKeeper errors, or other writers changing the node on every one of five tries.
pub async fn update_acls(
    client: &Client,
    pattern: &crate::acl::ResourcePattern,
    change: impl Fn(&[crate::acl::AclEntry]) -> Vec<crate::acl::AclEntry>,
) -> Result<(Vec<crate::acl::AclEntry>, Vec<crate::acl::AclEntry>), ConfigWriteError> {
    let path = pattern.path();
    let zk = |source| ConfigWriteError::Zk { path: path.clone(), source };
    for _ in 0..5 {
        let (current, version) = match client.get_data(&path).await {
            Ok((data, stat)) => (crate::acl::decode_acls(&data).unwrap_or_default(), Some(stat.version)),
            Err(zookeeper_client::Error::NoNode) => (Vec::new(), None),
            Err(e) => return Err(zk(e)),
        };
        let mut next = change(&current);
        next.sort();
        next.dedup();
        if next == current {
            return Ok((current, next));
        }
        let written = match (version, next.is_empty()) {
            (None, true) => Ok(()),
            (Some(v), true) => client.delete(&path, Some(v)).await,
            (Some(v), false) => client.set_data(&path, &crate::acl::encode_acls(&next), Some(v)).await.map(|_| ()),
            (None, false) => {
                if let Some((parent, _)) = path.rsplit_once('/') {
                    ensure_path(client, parent).await.map_err(zk)?;
                }
                client.create(&path, &crate::acl::encode_acls(&next), &persistent(&path)).await.map(|_| ())
            }
        };
        match written {
            Ok(()) => {
                let (changes, payload) = pattern.change_notification();
                ensure_path(client, changes).await.map_err(zk)?;
                let seq = format!("{changes}/{}", crate::acl::CHANGE_PREFIX);
                client.create(&seq, &payload, &persistent_sequential(&seq)).await.map_err(zk)?;
                return Ok((current, next));
            }
            Err(zookeeper_client::Error::BadVersion | zookeeper_client::Error::NodeExists | zookeeper_client::Error::NoNode) => continue,
            Err(e) => return Err(zk(e)),
        }
    }
    Err(ConfigWriteError::Conflict(path))
}

/// Creates `path` and its missing parents, empty.
async fn ensure_path(client: &Client, path: &str) -> Result<(), zookeeper_client::Error> {
    let mut at = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        at.push('/');
        at.push_str(part);
        match client.create(&at, &[], &persistent(&at)).await {
            Ok(_) | Err(zookeeper_client::Error::NodeExists) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
