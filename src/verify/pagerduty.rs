//! PagerDuty v3 webhooks: `X-PagerDuty-Signature: v1=<hex>[,v1=<hex>…]`, one entry per active
//! signing secret; the request passes if any entry is the HMAC-SHA256 of the body under any key.
//!
//! <https://developer.pagerduty.com/docs/webhooks/webhook-signatures/>

use http::HeaderMap;

use super::headers::{is_hex_of_len, matching_key, required};
use super::{Inbound, Scheme, Verified, VerifyError, signing};

const HEADER: &str = "X-PagerDuty-Signature";
const SHAPE: &str = "v1=<64 hex digits>[,v1=<64 hex digits>...]";

/// PagerDuty's v3 webhook signature scheme.
pub struct Pagerduty;

impl Scheme for Pagerduty {
    fn is_present(&self, headers: &HeaderMap) -> bool {
        headers.contains_key(HEADER)
    }

    fn verify(&self, inbound: &Inbound<'_>, keys: &[&str]) -> Result<Verified, VerifyError> {
        let value = required(inbound.headers, HEADER, SHAPE)?;
        // Entries of other versions (a future `v2=`) are skipped, as PagerDuty asks receivers to.
        let macs: Vec<&str> = value
            .split(',')
            .filter_map(|entry| entry.trim().strip_prefix("v1="))
            .collect();
        if macs.is_empty() || !macs.iter().all(|mac| is_hex_of_len(mac, 32)) {
            return Err(VerifyError::MalformedHeader {
                header: HEADER,
                expected: SHAPE,
            });
        }
        matching_key(keys, |key| {
            macs.iter()
                .any(|mac| signing::verify_hmac_sha256_hex(key.as_bytes(), inbound.body, mac))
        })
        .map(|index| Verified::with_key("pagerduty-v1", index))
        .ok_or(VerifyError::SignatureMismatch { header: HEADER })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::verify::test_support::{at, headers};

    // PagerDuty/go-pagerduty webhookv3/webhookv3_test.go (TestVerifySignature, Apache-2.0):
    // `secret`, `defaultBody` and the "valid" / "mismatch" signatures. The body is the SDK's
    // test constant byte for byte (split only for line length), as the MAC covers every byte.
    const SECRET: &str = "lDQHScfUeXUKaQRNF+8XIiDKZ7XX3itBAYzwU0TARw8lJqRnkKl2iB1anSb0Z+IK";
    const VALID: &str = "v1=0c0b9495b893a39e70d1fea2fe11fbe0a825f88b9f67846f6cc07dd2bc5476cd";
    const MISMATCH: &str = "v1=7020c8a7ec668a9b7012bc3dd82e483394b038f4230acc6785efbf2a7d8bcaf5";
    pub(crate) const SDK_BODY: &str = concat!(
        r#"{"event":{"id":"01BWDWL3NYY7LUFPZCC28QUCMK","event_type":"incident.priority_updated","#,
        r#""resource_type":"incident","occurred_at":"2021-04-26T17:36:27.458Z","agent":{"#,
        r#""html_url":"https://acme.pagerduty.com/users/PLH1HKV","id":"PLH1HKV","#,
        r#""self":"https://api.pagerduty.com/users/PLH1HKV","summary":"Tenex Engineer","#,
        r#""type":"user_reference"},"client":null,"data":{"id":"PGR0VU2","type":"incident","#,
        r#""self":"https://api.pagerduty.com/incidents/PGR0VU2","#,
        r#""html_url":"https://acme.pagerduty.com/incidents/PGR0VU2","number":2,"#,
        r#""status":"triggered","title":"A little bump in the road","service":{"#,
        r#""html_url":"https://acme.pagerduty.com/services/PF9KMXH","id":"PF9KMXH","#,
        r#""self":"https://api.pagerduty.com/services/PF9KMXH","summary":"API Service","#,
        r#""type":"service_reference"},"assignees":[{"#,
        r#""html_url":"https://acme.pagerduty.com/users/PTUXL6G","id":"PTUXL6G","#,
        r#""self":"https://api.pagerduty.com/users/PTUXL6G","summary":"User 123","#,
        r#""type":"user_reference"}],"escalation_policy":{"#,
        r#""html_url":"https://acme.pagerduty.com/escalation_policies/PUS0KTE","id":"PUS0KTE","#,
        r#""self":"https://api.pagerduty.com/escalation_policies/PUS0KTE","summary":"Default","#,
        r#""type":"escalation_policy_reference"},"teams":[{"#,
        r#""html_url":"https://acme.pagerduty.com/teams/PFCVPS0","id":"PFCVPS0","#,
        r#""self":"https://api.pagerduty.com/teams/PFCVPS0","summary":"Engineering","#,
        r#""type":"team_reference"}],"priority":{"#,
        r#""html_url":"https://acme.pagerduty.com/account/incident_priorities","id":"PSO75BM","#,
        r#""self":"https://api.pagerduty.com/priorities/PSO75BM","summary":"P1","#,
        r#""type":"priority_reference"},"urgency":"high","conference_bridge":{"#,
        r#""conference_number":1000,"conference_url":"https://example.com"},"#,
        r#""resolve_reason":null}}}"#
    );

    fn check(value: &str, keys: &[&str]) -> Result<Verified, VerifyError> {
        Pagerduty.verify(
            &at(&headers(&[(HEADER, value)]), SDK_BODY.as_bytes(), 0),
            keys,
        )
    }

    #[test]
    fn sdk_vector_verifies() {
        assert_eq!(SDK_BODY.len(), 1655, "the exact signed bytes");
        assert_eq!(
            check(VALID, &[SECRET]).unwrap(),
            Verified::with_key("pagerduty-v1", 0)
        );
    }

    #[test]
    fn any_entry_matches_and_other_versions_are_skipped() {
        let several = format!("{MISMATCH}, v2=abc,{VALID}");
        assert!(check(&several, &[SECRET]).is_ok());
    }

    #[test]
    fn second_key_is_accepted_during_rotation() {
        assert_eq!(
            check(VALID, &["rotated-in", SECRET]).unwrap().key_index,
            Some(1)
        );
    }

    #[test]
    fn sdk_mismatch_and_wrong_key_are_refused() {
        let err = check(MISMATCH, &[SECRET]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "signature does not match (X-PagerDuty-Signature)"
        );
        assert!(check(VALID, &["wrong"]).is_err());
    }

    #[test]
    fn missing_header_is_named() {
        let inbound_headers = headers(&[("X-Webhook-Id", "abc")]);
        let err = Pagerduty
            .verify(&at(&inbound_headers, SDK_BODY.as_bytes(), 0), &[SECRET])
            .unwrap_err();
        assert_eq!(err.to_string(), "missing X-PagerDuty-Signature header");
    }

    #[test]
    fn garbled_headers_are_malformed() {
        for garbled in ["", "garbage", "v2=abc", "v1=0c0b", "sha256=0c0b9495"] {
            let err = check(garbled, &[SECRET]).unwrap_err();
            assert_eq!(
                err.to_string(),
                "malformed X-PagerDuty-Signature header \
                 (expected v1=<64 hex digits>[,v1=<64 hex digits>...])"
            );
        }
    }
}
