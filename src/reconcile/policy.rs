//! Pure: does the target Secret need a new token, and why? Each check returns a reason, in the
//! order a person would look (cert-manager's "needs re-issuing" list).

use jiff::Timestamp;

/// What the controller knows about the target Secret it owns, read from the Secret itself (so
/// decisions survive restarts and do not depend on status writes having succeeded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// Hash of everything that went into the token: spec, target and key fingerprint.
    pub inputs_hash: Option<String>,
    /// The token's own expiry (`se`), never the `expiresAt` field written next to it.
    pub expires_at: Option<Timestamp>,
    /// Whether every data key we write, and the MAC annotation, is present.
    pub complete: bool,
    /// Whether the Secret is exactly what we wrote: its MAC verifies under the current key, and
    /// `expiresAt`, `sasUrl` and `connectionString` agree with the token.
    pub intact: bool,
}

/// Why a new token is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignReason {
    /// No target Secret yet.
    SecretMissing,
    /// The spec or the account key changed since the token was signed.
    InputsChanged,
    /// A data key is missing or unreadable (someone edited the Secret).
    SecretIncomplete,
    /// The Secret's MAC does not verify or its fields disagree with the token: someone other
    /// than the operator changed it.
    SecretTampered,
    /// The renewal time has come.
    RenewalDue,
}

impl SignReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SignReason::SecretMissing => "SecretMissing",
            SignReason::InputsChanged => "InputsChanged",
            SignReason::SecretIncomplete => "SecretIncomplete",
            SignReason::SecretTampered => "SecretTampered",
            SignReason::RenewalDue => "RenewalDue",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Sign(SignReason),
    /// Nothing to do until `renew_at`.
    Keep {
        renew_at: Timestamp,
    },
}

/// Decides whether to sign. `renew_at` maps a token's expiry to its renewal time.
pub fn decide(
    issued: Option<&IssuedToken>,
    inputs_hash: &str,
    now: Timestamp,
    renew_at: impl Fn(Timestamp) -> Timestamp,
) -> Decision {
    let Some(issued) = issued else {
        return Decision::Sign(SignReason::SecretMissing);
    };
    if issued.inputs_hash.as_deref() != Some(inputs_hash) {
        return Decision::Sign(SignReason::InputsChanged);
    }
    let Some(expires_at) = issued.expires_at.filter(|_| issued.complete) else {
        return Decision::Sign(SignReason::SecretIncomplete);
    };
    if !issued.intact {
        return Decision::Sign(SignReason::SecretTampered);
    }
    let due = renew_at(expires_at);
    if now >= due {
        Decision::Sign(SignReason::RenewalDue)
    } else {
        Decision::Keep { renew_at: due }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn issued(expires_at: &str) -> IssuedToken {
        IssuedToken {
            inputs_hash: Some("h1".into()),
            expires_at: Some(ts(expires_at)),
            complete: true,
            intact: true,
        }
    }

    fn one_hour_before(expiry: Timestamp) -> Timestamp {
        expiry - jiff::SignedDuration::from_hours(1)
    }

    #[test]
    fn a_missing_secret_is_signed() {
        assert_eq!(
            decide(None, "h1", ts("2030-01-01T00:00:00Z"), one_hour_before),
            Decision::Sign(SignReason::SecretMissing)
        );
    }

    #[test]
    fn changed_inputs_are_signed_at_once_even_long_before_renewal() {
        let token = issued("2030-01-01T08:00:00Z");
        let decision = decide(
            Some(&token),
            "h2",
            ts("2030-01-01T00:00:01Z"),
            one_hour_before,
        );
        assert_eq!(decision, Decision::Sign(SignReason::InputsChanged));
    }

    #[test]
    fn an_edited_secret_is_signed_again() {
        let mut token = issued("2030-01-01T08:00:00Z");
        token.complete = false;
        let decision = decide(
            Some(&token),
            "h1",
            ts("2030-01-01T00:00:01Z"),
            one_hour_before,
        );
        assert_eq!(decision, Decision::Sign(SignReason::SecretIncomplete));
    }

    #[test]
    fn a_tampered_secret_is_signed_again_at_once() {
        let mut token = issued("2030-01-01T08:00:00Z");
        token.intact = false;
        let decision = decide(
            Some(&token),
            "h1",
            ts("2030-01-01T00:00:01Z"),
            one_hour_before,
        );
        assert_eq!(decision, Decision::Sign(SignReason::SecretTampered));
    }

    #[test]
    fn a_changed_key_reads_as_changed_inputs_not_as_tampering() {
        // A new key no longer verifies the old MAC; the inputs hash says why first.
        let mut token = issued("2030-01-01T08:00:00Z");
        token.intact = false;
        let decision = decide(
            Some(&token),
            "h2",
            ts("2030-01-01T00:00:01Z"),
            one_hour_before,
        );
        assert_eq!(decision, Decision::Sign(SignReason::InputsChanged));
    }

    #[test]
    fn a_fresh_token_is_kept_until_its_renewal_time() {
        let token = issued("2030-01-01T08:00:00Z");
        let decision = decide(
            Some(&token),
            "h1",
            ts("2030-01-01T06:59:59Z"),
            one_hour_before,
        );
        assert_eq!(
            decision,
            Decision::Keep {
                renew_at: ts("2030-01-01T07:00:00Z")
            }
        );
    }

    #[test]
    fn renewal_is_due_at_the_renewal_time() {
        let token = issued("2030-01-01T08:00:00Z");
        let decision = decide(
            Some(&token),
            "h1",
            ts("2030-01-01T07:00:00Z"),
            one_hour_before,
        );
        assert_eq!(decision, Decision::Sign(SignReason::RenewalDue));
    }
}
