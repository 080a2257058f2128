//! Test-only SNS material: the documented example messages, and an RSA key with self-signed
//! certificates generated at test time, used to sign canonical strings the way SNS does
//! (SHA1withRSA for version 1, SHA256withRSA for 2), plus an in-memory certificate fetcher.

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};

use super::SignatureVersion;

// Excerpts of the examples in the Amazon SNS Developer Guide, "Amazon SNS message and JSON
// formats" (awsdocs/amazon-sns-developer-guide, doc_source/sns-message-and-json-formats.md).
pub(crate) const NOTIFICATION: &str = r#"{
  "Type" : "Notification",
  "MessageId" : "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
  "TopicArn" : "arn:aws:sns:us-west-2:123456789012:MyTopic",
  "Subject" : "My First Message",
  "Message" : "Hello world!",
  "Timestamp" : "2012-05-02T00:54:06.655Z",
  "SignatureVersion" : "1",
  "Signature" : "EXAMPLEw6JRN...",
  "SigningCertURL" : "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem",
  "UnsubscribeURL" : "https://sns.us-west-2.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=arn:aws:sns:us-west-2:123456789012:MyTopic:c9135db0-26c4-47ec-8998-413945fb5a96"
}"#;

pub(crate) const SUBSCRIPTION_CONFIRMATION: &str = r#"{
  "Type" : "SubscriptionConfirmation",
  "MessageId" : "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
  "Token" : "2336412f37...",
  "TopicArn" : "arn:aws:sns:us-west-2:123456789012:MyTopic",
  "Message" : "You have chosen to subscribe to the topic arn:aws:sns:us-west-2:123456789012:MyTopic.\nTo confirm the subscription, visit the SubscribeURL included in this message.",
  "SubscribeURL" : "https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn:aws:sns:us-west-2:123456789012:MyTopic&Token=2336412f37...",
  "Timestamp" : "2012-04-26T20:45:04.751Z",
  "SignatureVersion" : "1",
  "Signature" : "EXAMPLEpH+DcEwjAPg8O9mY8dReBSwksfg2S7WKQcikcNKWLQjwu6A4VbeS0QHVCkhRS7fUQvi2egU3N858fiTDN6bkkOxYDVrY0Ad8L10Hs3zH81mtnPk5uvvolIC1CXGu43obcgFxeL3khZl8IKvO61GWB6jI9b5+gLPoBc1Q=",
  "SigningCertURL" : "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem"
}"#;

/// A key pair and its certificates (PEM as SNS serves it, DER, and an expired one).
pub(crate) struct TestSigner {
    pub(crate) cert_pem: String,
    pub(crate) cert_der: Vec<u8>,
    pub(crate) expired_cert_pem: String,
    key: rsa::PrivateKey,
}

/// The process-wide signer (RSA key generation is the slow part, so it happens once).
pub(crate) fn signer() -> &'static TestSigner {
    static SIGNER: OnceLock<TestSigner> = OnceLock::new();
    SIGNER.get_or_init(|| {
        let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("RSA keygen");
        let params = rcgen::CertificateParams::new(vec!["sns.us-west-2.amazonaws.com".into()])
            .expect("certificate params");
        let cert = params
            .self_signed(&key_pair)
            .expect("self-signed certificate");
        let mut expired = params.clone();
        expired.not_before = rcgen::date_time_ymd(2000, 1, 1);
        expired.not_after = rcgen::date_time_ymd(2001, 1, 1);
        let expired = expired.self_signed(&key_pair).expect("expired certificate");
        TestSigner {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            expired_cert_pem: expired.pem(),
            key: rsa::PrivateKey::from_pkcs8_der(&key_pair.serialize_der()).expect("PKCS #8 key"),
        }
    })
}

impl TestSigner {
    /// Base64 PKCS #1 v1.5 signature of `data`, as SNS puts in `Signature`.
    pub(crate) fn sign(&self, version: SignatureVersion, data: &str) -> String {
        let signature = match version {
            SignatureVersion::V1 => SigningKey::<sha1::Sha1>::new(self.key.clone())
                .sign(data.as_bytes())
                .to_vec(),
            SignatureVersion::V2 => SigningKey::<sha2::Sha256>::new(self.key.clone())
                .sign(data.as_bytes())
                .to_vec(),
        };
        BASE64.encode(signature)
    }
}

