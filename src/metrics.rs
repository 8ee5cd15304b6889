//! Prometheus/OpenMetrics metrics of the controller.
//!
//! Labels are bounded on purpose: a grant's namespace and name, and for rotations a static
//! result category. Error text never becomes a label value, so a cardinality explosion (or a
//! leaked detail) cannot come from an error message.
//!
//! The per-grant series live in one map, one small entry per grant (its name once, the values
//! inline), encoded at each scrape by a collector: at 10,000 grants a `Family` per series kept
//! four label sets, hash entries and atomics per grant, plus two indexes to forget them by.
//!
//! Only the replica that may write exports per-grant series and `sas_operator_leader 1`: both
//! are read from the leadership claim at each scrape, so a standby, and a leader whose claim
//! has lapsed, never export a stale copy that alerts would have to tell apart from the real
//! one (docs/monitoring.md).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::leader::LeadershipClaim;

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the reconcile duration histogram, in seconds: 5 ms to 30 s.
const RECONCILE_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Upper bounds of the rotation lateness histogram, in seconds: 10 ms to 1 h, finest around
/// the 1 s target.
const LATENESS_BUCKETS: [f64; 20] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
    300.0, 600.0, 1800.0, 3600.0,
];

/// Why the background writer drops an Event (the `reason` label of `events_dropped`): the
/// queue was full, the object it is about is gone, the API server refused it, or kept failing.
/// Each starts at 0, so that `increase()` sees the first drop too.
pub const EVENT_DROP_REASONS: [&str; 4] = ["overflow", "gone", "refused", "failed"];

/// Whether this process may write now, as its leadership claim says at each scrape. Before a
/// claim is followed (a standby waiting for the Lease) it does not.
#[derive(Debug, Default)]
struct Leadership {
    claim: Mutex<Option<LeadershipClaim>>,
}

impl Leadership {
    fn leads(&self) -> bool {
        self.claim
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(LeadershipClaim::holds)
    }
}

/// Encodes `sas_operator_leader` from the claim at each scrape.
#[derive(Debug)]
struct LeaderCollector {
    leadership: Arc<Leadership>,
}

impl Collector for LeaderCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let family = encoder.encode_descriptor(
            "leader",
            "Whether this replica holds the leader-election Lease and may write (1) or not (0)",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::from(self.leadership.leads())).encode(family)
    }
}

