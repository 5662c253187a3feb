use super::*;
use crate::config::{Args, BrokerFlags};

fn config(env: &[(&str, &str)]) -> (BrokerConfig, SecurityProps) {
    let args = Args {
        log_level: "info".into(),
        settings: BrokerFlags { broker_id: Some(1), zookeeper_connect: Some("z:1".into()), ..BrokerFlags::default() },
        ..Args::default()
    };
    let vars = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    let loaded = BrokerConfig::from_sources(args, vars).unwrap();
    (loaded.config, loaded.security)
}

#[test]
fn sasl_listeners_need_a_mechanism_tributary_offers_and_plain_needs_users() {
    let base = [
        ("KAFKA_LISTENERS", "SASL_PLAINTEXT://:9092"),
        ("KAFKA_ADVERTISED_LISTENERS", "SASL_PLAINTEXT://h:9092"),
        ("KAFKA_INTER_BROKER_LISTENER_NAME", "SASL_PLAINTEXT"),
    ];
    type Env<'a> = &'a [(&'a str, &'a str)];
    let cases: &[(Env<'_>, Result<&str, &str>)] = &[
        (&[], Err("Kafka's default")),
        (&[("KAFKA_SASL_ENABLED_MECHANISMS", "GSSAPI,OAUTHBEARER")], Err("offers PLAIN")),
        (&[("KAFKA_SASL_ENABLED_MECHANISMS", "PLAIN")], Err("plain.sasl.jaas.config is not set")),
        (
            &[
                ("KAFKA_SASL_ENABLED_MECHANISMS", "SCRAM-SHA-256"),
                ("KAFKA_SASL_MECHANISM_INTER_BROKER_PROTOCOL", "SCRAM-SHA-256"),
            ],
            Err("scram-sha-256.sasl.jaas.config is not set"),
        ),
        (
            &[
                ("KAFKA_SASL_ENABLED_MECHANISMS", "PLAIN,SCRAM-SHA-512"),
                ("KAFKA_SASL_MECHANISM_INTER_BROKER_PROTOCOL", "PLAIN"),
                (
                    "KAFKA_LISTENER_NAME_SASL__PLAINTEXT_PLAIN_SASL_JAAS_CONFIG",
                    "org.apache.kafka.common.security.plain.PlainLoginModule required username=\"admin\" password=\"pw\" user_admin=\"pw\";",
                ),
            ],
            Ok("SASL_PLAINTEXT=SASL_PLAINTEXT mechanisms PLAIN,SCRAM-SHA-512"),
        ),
    ];
    for (extra, want) in cases {
        let env: Vec<(&str, &str)> = base.iter().chain(extra.iter()).copied().collect();
        let (config, props) = config(&env);
        match (Security::build(&config, &props), want) {
            (Ok(s), Ok(line)) => {
                assert_eq!(s.describe(), vec![line.to_string()]);
                assert_eq!(s.inter_broker.sasl.as_ref().map(|l| l.username.as_str()), Some("admin"));
            }
            (Err(e), Err(text)) => assert!(e.contains(text), "{extra:?}: {e}"),
            (Ok(s), Err(text)) => panic!("{extra:?}: built {s:?}, wanted an error with {text}"),
            (Err(e), Ok(_)) => panic!("{extra:?}: {e}"),
        }
    }
}

#[test]
fn ssl_listeners_need_a_key_store() {
    let (config, props) = config(&[
        ("KAFKA_LISTENERS", "PLAINTEXT://:9092,SSL://:9093"),
        ("KAFKA_ADVERTISED_LISTENERS", "PLAINTEXT://h:9092,SSL://h:9093"),
    ]);
    let e = Security::build(&config, &props).unwrap_err();
    assert!(e.contains("listener SSL (SSL)") && e.contains("ssl.keystore.location"), "{e}");
    let (config, props) = config_with_missing_file();
    let e = Security::build(&config, &props).unwrap_err();
    assert!(e.contains("/nonexistent/broker.pem"), "{e}");
}

fn config_with_missing_file() -> (BrokerConfig, SecurityProps) {
    config(&[
        ("KAFKA_LISTENERS", "SSL://:9093"),
        ("KAFKA_ADVERTISED_LISTENERS", "SSL://h:9093"),
        ("KAFKA_INTER_BROKER_LISTENER_NAME", "SSL"),
        ("KAFKA_LISTENER_NAME_SSL_SSL_KEYSTORE_LOCATION", "/nonexistent/broker.pem"),
    ])
}
