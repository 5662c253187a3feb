//! DescribeUserScramCredentials and AlterUserScramCredentials (KIP-554; `kafka-configs
//! --entity-type users --alter --add-config 'SCRAM-SHA-256=[...]'` on Kafka 2.7+, and
//! confluent-kafka's admin client): SCRAM credentials stored in `/config/users/<user>`
//! under the mechanism's name, in Kafka's format, through the one config write (which
//! announces the change on `/config/changes`, so every broker takes it up at once).

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    alter_user_scram_credentials_response, describe_user_scram_credentials_response, AlterUserScramCredentialsRequest,
    AlterUserScramCredentialsResponse, DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use tributary_common::scram::{Credential, Mechanism, MAX_ITERATIONS, MIN_ITERATIONS};
use tributary_common::znode::ConfigEntity;

use super::admin::{admin_err, AdminError};
use super::configs::read_modify_write;
use super::{s, BrokerContext};

/// One credential change of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// Remove the credential of this mechanism.
    Delete(Mechanism),
    /// Store this credential.
    Upsert(Mechanism, String),
}

/// An upsertion as the request carries it.
pub(crate) struct Upsertion<'a> {
    pub(crate) user: &'a str,
    pub(crate) mechanism: i8,
    pub(crate) iterations: i32,
    pub(crate) salt: &'a [u8],
    pub(crate) salted_password: &'a [u8],
}

type Outcome = Result<Vec<Change>, (ResponseError, String)>;

