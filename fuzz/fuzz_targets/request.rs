//! The CLI's request JSON, evaluated against a chain whose only policy allows
//! everything: no panic, bad input is an error, and a request carrying a
//! certificate the host cannot parse is never allowed.
#![no_main]

use std::path::Path;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use mqtt_policy_cli::check;
use mqtt_policy_host::{Chain, ConnectRequest, ConnectVerdict, Grant, Policy, PolicyError, PolicyHost, RequestBounds, TopicRequest, TopicVerdict};

struct AllowAll;

impl Policy for AllowAll {
    fn connect_check(&self, _: &ConnectRequest) -> Result<ConnectVerdict, PolicyError> {
        Ok(ConnectVerdict::Allow(Grant::default()))
    }
    fn topic_check(&self, _: &TopicRequest) -> Result<TopicVerdict, PolicyError> {
        Ok(TopicVerdict::Allow)
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(file) = check::parse_request(text) else { return };
    // Certificate files cannot be read from here: that is an input error.
    let Ok(prepared) = check::prepare(file, Path::new("/nonexistent-fuzz-base")) else { return };
    let Ok(chain) = Chain::builder().policy("allow-all", Arc::new(AllowAll)).build() else { return };
    let host = PolicyHost::from_chain(chain);
    let Ok(report) = check::evaluate(&host, &prepared) else { return };
    if prepared.connect.certificate_error().is_some() {
        assert_eq!(report.connect.verdict, "deny", "malformed certificate allowed");
        assert_eq!(report.connect.decided_by, "(host)");
        assert!(report.topics.is_empty());
    } else if RequestBounds::default().check_connect(&prepared.connect).is_err() {
        // Over a bound (a client id over 1 KiB, ...): refused before any policy.
        assert_eq!(report.connect.verdict, "deny", "request over a bound allowed");
        assert_eq!(report.connect.decided_by, "(host)");
    } else {
        assert_eq!(report.connect.verdict, "allow");
    }
});
