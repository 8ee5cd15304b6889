//! The test API server's audit log: one JSON event per request stage, the witness of what a
//! client (the operator under its ServiceAccount) asked for and what it was answered.
//!
//! Every test binary reads it through these types, so that a test about requests cannot be
//! blind to a field another test parses differently.

use serde::Deserialize;

use super::control_plane;

/// The verbs that change something.
pub const WRITE_VERBS: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];

/// One audit event (fields the tests use; the log's other fields are ignored).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// `RequestReceived`, `ResponseStarted` (watches) or `ResponseComplete`.
    pub stage: String,
    pub verb: String,
    #[serde(rename = "requestURI")]
    pub request_uri: String,
    pub user: AuditUser,
    #[serde(default)]
    pub object_ref: Option<AuditObjectRef>,
    #[serde(default)]
    pub response_status: Option<AuditResponseStatus>,
    #[serde(rename = "requestReceivedTimestamp")]
    pub received: jiff::Timestamp,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuditUser {
    /// Empty for a request that failed authentication.
    #[serde(default)]
    pub username: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditObjectRef {
    pub resource: Option<String>,
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// Empty for the core group.
    #[serde(default)]
    pub api_group: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuditResponseStatus {
    pub code: Option<u16>,
}

impl AuditEvent {
    pub fn username(&self) -> &str {
        &self.user.username
    }

    pub fn resource(&self) -> Option<&str> {
        self.object_ref.as_ref()?.resource.as_deref()
    }

    pub fn subresource(&self) -> Option<&str> {
        self.object_ref.as_ref()?.subresource.as_deref()
    }

    pub fn namespace(&self) -> Option<&str> {
        self.object_ref.as_ref()?.namespace.as_deref()
    }

    pub fn name(&self) -> Option<&str> {
        self.object_ref.as_ref()?.name.as_deref()
    }

    /// The answer's HTTP status (None before the response).
    pub fn code(&self) -> Option<u16> {
        self.response_status.as_ref()?.code
    }

    /// `resource` or `resource/subresource`.
    pub fn resource_path(&self) -> Option<String> {
        let resource = self.resource()?;
        Some(match self.subresource() {
            Some(sub) => format!("{resource}/{sub}"),
            None => resource.to_string(),
        })
    }

    /// A request with a write verb (whatever its answer).
    pub fn is_write(&self) -> bool {
        WRITE_VERBS.contains(&self.verb.as_str())
    }

    /// The event that closes a request: `ResponseComplete`, or `ResponseStarted` for a watch
    /// (whose completion comes only when it ends).
    pub fn is_answer(&self) -> bool {
        self.stage == "ResponseComplete"
            || (self.verb == "watch" && self.stage == "ResponseStarted")
    }

    /// A one-line description for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "{} {} {}/{} -> {} at {}",
            self.username(),
            self.verb,
            self.resource_path().unwrap_or_default(),
            self.name().unwrap_or_default(),
            self.code().map_or("-".to_string(), |c| c.to_string()),
            self.received
        )
    }
}

/// The log's current length: events after it are the ones that came later.
pub fn mark() -> usize {
    let text = read();
    complete_lines(&text).len()
}

/// Every event logged so far, in order.
pub fn events() -> Vec<AuditEvent> {
    events_since(0)
}

/// The events logged after `mark` (see [`mark`]), in order. Only whole lines are read (the API
/// server may be writing the last one). A whole line that does not parse is read again a few
/// times (concurrent appends can land before an earlier one is fully written) and then fails
/// the test, so a test can never be blind to events it failed to read.
pub fn events_since(mark: usize) -> Vec<AuditEvent> {
    let mut attempts = 0;
    loop {
        match parse(complete_lines(&read()).get(mark..).unwrap_or_default()) {
            Ok(events) => return events,
            Err(_) if attempts < 10 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(bad) => panic!("an audit event per line: {bad}"),
        }
    }
}

fn parse(lines: &str) -> Result<Vec<AuditEvent>, String> {
    lines
        .lines()
        .map(|line| serde_json::from_str(line).map_err(|e| format!("{e}: {line}")))
        .collect()
}

/// `text` up to and including its last newline.
fn complete_lines(text: &str) -> &str {
    &text[..text.rfind('\n').map_or(0, |end| end + 1)]
}

fn read() -> String {
    let path = control_plane().apiserver_audit_log_path();
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read the audit log {}: {e}", path.display()))
}