/// Groups a request's deletions and upsertions by user and checks them as Kafka does:
/// known mechanism, a user name, iterations within 4096..=16384, a salt and a salted
/// password, and no user and mechanism twice.
pub(crate) fn plan(deletions: &[(&str, i8)], upsertions: &[Upsertion<'_>]) -> BTreeMap<String, Outcome> {
    let mut out: BTreeMap<String, Outcome> = BTreeMap::new();
    let mut seen: BTreeMap<(String, i8), usize> = BTreeMap::new();
    for (user, m) in deletions.iter().copied().chain(upsertions.iter().map(|u| (u.user, u.mechanism))) {
        *seen.entry((user.to_string(), m)).or_default() += 1;
    }
    let mut add = |user: &str, change: Result<Change, (ResponseError, String)>| {
        let entry = out.entry(user.to_string()).or_insert_with(|| Ok(Vec::new()));
        match (entry.as_mut(), change) {
            (Ok(changes), Ok(c)) => changes.push(c),
            (Ok(_), Err(e)) => *entry = Err(e),
            (Err(_), _) => {}
        }
    };
    let check = |user: &str, m: i8| -> Result<Mechanism, (ResponseError, String)> {
        if user.is_empty() {
            return Err((ResponseError::UnacceptableCredential, "Username must not be empty".into()));
        }
        let mechanism = Mechanism::from_wire_type(m)
            .ok_or((ResponseError::UnsupportedSaslMechanism, "Unknown SCRAM mechanism".to_string()))?;
        if seen.get(&(user.to_string(), m)).copied().unwrap_or(0) > 1 {
            return Err((
                ResponseError::DuplicateResource,
                "A user credential cannot be altered twice in the same request".into(),
            ));
        }
        Ok(mechanism)
    };
    for (user, m) in deletions {
        add(user, check(user, *m).map(Change::Delete));
    }
    for u in upsertions {
        let change = check(u.user, u.mechanism).and_then(|m| {
            if u.iterations < MIN_ITERATIONS as i32 {
                return Err((ResponseError::UnacceptableCredential, format!("Too few iterations: at least {MIN_ITERATIONS}")));
            }
            if u.iterations > MAX_ITERATIONS as i32 {
                return Err((ResponseError::UnacceptableCredential, format!("Too many iterations: at most {MAX_ITERATIONS}")));
            }
            if u.salt.is_empty() || u.salted_password.len() != m.hash_len() {
                return Err((
                    ResponseError::UnacceptableCredential,
                    format!("An upsertion needs a salt and a {}-byte salted password", m.hash_len()),
                ));
            }
            let credential =
                Credential::from_salted_password(m, u.salted_password, u.salt.to_vec(), u.iterations as u32);
            Ok(Change::Upsert(m, credential.to_config_value()))
        });
        add(u.user, change);
    }
    out
}

/// A user's config with `changes` applied; deleting a credential that is not there fails.
///
/// # Errors
/// RESOURCE_NOT_FOUND with Kafka's message.
pub(crate) fn apply(current: &BTreeMap<String, String>, changes: &[Change]) -> Result<BTreeMap<String, String>, (ResponseError, String)> {
    let mut next = current.clone();
    for change in changes {
        match change {
            Change::Delete(m) => {
                if next.remove(m.name()).is_none() {
                    return Err((
                        ResponseError::ResourceNotFound,
                        "Attempt to delete a user credential that does not exist".into(),
                    ));
                }
            }
            Change::Upsert(m, value) => {
                next.insert(m.name().to_string(), value.clone());
            }
        }
    }
    Ok(next)
}

/// The SCRAM mechanisms and iteration counts stored in a user's config.
pub(crate) fn credential_infos(config: &BTreeMap<String, String>) -> Vec<(Mechanism, i32)> {
    tributary_common::scram::stored_credentials(config).into_iter().map(|(m, c)| (m, c.iterations as i32)).collect()
}

pub(super) fn describe(ctx: &BrokerContext, request: DescribeUserScramCredentialsRequest) -> DescribeUserScramCredentialsResponse {
    let mut response = DescribeUserScramCredentialsResponse::default();
    response.error_message = None;
    let cluster = ctx.cluster();
    let stored: BTreeMap<String, Vec<(Mechanism, i32)>> = cluster
        .entity_configs
        .iter()
        .filter_map(|(e, config)| match e {
            ConfigEntity::User(Some(user)) => Some((user.clone(), credential_infos(config))),
            _ => None,
        })
        .filter(|(_, infos)| !infos.is_empty())
        .collect();
    let wanted: Vec<String> = match &request.users {
        Some(users) if !users.is_empty() => users.iter().map(|u| u.name.as_str().to_string()).collect(),
        _ => stored.keys().cloned().collect(),
    };
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for w in &wanted {
        *counts.entry(w.as_str()).or_default() += 1;
    }
    let mut answered = std::collections::BTreeSet::new();
    for user in &wanted {
        if !answered.insert(user.clone()) {
            continue;
        }
        let mut r = describe_user_scram_credentials_response::DescribeUserScramCredentialsResult::default();
        r.user = s(user.clone());
        r.error_message = None;
        if counts[user.as_str()] > 1 {
            r.error_code = ResponseError::DuplicateResource.code();
            r.error_message = Some(s(format!("Cannot describe SCRAM credentials for the same user twice in a single request: {user}")));
        } else {
            match stored.get(user) {
                None => {
                    r.error_code = ResponseError::ResourceNotFound.code();
                    r.error_message = Some(s(format!("Attempt to describe a user credential that does not exist: {user}")));
                }
                Some(infos) => {
                    r.credential_infos = infos
                        .iter()
                        .map(|(m, iterations)| {
                            let mut info = describe_user_scram_credentials_response::CredentialInfo::default();
                            info.mechanism = m.wire_type();
                            info.iterations = *iterations;
                            info
                        })
                        .collect();
                }
            }
        }
        response.results.push(r);
    }
    response
}

pub(super) async fn alter(ctx: &BrokerContext, request: AlterUserScramCredentialsRequest) -> AlterUserScramCredentialsResponse {
    let deletions: Vec<(&str, i8)> = request.deletions.iter().map(|d| (d.name.as_str(), d.mechanism)).collect();
    let upsertions: Vec<Upsertion<'_>> = request
        .upsertions
        .iter()
        .map(|u| Upsertion {
            user: u.name.as_str(),
            mechanism: u.mechanism,
            iterations: u.iterations,
            salt: &u.salt,
            salted_password: &u.salted_password,
        })
        .collect();
    let mut response = AlterUserScramCredentialsResponse::default();
    for (user, outcome) in plan(&deletions, &upsertions) {
        let result: Result<(), AdminError> = match outcome {
            Err((code, message)) => Err(admin_err(code, message)),
            Ok(changes) => {
                let entity = ConfigEntity::User(Some(user.clone()));
                let written = read_modify_write(ctx, entity, false, |current| {
                    apply(current, &changes).map_err(|(code, message)| admin_err(code, message))
                })
                .await;
                let summary: Vec<String> = changes
                    .iter()
                    .map(|c| match c {
                        Change::Delete(m) => format!("delete {m}"),
                        Change::Upsert(m, _) => format!("set {m}"),
                    })
                    .collect();
                match &written {
                    Ok(()) => tracing::info!(user, changes = ?summary, "SCRAM credentials changed in /config/users"),
                    Err(e) => tracing::info!(user, changes = ?summary, error = %e.message, "SCRAM credential change refused"),
                }
                written
            }
        };
        let mut r = alter_user_scram_credentials_response::AlterUserScramCredentialsResult::default();
        r.user = s(user);
        r.error_message = None;
        if let Err(e) = result {
            r.error_code = e.code;
            r.error_message = Some(s(e.message));
        }
        response.results.push(r);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(user: &str, mechanism: i8, iterations: i32) -> Upsertion<'_> {
        const SALTED: [u8; 64] = [7; 64];
        let len = if mechanism == 2 { 64 } else { 32 };
        Upsertion { user, mechanism, iterations, salt: b"salt", salted_password: &SALTED[..len] }
    }

    fn code(outcome: &Outcome) -> Option<ResponseError> {
        outcome.as_ref().err().map(|(c, _)| *c)
    }

    #[test]
    fn requests_are_checked_per_user_as_kafka_checks_them() {
        let planned = plan(
            &[("gone", 1), ("twice", 1)],
            &[
                up("alice", 1, 4096),
                up("alice", 2, 8192),
                up("twice", 1, 4096),
                up("few", 1, 100),
                up("many", 2, 20000),
                up("", 1, 4096),
                up("weird", 3, 4096),
            ],
        );
        assert!(matches!(&planned["alice"], Ok(c) if c.len() == 2));
        assert_eq!(planned["gone"], Ok(vec![Change::Delete(Mechanism::Sha256)]));
        assert_eq!(code(&planned["twice"]), Some(ResponseError::DuplicateResource));
        assert_eq!(code(&planned["few"]), Some(ResponseError::UnacceptableCredential));
        assert_eq!(code(&planned["many"]), Some(ResponseError::UnacceptableCredential));
        assert_eq!(code(&planned[""]), Some(ResponseError::UnacceptableCredential));
        assert_eq!(code(&planned["weird"]), Some(ResponseError::UnsupportedSaslMechanism));
        let short = Upsertion { salted_password: b"short", ..up("short", 1, 4096) };
        assert_eq!(code(&plan(&[], &[short])["short"]), Some(ResponseError::UnacceptableCredential));
    }

    #[test]
    fn changes_apply_to_the_stored_config_and_keep_quotas() {
        let current: BTreeMap<String, String> = [("producer_byte_rate".to_string(), "1024".to_string())].into();
        let set = plan(&[], &[up("alice", 1, 4096)]).remove("alice").unwrap().unwrap();
        let next = apply(&current, &set).unwrap();
        assert_eq!(next["producer_byte_rate"], "1024");
        assert_eq!(credential_infos(&next), vec![(Mechanism::Sha256, 4096)]);
        let removed = apply(&next, &[Change::Delete(Mechanism::Sha256)]).unwrap();
        assert_eq!(removed, current);
        let missing = apply(&current, &[Change::Delete(Mechanism::Sha512)]).unwrap_err();
        assert_eq!(missing.0, ResponseError::ResourceNotFound);
    }
}
