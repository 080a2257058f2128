//! Where SNS URLs may point. A signature proves that a message came from Amazon SNS only if the
//! certificate came from SNS, so `SigningCertURL` must be `https://sns.<region>.amazonaws.com`
//! (or `.amazonaws.com.cn`) and end in `.pem`: the TLS connection to that host vouches for the
//! certificate. The same host rule guards the `SubscribeURL` the ingress GETs to confirm a
//! subscription, so a forged confirmation cannot make hookforge request an arbitrary URL.

use url::{Host, Url};

use super::SnsError;

/// Checks that `url` may serve an SNS signing certificate: `https`, no credentials or odd port,
/// host `sns.<region>.amazonaws.com` or `sns.<region>.amazonaws.com.cn`, path ending in `.pem`.
/// Returns the parsed URL to fetch (and to key the cache by).
pub fn check_cert_url(url: &str) -> Result<Url, SnsError> {
    let parsed = check_sns_url(url, SnsError::CertUrlRefused)?;
    if !parsed.path().ends_with(".pem") {
        return Err(SnsError::CertUrlRefused("path must end in .pem".to_owned()));
    }
    Ok(parsed)
}

/// Checks the `SubscribeURL` of a confirmation before the ingress GETs it: `https` on an SNS
/// host, as for [`check_cert_url`].
pub fn check_subscribe_url(url: &str) -> Result<Url, SnsError> {
    check_sns_url(url, SnsError::SubscribeUrlRefused)
}

/// `https`, no credentials or explicit port, and an SNS host; `refused` builds the error.
fn check_sns_url(url: &str, refused: fn(String) -> SnsError) -> Result<Url, SnsError> {
    let parsed = Url::parse(url).map_err(|err| refused(format!("not a URL ({err})")))?;
    if parsed.scheme() != "https" {
        return Err(refused("scheme must be https".to_owned()));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(refused("credentials are not allowed".to_owned()));
    }
    if parsed.port().is_some() {
        return Err(refused("only the default https port is allowed".to_owned()));
    }
    let host = match parsed.host() {
        Some(Host::Domain(host)) => host,
        _ => return Err(refused("host must be an Amazon SNS domain".to_owned())),
    };
    if !is_sns_host(host) {
        return Err(refused(format!(
            "host {host} is not sns.<region>.amazonaws.com or sns.<region>.amazonaws.com.cn"
        )));
    }
    Ok(parsed)
}

/// `sns.<region>.amazonaws.com` or `sns.<region>.amazonaws.com.cn`, where the region is one DNS
/// label of lower-case letters, digits and hyphens (`us-west-2`, `us-gov-west-1`, `cn-north-1`).
fn is_sns_host(host: &str) -> bool {
    let Some(rest) = host.strip_prefix("sns.") else {
        return false;
    };
    let region = rest
        .strip_suffix(".amazonaws.com")
        .or_else(|| rest.strip_suffix(".amazonaws.com.cn"));
    region.is_some_and(|region| {
        !region.is_empty()
            && region.starts_with(|c: char| c.is_ascii_lowercase())
            && region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE_CERT_URL: &str = "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem";

    #[test]
    fn sns_certificate_urls_are_accepted() {
        for url in [
            FIXTURE_CERT_URL,
            "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem",
            "https://sns.us-gov-west-1.amazonaws.com/SimpleNotificationService-abc.pem",
            "https://SNS.EU-WEST-1.AMAZONAWS.COM/SimpleNotificationService-abc.pem",
            "https://sns.eu-west-1.amazonaws.com:443/SimpleNotificationService-abc.pem",
        ] {
            let parsed = check_cert_url(url).unwrap_or_else(|err| panic!("{url}: {err}"));
            assert_eq!(parsed.scheme(), "https");
        }
    }

    #[test]
    fn other_certificate_urls_are_refused() {
        let refused = [
            (
                "http://sns.us-west-2.amazonaws.com/cert.pem",
                "scheme must be https",
            ),
            ("https://sns.evil.com/cert.pem", "host sns.evil.com is not"),
            (
                "https://sns.us-west-2.amazonaws.com.evil.com/cert.pem",
                "is not sns.<region>",
            ),
            (
                "https://evil.com/sns.us-west-2.amazonaws.com/cert.pem",
                "host evil.com is not",
            ),
            (
                "https://sns.us-west-2.amazonaws.com./cert.pem",
                "is not sns.<region>",
            ),
            ("https://sns..amazonaws.com/cert.pem", "is not sns.<region>"),
            ("https://sns.amazonaws.com/cert.pem", "is not sns.<region>"),
            (
                "https://s3.us-west-2.amazonaws.com/cert.pem",
                "is not sns.<region>",
            ),
            (
                "https://sns.us_west.amazonaws.com/cert.pem",
                "is not sns.<region>",
            ),
            (
                "https://evil.com@sns.us-west-2.amazonaws.com/c.pem",
                "credentials",
            ),
            ("https://sns.us-west-2.amazonaws.com:8443/cert.pem", "port"),
            (
                "https://54.240.1.1/cert.pem",
                "host must be an Amazon SNS domain",
            ),
            (
                "https://sns.us-west-2.amazonaws.com/cert.txt",
                "path must end in .pem",
            ),
            (
                "https://sns.us-west-2.amazonaws.com/?x=cert.pem",
                "path must end in .pem",
            ),
            ("sns.us-west-2.amazonaws.com/cert.pem", "not a URL"),
        ];
        for (url, reason) in refused {
            let err = check_cert_url(url).expect_err(url);
            assert!(matches!(err, SnsError::CertUrlRefused(_)), "{url}");
            assert!(err.to_string().contains(reason), "{url}: {err}");
        }
    }

    #[test]
    fn subscribe_urls_must_point_at_sns_over_https() {
        let documented = "https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn:aws:sns:us-west-2:123456789012:MyTopic&Token=2336412f37...";
        assert!(check_subscribe_url(documented).is_ok());
        for url in [
            "http://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription",
            "https://169.254.169.254/latest/meta-data/",
            "https://sns.us-west-2.amazonaws.com.evil.com/?Action=ConfirmSubscription",
        ] {
            assert!(matches!(
                check_subscribe_url(url),
                Err(SnsError::SubscribeUrlRefused(_))
            ));
        }
    }
}
