//! Hostile issuers: credential fetches. See tests/hostile.rs.
//!
//! A tenant names a host of their own as the blob endpoint of a workload identity issuer (an
//! administrator listed it, or it is an Azure host that misbehaves): it answers late, never
//! answers, or streams an endless body. The operator's workers, memory and other tenants'
//! grants must not notice.

use std::time::Duration;

use crate::common::hostile_endpoint::{HostileEndpoint, Mode};

/// An HTTPS client that trusts the hostile endpoint's CA, as the operator does with
/// `--extra-ca-file`.
fn client_trusting(endpoint: &HostileEndpoint) -> reqwest::Client {
    let pem = std::fs::read(&endpoint.ca_cert_path).expect("read the hostile endpoint's CA");
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_hostile_endpoint_captures_slows_stalls_and_floods_as_asked() {
    let capture = HostileEndpoint::start(Mode::Capture).await;
    let client = client_trusting(&capture);
    let response = client
        .post(capture.url("/?restype=service&comp=userdelegationkey"))
        .bearer_auth("captured-token")
        .body("<KeyInfo/>")
        .send()
        .await
        .expect("the capture endpoint answers");
    assert_eq!(response.status(), 403);
    let requests = capture.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method, "POST");
    assert_eq!(
        requests[0].header("authorization"),
        Some("Bearer captured-token")
    );

    let slow = HostileEndpoint::start(Mode::Slow(Duration::from_secs(1))).await;
    let started = std::time::Instant::now();
    let answered = client_trusting(&slow).get(slow.url("/")).send().await;
    assert!(answered.is_ok() && started.elapsed() >= Duration::from_secs(1));

    let never = HostileEndpoint::start(Mode::Never).await;
    let stalled = client_trusting(&never).get(never.url("/")).send().await;
    assert!(stalled.unwrap_err().is_timeout());
    assert_eq!(never.requests().len(), 1, "the request was read");

    let flood = HostileEndpoint::start(Mode::Flood { bytes: 1 << 30 }).await;
    let mut response = client_trusting(&flood)
        .get(flood.url("/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.content_length(), Some(1 << 30));
    let mut read = 0;
    while read < 8 << 20 {
        read += response.chunk().await.unwrap().expect("more body").len();
    }
    drop(response);
    assert!(flood.bytes_sent() >= 8 << 20);
}