/// The per-grant series of one grant; `None` for a series it does not have (yet).
#[derive(Debug, Default)]
struct GrantSeries {
    expiration: Option<i64>,
    renewal: Option<i64>,
    ready: Option<bool>,
    /// Rotation attempts by result category.
    rotations: Vec<(&'static str, u64)>,
}

/// A per-grant gauge: name, help, unit, and its value in a grant's series.
type GaugeOf = (
    &'static str,
    &'static str,
    Option<Unit>,
    fn(&GrantSeries) -> Option<i64>,
);

/// namespace -> grant name -> its series.
type GrantMap = HashMap<Box<str>, HashMap<Box<str>, GrantSeries>>;

/// Encodes the per-grant series from the map at each scrape, while this replica leads.
#[derive(Debug)]
struct GrantCollector {
    grants: Mutex<GrantMap>,
    leadership: Arc<Leadership>,
}

impl GrantCollector {
    fn lock(&self) -> MutexGuard<'_, GrantMap> {
        self.grants.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies `change` to the series of grant `namespace/name`, created if new.
    fn update(&self, namespace: &str, name: &str, change: impl FnOnce(&mut GrantSeries)) {
        let mut grants = self.lock();
        let names = match grants.get_mut(namespace) {
            Some(names) => names,
            None => grants.entry(namespace.into()).or_default(),
        };
        match names.get_mut(name) {
            Some(series) => change(series),
            None => change(names.entry(name.into()).or_default()),
        }
    }
}

impl Collector for GrantCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // The families are described either way; only their samples are the leader's.
        let empty = GrantMap::new();
        let guard = self.lock();
        let grants = if self.leadership.leads() {
            &*guard
        } else {
            &empty
        };
        let gauges: [GaugeOf; 3] = [
            (
                "grant_expiration_timestamp",
                "When the token in the grant's Secret expires (Unix time)",
                Some(Unit::Seconds),
                |series| series.expiration,
            ),
            (
                "grant_renewal_timestamp",
                "When the grant's token is due to be re-signed (Unix time)",
                Some(Unit::Seconds),
                |series| series.renewal,
            ),
            (
                "grant_ready",
                "Whether the grant's Ready condition is True (1) or not (0)",
                None,
                |series| series.ready.map(i64::from),
            ),
        ];
        for (name, help, unit, value) in &gauges {
            let mut family =
                encoder.encode_descriptor(name, help, unit.as_ref(), MetricType::Gauge)?;
            for (namespace, names) in grants.iter() {
                for (grant, series) in names {
                    if let Some(value) = value(series) {
                        let labels = [("namespace", &**namespace), ("name", &**grant)];
                        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
                    }
                }
            }
        }
        let mut family = encoder.encode_descriptor(
            "rotations",
            "Token rotations attempted, by result (success or an error category)",
            None,
            MetricType::Counter,
        )?;
        for (namespace, names) in grants.iter() {
            for (grant, series) in names {
                for (result, count) in &series.rotations {
                    let labels = [
                        ("namespace", &**namespace),
                        ("name", &**grant),
                        ("result", *result),
                    ];
                    ConstCounter::new(*count).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DroppedEventLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildInfoLabels {
    version: &'static str,
}

/// All metrics of one operator process. Cloning is cheap; clones share the same series.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Events the background writer dropped, by why (`overflow`, `failed`, ...).
    events_dropped: Family<DroppedEventLabels, Counter>,
    grants: Arc<GrantCollector>,
    leadership: Arc<Leadership>,
    reconcile_duration: Histogram,
    reconciles: Counter,
    rotation_lateness: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sas_operator");
        let build_info = Family::<BuildInfoLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildInfoLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register(
            "build_info",
            "The operator's version, in the labels (the value is always 1)",
            build_info,
        );
        let leadership = Arc::new(Leadership::default());
        registry.register_collector(Box::new(LeaderCollector {
            leadership: leadership.clone(),
        }));
        let events_dropped = Family::<DroppedEventLabels, Counter>::default();
        for reason in EVENT_DROP_REASONS {
            let _ = events_dropped.get_or_create(&DroppedEventLabels { reason });
        }
        registry.register(
            "events_dropped",
            "Events not published: the queue was full (overflow), their object was gone, the API server refused them or kept failing",
            events_dropped.clone(),
        );
        let grants = Arc::new(GrantCollector {
            grants: Mutex::default(),
            leadership: leadership.clone(),
        });
        registry.register_collector(Box::new(grants.clone()));
        let reconcile_duration = Histogram::new(RECONCILE_BUCKETS);
        registry.register_with_unit(
            "reconcile_duration",
            "Time spent in one reconcile",
            Unit::Seconds,
            reconcile_duration.clone(),
        );
        let reconciles = Counter::default();
        registry.register(
            "reconciles",
            "Reconciles run (one per change is the aim; see the scale benchmark)",
            reconciles.clone(),
        );
        let rotation_lateness = Histogram::new(LATENESS_BUCKETS);
        registry.register_with_unit(
            "rotation_lateness",
            "Time between a rotation's scheduled time and the write of the new token",
            Unit::Seconds,
            rotation_lateness.clone(),
        );
        Self {
            registry: Arc::new(registry),
            events_dropped,
            grants,
            leadership,
            reconcile_duration,
            reconciles,
            rotation_lateness,
        }
    }

    /// From now on, this process leads (`sas_operator_leader 1`, per-grant series exported)
    /// exactly while `claim` holds: [`LeadershipClaim::unconditional`] without leader
    /// election, the Lease's claim with it.
    pub fn follow_leadership(&self, claim: LeadershipClaim) {
        *self
            .leadership
            .claim
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(claim);
    }

    /// Records when the grant's current token expires and when it will be re-signed.
    pub fn set_grant_schedule(
        &self,
        namespace: &str,
        name: &str,
        expires_at: jiff::Timestamp,
        renews_at: jiff::Timestamp,
    ) {
        self.grants.update(namespace, name, |series| {
            series.expiration = Some(expires_at.as_second());
            series.renewal = Some(renews_at.as_second());
        });
    }

    pub fn set_ready(&self, namespace: &str, name: &str, ready: bool) {
        self.grants
            .update(namespace, name, |series| series.ready = Some(ready));
    }

    /// Counts one rotation attempt. `result` is `"success"` or a static error category
    /// (e.g. `"KeySecretNotFound"`), never an error message.
    pub fn record_rotation(&self, namespace: &str, name: &str, result: &'static str) {
        self.grants.update(namespace, name, |series| {
            match series
                .rotations
                .iter_mut()
                .find(|(known, _)| *known == result)
            {
                Some((_, count)) => *count += 1,
                None => series.rotations.push((result, 1)),
            }
        });
    }

    /// Counts one Event the background writer dropped; `reason` is static.
    pub fn record_event_dropped(&self, reason: &'static str) {
        self.events_dropped
            .get_or_create(&DroppedEventLabels { reason })
            .inc();
    }

    pub fn observe_reconcile(&self, seconds: f64) {
        self.reconciles.inc();
        if seconds.is_finite() {
            self.reconcile_duration.observe(seconds.max(0.0));
        }
    }

    /// Observes how late a rotation was written: actual write time minus scheduled time.
    /// A write ahead of schedule (negative lateness) counts as on time (0).
    pub fn observe_rotation_lateness(&self, seconds: f64) {
        if seconds.is_finite() {
            self.rotation_lateness.observe(seconds.max(0.0));
        }
    }

    /// (namespace, name) of every grant that has per-grant series.
    pub fn grants(&self) -> Vec<(String, String)> {
        self.grants
            .lock()
            .iter()
            .flat_map(|(namespace, names)| {
                names
                    .keys()
                    .map(|name| (namespace.to_string(), name.to_string()))
            })
            .collect()
    }

    /// Removes every per-grant series of a deleted grant.
    pub fn forget_grant(&self, namespace: &str, name: &str) {
        let mut grants = self.grants.lock();
        if let Some(names) = grants.get_mut(namespace) {
            names.remove(name);
            if names.is_empty() {
                grants.remove(namespace);
            }
        }
    }

    /// Encodes every metric in the OpenMetrics text format (see [`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn lines(metrics: &Metrics) -> Vec<String> {
        metrics.encode().lines().map(str::to_owned).collect()
    }

    fn has_line(metrics: &Metrics, expected: &str) -> bool {
        lines(metrics).iter().any(|line| line == expected)
    }

    fn assert_has_lines(metrics: &Metrics, expected: &[&str]) {
        for expected in expected {
            assert!(
                has_line(metrics, expected),
                "missing {expected:?} in:\n{}",
                metrics.encode()
            );
        }
    }

    /// Metrics of a replica that may write (as without leader election).
    fn leading() -> Metrics {
        let metrics = Metrics::new();
        metrics.follow_leadership(LeadershipClaim::unconditional());
        metrics
    }

    fn timestamp(seconds: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(seconds).unwrap()
    }

    #[test]
    fn grant_schedule_is_exported_as_unix_timestamps() {
        let metrics = leading();
        metrics.set_grant_schedule(
            "apps",
            "reports",
            timestamp(1_800_000_000),
            timestamp(1_799_990_000),
        );
        let text = metrics.encode();
        for expected in [
            "# TYPE sas_operator_grant_expiration_timestamp_seconds gauge",
            "# UNIT sas_operator_grant_expiration_timestamp_seconds seconds",
            r#"sas_operator_grant_expiration_timestamp_seconds{namespace="apps",name="reports"} 1800000000"#,
            "# TYPE sas_operator_grant_renewal_timestamp_seconds gauge",
            r#"sas_operator_grant_renewal_timestamp_seconds{namespace="apps",name="reports"} 1799990000"#,
        ] {
            assert!(
                text.lines().any(|line| line == expected),
                "missing {expected:?} in:\n{text}"
            );
        }
    }

    #[test]
    fn a_new_schedule_replaces_the_old_one() {
        let metrics = leading();
        metrics.set_grant_schedule("apps", "reports", timestamp(100), timestamp(50));
        metrics.set_grant_schedule("apps", "reports", timestamp(200), timestamp(150));
        assert!(has_line(
            &metrics,
            r#"sas_operator_grant_expiration_timestamp_seconds{namespace="apps",name="reports"} 200"#
        ));
        assert!(!has_line(
            &metrics,
            r#"sas_operator_grant_expiration_timestamp_seconds{namespace="apps",name="reports"} 100"#
        ));
    }

    #[test]
    fn ready_is_one_or_zero() {
        let metrics = leading();
        metrics.set_ready("apps", "good", true);
        metrics.set_ready("apps", "bad", false);
        assert!(has_line(
            &metrics,
            r#"sas_operator_grant_ready{namespace="apps",name="good"} 1"#
        ));
        assert!(has_line(
            &metrics,
            r#"sas_operator_grant_ready{namespace="apps",name="bad"} 0"#
        ));
        metrics.set_ready("apps", "bad", true);
        assert!(has_line(
            &metrics,
            r#"sas_operator_grant_ready{namespace="apps",name="bad"} 1"#
        ));
    }

    #[test]
    fn rotations_are_counted_per_result() {
        let metrics = leading();
        metrics.record_rotation("apps", "reports", "success");
        metrics.record_rotation("apps", "reports", "success");
        metrics.record_rotation("apps", "reports", "KeySecretNotFound");
        assert!(has_line(&metrics, "# TYPE sas_operator_rotations counter"));
        assert!(has_line(
            &metrics,
            r#"sas_operator_rotations_total{namespace="apps",name="reports",result="success"} 2"#
        ));
        assert!(has_line(
            &metrics,
            r#"sas_operator_rotations_total{namespace="apps",name="reports",result="KeySecretNotFound"} 1"#
        ));
    }

    #[test]
    fn reconcile_duration_is_a_histogram_in_seconds() {
        let metrics = leading();
        metrics.observe_reconcile(0.02);
        metrics.observe_reconcile(3.0);
        assert_has_lines(
            &metrics,
            &[
                "# TYPE sas_operator_reconcile_duration_seconds histogram",
                "sas_operator_reconcile_duration_seconds_sum 3.02",
                "sas_operator_reconcile_duration_seconds_count 2",
                r#"sas_operator_reconcile_duration_seconds_bucket{le="0.01"} 0"#,
                r#"sas_operator_reconcile_duration_seconds_bucket{le="0.025"} 1"#,
                r#"sas_operator_reconcile_duration_seconds_bucket{le="2.5"} 1"#,
                r#"sas_operator_reconcile_duration_seconds_bucket{le="5.0"} 2"#,
                r#"sas_operator_reconcile_duration_seconds_bucket{le="+Inf"} 2"#,
            ],
        );
    }

    #[test]
    fn rotation_lateness_buckets_span_a_tenth_of_a_second_to_an_hour() {
        let metrics = leading();
        metrics.observe_rotation_lateness(0.05);
        metrics.observe_rotation_lateness(3000.0);
        metrics.observe_rotation_lateness(7200.0);
        assert_has_lines(
            &metrics,
            &[
                "# TYPE sas_operator_rotation_lateness_seconds histogram",
                r#"sas_operator_rotation_lateness_seconds_bucket{le="0.1"} 1"#,
                r#"sas_operator_rotation_lateness_seconds_bucket{le="1800.0"} 1"#,
                r#"sas_operator_rotation_lateness_seconds_bucket{le="3600.0"} 2"#,
                r#"sas_operator_rotation_lateness_seconds_bucket{le="+Inf"} 3"#,
                "sas_operator_rotation_lateness_seconds_count 3",
            ],
        );
    }

    #[test]
    fn rotation_lateness_buckets_resolve_the_one_second_target() {
        let metrics = leading();
        metrics.observe_rotation_lateness(0.02);
        metrics.observe_rotation_lateness(0.8);
        metrics.observe_rotation_lateness(1.2);
        assert_has_lines(
            &metrics,
            &[
                r#"sas_operator_rotation_lateness_seconds_bucket{le="0.025"} 1"#,
                r#"sas_operator_rotation_lateness_seconds_bucket{le="0.75"} 1"#,
                r#"sas_operator_rotation_lateness_seconds_bucket{le="1.0"} 2"#,
                r#"sas_operator_rotation_lateness_seconds_bucket{le="1.5"} 3"#,
            ],
        );
    }

    #[test]
    fn early_rotation_counts_as_on_time_and_nonsense_is_ignored() {
        let metrics = leading();
        metrics.observe_rotation_lateness(-5.0);
        metrics.observe_rotation_lateness(f64::NAN);
        metrics.observe_reconcile(f64::INFINITY);
        assert!(has_line(
            &metrics,
            "sas_operator_rotation_lateness_seconds_sum 0.0"
        ));
        assert!(has_line(
            &metrics,
            "sas_operator_rotation_lateness_seconds_count 1"
        ));
        assert!(has_line(
            &metrics,
            "sas_operator_reconcile_duration_seconds_count 0"
        ));
    }

    #[test]
    fn grants_lists_every_grant_with_series_until_it_is_forgotten() {
        let metrics = leading();
        metrics.set_ready("apps", "ready", true);
        metrics.set_grant_schedule("apps", "scheduled", timestamp(100), timestamp(50));
        metrics.record_rotation("apps", "failed", "KeySecretNotFound");
        let mut grants = metrics.grants();
        grants.sort();
        assert_eq!(
            grants,
            [("apps", "failed"), ("apps", "ready"), ("apps", "scheduled")]
                .map(|(ns, name)| (ns.to_string(), name.to_string()))
        );
        metrics.forget_grant("apps", "ready");
        assert!(!metrics.grants().contains(&("apps".into(), "ready".into())));
    }

    #[test]
    fn forgetting_a_grant_removes_all_its_series_and_only_its_series() {
        let metrics = leading();
        for name in ["gone", "kept"] {
            metrics.set_grant_schedule("apps", name, timestamp(100), timestamp(50));
            metrics.set_ready("apps", name, true);
            metrics.record_rotation("apps", name, "success");
            metrics.record_rotation("apps", name, "SecretNotOwned");
        }
        metrics.forget_grant("apps", "gone");
        let text = metrics.encode();
        assert!(
            !text.contains(r#"name="gone""#),
            "series of a forgotten grant remain:\n{text}"
        );
        assert_eq!(
            text.matches(r#"name="kept""#).count(),
            5,
            "series of the other grant:\n{text}"
        );
    }

    #[test]
    fn a_forgotten_grant_that_comes_back_starts_from_zero() {
        let metrics = leading();
        metrics.record_rotation("apps", "reports", "success");
        metrics.forget_grant("apps", "reports");
        metrics.record_rotation("apps", "reports", "success");
        assert!(has_line(
            &metrics,
            r#"sas_operator_rotations_total{namespace="apps",name="reports",result="success"} 1"#
        ));
    }

    #[test]
    fn label_values_are_escaped() {
        let metrics = leading();
        metrics.set_ready("apps", "a\"b", true);
        assert!(has_line(
            &metrics,
            r#"sas_operator_grant_ready{namespace="apps",name="a\"b"} 1"#
        ));
    }

    #[test]
    fn clones_share_series_and_output_ends_with_eof() {
        let metrics = leading();
        metrics.clone().set_ready("apps", "reports", true);
        assert!(has_line(
            &metrics,
            r#"sas_operator_grant_ready{namespace="apps",name="reports"} 1"#
        ));
        assert_eq!(lines(&metrics).last().map(String::as_str), Some("# EOF"));
    }

    #[test]
    fn every_reconcile_is_counted_even_one_whose_duration_is_not_finite() {
        let metrics = leading();
        metrics.observe_reconcile(0.1);
        metrics.observe_reconcile(f64::NAN);
        assert!(has_line(&metrics, "sas_operator_reconciles_total 2"));
    }

    #[test]
    fn a_standby_reports_leader_zero_and_no_per_grant_samples() {
        let metrics = Metrics::new();
        metrics.set_ready("apps", "reports", true);
        metrics.set_grant_schedule("apps", "reports", timestamp(100), timestamp(50));
        metrics.record_rotation("apps", "reports", "success");
        let text = metrics.encode();
        assert!(has_line(&metrics, "sas_operator_leader 0"), "{text}");
        assert!(!text.contains(r#"name="reports""#), "{text}");
        // The families stay described, so a scrape of a standby still names them.
        assert!(
            has_line(&metrics, "# TYPE sas_operator_grant_ready gauge"),
            "{text}"
        );
    }

    #[test]
    fn without_leader_election_the_replica_leads() {
        let metrics = leading();
        metrics.set_ready("apps", "reports", true);
        assert_has_lines(
            &metrics,
            &[
                "sas_operator_leader 1",
                r#"sas_operator_grant_ready{namespace="apps",name="reports"} 1"#,
            ],
        );
    }

    #[test]
    fn a_lapsed_claim_reports_leader_zero_and_hides_per_grant_samples_at_once() {
        let metrics = Metrics::new();
        let claim =
            LeadershipClaim::held_until(std::time::Instant::now() + Duration::from_secs(60));
        metrics.follow_leadership(claim.clone());
        metrics.set_ready("apps", "reports", true);
        assert_has_lines(
            &metrics,
            &[
                "sas_operator_leader 1",
                r#"sas_operator_grant_ready{namespace="apps",name="reports"} 1"#,
            ],
        );
        claim.revoke();
        let text = metrics.encode();
        assert!(has_line(&metrics, "sas_operator_leader 0"), "{text}");
        assert!(!text.contains(r#"name="reports""#), "{text}");
    }

    #[test]
    fn build_info_is_one_with_the_crate_version() {
        let metrics = Metrics::new();
        assert!(has_line(
            &metrics,
            &format!(
                r#"sas_operator_build_info{{version="{}"}} 1"#,
                env!("CARGO_PKG_VERSION")
            )
        ));
    }

    #[test]
    fn every_event_drop_reason_is_exported_from_zero() {
        let metrics = Metrics::new();
        for reason in EVENT_DROP_REASONS {
            assert!(has_line(
                &metrics,
                &format!(r#"sas_operator_events_dropped_total{{reason="{reason}"}} 0"#)
            ));
        }
    }
}
