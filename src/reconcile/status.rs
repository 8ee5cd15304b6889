//! Pure: the status a grant should show, and whether that differs from what it shows.

use jiff::Timestamp;

use crate::crd::{GrantCondition, SasGrantStatus};

pub const CONDITION_READY: &str = "Ready";
pub const REASON_TOKEN_VALID: &str = "TokenValid";

/// Facts about the token in the target Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFacts {
    pub expires_at: Timestamp,
    pub renews_at: Timestamp,
    pub rotated_at: Option<Timestamp>,
    pub token_hash: Option<String>,
}

/// How the reconcile ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ready(TokenFacts),
    /// `reason` is a static category; `message` is specific and free of secrets.
    Failed {
        reason: &'static str,
        message: String,
    },
}

/// The status to show. On failure the token facts of `current` stay: the Secret still holds
/// that token, and status must not claim otherwise.
pub fn desired_status(
    current: Option<&SasGrantStatus>,
    generation: Option<i64>,
    resource_kind: Option<&str>,
    secret_name: Option<&str>,
    outcome: &Outcome,
    now: Timestamp,
) -> SasGrantStatus {
    let mut status = current.cloned().unwrap_or_default();
    status.observed_generation = generation;
    if let Some(kind) = resource_kind {
        status.resource_kind = Some(kind.to_string());
    }
    if let Some(name) = secret_name {
        status.secret_name = Some(name.to_string());
    }
    let (condition_status, reason, message) = match outcome {
        Outcome::Ready(facts) => {
            status.expires_at = Some(facts.expires_at.to_string());
            status.renews_at = Some(facts.renews_at.to_string());
            status.last_rotation_time = facts
                .rotated_at
                .map(|t| t.to_string())
                .or(status.last_rotation_time);
            status.token_hash = facts.token_hash.clone().or(status.token_hash);
            (
                "True",
                REASON_TOKEN_VALID,
                format!("token valid until {}", facts.expires_at),
            )
        }
        Outcome::Failed { reason, message } => (
            "False",
            *reason,
            crate::error::truncate_message(message).into_owned(),
        ),
    };
    let previous = status
        .conditions
        .iter()
        .find(|c| c.type_ == CONDITION_READY);
    let last_transition_time = match previous {
        Some(previous) if previous.status == condition_status => {
            previous.last_transition_time.clone()
        }
        _ => now.to_string(),
    };
    let ready = GrantCondition {
        type_: CONDITION_READY.into(),
        status: condition_status.into(),
        reason: reason.into(),
        message,
        last_transition_time,
        observed_generation: generation,
    };
    status.conditions.retain(|c| c.type_ != CONDITION_READY);
    status.conditions.insert(0, ready);
    status
}

/// The Ready condition of a status, if any.
pub fn ready_condition(status: Option<&SasGrantStatus>) -> Option<&GrantCondition> {
    status?
        .conditions
        .iter()
        .find(|c| c.type_ == CONDITION_READY)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn facts() -> TokenFacts {
        TokenFacts {
            expires_at: ts("2030-01-01T08:00:00Z"),
            renews_at: ts("2030-01-01T05:20:00Z"),
            rotated_at: Some(ts("2030-01-01T00:00:00Z")),
            token_hash: Some("0123456789abcdef".into()),
        }
    }

    /// The status of a blob grant writing Secret "app".
    fn status_for(
        previous: Option<&SasGrantStatus>,
        generation: Option<i64>,
        outcome: &Outcome,
        now: Timestamp,
    ) -> SasGrantStatus {
        desired_status(
            previous,
            generation,
            Some("blob"),
            Some("app"),
            outcome,
            now,
        )
    }

    #[test]
    fn a_ready_grant_shows_expiry_renewal_and_token_hash() {
        let status = status_for(
            None,
            Some(3),
            &Outcome::Ready(facts()),
            ts("2030-01-01T00:00:01Z"),
        );
        assert_eq!(status.expires_at.as_deref(), Some("2030-01-01T08:00:00Z"));
        assert_eq!(status.renews_at.as_deref(), Some("2030-01-01T05:20:00Z"));
        assert_eq!(status.token_hash.as_deref(), Some("0123456789abcdef"));
        assert_eq!(status.observed_generation, Some(3));
        let ready = ready_condition(Some(&status)).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", REASON_TOKEN_VALID)
        );
        assert_eq!(ready.last_transition_time, "2030-01-01T00:00:01Z");
    }

    #[test]
    fn an_unchanged_outcome_gives_an_identical_status() {
        let first = status_for(
            None,
            Some(1),
            &Outcome::Ready(facts()),
            ts("2030-01-01T00:00:01Z"),
        );
        let again = status_for(
            Some(&first),
            Some(1),
            &Outcome::Ready(facts()),
            ts("2030-01-01T01:00:00Z"),
        );
        assert_eq!(first, again);
    }

    #[test]
    fn a_failure_keeps_the_token_facts_and_flips_ready() {
        let ready = status_for(
            None,
            Some(1),
            &Outcome::Ready(facts()),
            ts("2030-01-01T00:00:01Z"),
        );
        let failed = Outcome::Failed {
            reason: "KeySecretNotFound",
            message: "key Secret \"k\" not found".into(),
        };
        let status = status_for(Some(&ready), Some(2), &failed, ts("2030-01-01T00:10:00Z"));
        assert_eq!(status.expires_at, ready.expires_at);
        assert_eq!(status.token_hash, ready.token_hash);
        let condition = ready_condition(Some(&status)).unwrap();
        assert_eq!(
            (condition.status.as_str(), condition.reason.as_str()),
            ("False", "KeySecretNotFound")
        );
        assert_eq!(condition.last_transition_time, "2030-01-01T00:10:00Z");
    }

    #[test]
    fn a_failure_message_is_cut_to_one_kibibyte() {
        let failed = Outcome::Failed {
            reason: "InvalidName",
            message: "x".repeat(10_000),
        };
        let status = status_for(None, Some(1), &failed, ts("2030-01-01T00:00:00Z"));
        let condition = ready_condition(Some(&status)).unwrap();
        assert!(condition.message.len() <= crate::error::MAX_MESSAGE_BYTES);
    }
}
