//! Placeholder with the agreed interface; replaced by the metrics implementation.

#[derive(Clone, Default)]
pub struct Metrics;

impl Metrics {
    pub fn new() -> Self {
        Metrics
    }
    pub fn set_grant_schedule(
        &self,
        _namespace: &str,
        _name: &str,
        _expires_at: jiff::Timestamp,
        _renews_at: jiff::Timestamp,
    ) {
    }
    pub fn set_ready(&self, _namespace: &str, _name: &str, _ready: bool) {}
    pub fn record_rotation(&self, _namespace: &str, _name: &str, _result: &'static str) {}
    pub fn observe_reconcile(&self, _seconds: f64) {}
    pub fn observe_rotation_lateness(&self, _seconds: f64) {}
    pub fn forget_grant(&self, _namespace: &str, _name: &str) {}
}