/// A [`CertFetcher`] serving certificates from memory and counting downloads.
pub(crate) struct StaticFetcher {
    certs: std::collections::HashMap<String, Vec<u8>>,
    pub(crate) calls: std::sync::atomic::AtomicUsize,
}

impl StaticFetcher {
    /// Serves `body` at each of `urls`; any other URL is a 404.
    pub(crate) fn new(urls: &[&str], body: &[u8]) -> Self {
        StaticFetcher {
            certs: urls
                .iter()
                .map(|url| (url.to_string(), body.to_vec()))
                .collect(),
            calls: Default::default(),
        }
    }

    /// How many downloads were attempted.
    pub(crate) fn calls(&self) -> usize {
        self.calls.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl super::CertFetcher for StaticFetcher {
    async fn fetch(&self, url: &url::Url) -> Result<Vec<u8>, super::SnsError> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.certs
            .get(url.as_str())
            .cloned()
            .ok_or_else(|| super::SnsError::CertFetch("HTTP status 404 Not Found".to_owned()))
    }
}

/// `json` (an SNS message) with `SignatureVersion` set to `version` and a valid `Signature`.
pub(crate) fn signed(json: &str, version: SignatureVersion) -> Vec<u8> {
    let mut value: serde_json::Value = serde_json::from_str(json).expect("JSON");
    value["SignatureVersion"] = match version {
        SignatureVersion::V1 => "1",
        SignatureVersion::V2 => "2",
    }
    .into();
    let message = super::SnsMessage::parse(value.to_string().as_bytes()).expect("SNS message");
    value["Signature"] = signer().sign(version, &message.canonical_string()).into();
    value.to_string().into_bytes()
}

// A message really signed by Amazon SNS (SignatureVersion 1, SHA1withRSA) and the SNS
// certificate that verifies it, from aws/aws-sdk-java-v2 (Apache-2.0):
// services/sns/src/test/resources/software/amazon/awssdk/services/sns/sample-message.json and
// unit-test-public-cert.pem (used by SnsSignatureCheckerTest).
pub(crate) const AWS_SDK_SAMPLE_MESSAGE: &str = r#"{
  "Type": "Notification",
  "MessageId": "d39649d4-bf5b-5b80-af75-07acb3dd9b4a",
  "TopicArn": "arn:aws:sns:us-east-1:810605503585:just_testing",
  "Subject": "this is raw",
  "Message": "boo",
  "Timestamp": "2015-09-20T01:22:14.001Z",
  "SignatureVersion": "1",
  "Signature": "fQh5DUyhpw41y6tx/BJuqK2Clvs7uY6N7poaOfzK08E+C6saKq9dMz5b9A0lGWWU7VsB+qHELBaL3OdS9U4BmFI36Ppt5Q6BsWmqSho+1hgwBYFFFZghO6BYXxsNmLml1yZl2X+MQKy3D516hgN7pUvYnvvq2cfsvy21ivU6Oiv96gcte2s+aPUi6O9CAdc2GfZRXCqC9wowKoxhFUUQW/UTHQfxt/60qWgNxhhVwAbPtnXWkAXwxixYKl5qOHcl3u2TxkAHn+1X8XmgjnpvEO5p0vQvOEHXBnGsjPglRXE9g5FVnAFXjhvHXeTWUcVLNI0eSRJeOBPbKpkjeDsR4g==",
  "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-bb750dd426d95ee9390147a5624348ee.pem",
  "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=arn:aws:sns:us-east-1:810605503585:just_testing:3c6297c1-326e-4931-9351-ccc48e02f08a",
  "MessageAttributes": {
    "AWS.SNS.MOBILE.MPNS.Type": {"Type": "String", "Value": "token"}
  }
}"#;

pub(crate) const AWS_SDK_CERT_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIE2zCCA8OgAwIBAgIQEyYsBRbV0xBZovJwPnu51TANBgkqhkiG9w0BAQsFADB+
MQswCQYDVQQGEwJVUzEdMBsGA1UEChMUU3ltYW50ZWMgQ29ycG9yYXRpb24xHzAd
BgNVBAsTFlN5bWFudGVjIFRydXN0IE5ldHdvcmsxLzAtBgNVBAMTJlN5bWFudGVj
IENsYXNzIDMgU2VjdXJlIFNlcnZlciBDQSAtIEc0MB4XDTE1MDgwNzAwMDAwMFoX
DTE2MDgyMTIzNTk1OVowazELMAkGA1UEBhMCVVMxEzARBgNVBAgMCldhc2hpbmd0
b24xEDAOBgNVBAcMB1NlYXR0bGUxGTAXBgNVBAoMEEFtYXpvbi5jb20sIEluYy4x
GjAYBgNVBAMMEXNucy5hbWF6b25hd3MuY29tMIIBIjANBgkqhkiG9w0BAQEFAAOC
AQ8AMIIBCgKCAQEAhJxlGxd4K3wE9m2DFSnUDa+8f9VtclE63p3IgP4Ek/JruNCl
M8yQiZWhXxTu+ASn6plnL5kIQNv/OzpRkC2ko1hjx31JQmjL9H29AlQgVXr4UeIm
RZc8AGqh00xLvopj3J+t/oigH5zeMh+rhOYoqr9NjvFUIFfFat42XOhUNpOyPiLb
N6yuD7Vec7jlVeTG9q7W+V0TupmiQ+pM/RX+ksCCFlQkLH8fB3H4Nr7IHjWuAify
Z+djibL1CR/e2rEDAmpK1wA4Hkx5YFNDAp/WgAs6nSq7MtEvfs1oP1dHwYaNA8Z2
zcYGqb5ORtz1bFZy+JLzf7K/PnqEzkf8ywC3IwIDAQABo4IBZjCCAWIwHAYDVR0R
BBUwE4IRc25zLmFtYXpvbmF3cy5jb20wCQYDVR0TBAIwADAOBgNVHQ8BAf8EBAMC
BaAwHQYDVR0lBBYwFAYIKwYBBQUHAwEGCCsGAQUFBwMCMGEGA1UdIARaMFgwVgYG
Z4EMAQICMEwwIwYIKwYBBQUHAgEWF2h0dHBzOi8vZC5zeW1jYi5jb20vY3BzMCUG
CCsGAQUFBwICMBkaF2h0dHBzOi8vZC5zeW1jYi5jb20vcnBhMB8GA1UdIwQYMBaA
FF9gz2GQVd+EQxSKYCqy9Xr0QxjvMCsGA1UdHwQkMCIwIKAeoByGGmh0dHA6Ly9z
cy5zeW1jYi5jb20vc3MuY3JsMFcGCCsGAQUFBwEBBEswSTAfBggrBgEFBQcwAYYT
aHR0cDovL3NzLnN5bWNkLmNvbTAmBggrBgEFBQcwAoYaaHR0cDovL3NzLnN5bWNi
LmNvbS9zcy5jcnQwDQYJKoZIhvcNAQELBQADggEBADJP+dxUtQlrRiyt4xn8R184
wjyf/OVfnA2YqIKPQKz17JPwmm1grDGGw2A6LvsIENHZFg67twZqHgrzmtL4iVrv
lBCef1QA4AUyUZsJWobx7cCB44PlVcfad69q61OzXMSVUSWzyvw3PU7NW/b2Ny9C
Zj1p/uwaUOlS6NQTkAlAqE8JZK5f8/kAcoebd0GWBcJwZ5AY0/5ZMzaa55hW+im8
GzjWCO0mkK6swdvpPYPeQUQ2lb/mqj6HBHa864sgPMgjyx9TuviYWsKhbUZIpysy
tKvJsKCmyR4pp0HpCsf0tOxrWRjH9cnuqrR//iKXPw3HlYpa5wu9c51cLH/D3dU=
-----END CERTIFICATE-----
";
