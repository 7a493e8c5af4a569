//! Where a payment link may send a customer. A reminder's "pay" button redirects to the
//! invoice's `payment_url`, from the billing system; a wrong or hostile value would send
//! customers, from a message they trust, anywhere. So a payment URL must be `https`, carry no
//! user name or password (`https://pay.example@evil.example/` reads as one host and is
//! another), and, when the tenant lists the hosts it takes payments on, be on one of them.

use std::collections::BTreeMap;

/// Why a payment URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentUrlError {
    #[error("not a URL: {0}")]
    Malformed(String),
    #[error("a payment page must be https, not {0}")]
    NotHttps(String),
    #[error("a payment URL must not carry a user name or password")]
    Credentials,
    #[error("host {host} is not one tenant {tenant} takes payments on ({allowed})")]
    HostNotAllowed {
        tenant: String,
        host: String,
        allowed: String,
    },
}

/// The hosts each tenant takes payments on: exact names, or `*.example.com` for any name
/// below it. A tenant with no list takes any `https` host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PaymentHosts {
    pub default: Vec<String>,
    pub tenants: BTreeMap<String, Vec<String>>,
}

impl PaymentHosts {
    /// Checks `url` for `tenant`.
    ///
    /// # Errors
    /// [`PaymentUrlError`] saying why the URL may not be offered to customers.
    pub fn check(&self, tenant: &str, url: &str) -> Result<(), PaymentUrlError> {
        let parsed =
            url::Url::parse(url).map_err(|error| PaymentUrlError::Malformed(error.to_string()))?;
        if parsed.scheme() != "https" {
            return Err(PaymentUrlError::NotHttps(parsed.scheme().to_string()));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(PaymentUrlError::Credentials);
        }
        let host = parsed
            .host_str()
            .ok_or_else(|| PaymentUrlError::Malformed("no host".into()))?
            .to_ascii_lowercase();
        let allowed = self.tenants.get(tenant).unwrap_or(&self.default);
        if allowed.is_empty() || allowed.iter().any(|pattern| host_matches(pattern, &host)) {
            Ok(())
        } else {
            Err(PaymentUrlError::HostNotAllowed {
                tenant: tenant.to_string(),
                host,
                allowed: allowed.join(", "),
            })
        }
    }
}

/// `pattern` is a host name, or `*.` and a domain for any name strictly below that domain.
pub fn host_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim().trim_end_matches('.').to_ascii_lowercase();
    let host = host.trim_end_matches('.');
    match pattern.strip_prefix("*.") {
        Some(domain) => host
            .strip_suffix(domain)
            .is_some_and(|below| below.len() > 1 && below.ends_with('.')),
        None => host == pattern,
    }
}

/// Whether `pattern` is a host name or `*.domain` as [`PaymentHosts`] reads them (for
/// configuration checks).
pub fn is_host_pattern(pattern: &str) -> bool {
    let name = pattern.strip_prefix("*.").unwrap_or(pattern);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    fn hosts() -> PaymentHosts {
        PaymentHosts {
            default: Vec::new(),
            tenants: BTreeMap::from([(
                "acme".to_string(),
                vec![
                    "pay.acme.example".to_string(),
                    "*.stripe.example".to_string(),
                ],
            )]),
        }
    }

    #[test]
    fn only_https_without_credentials_on_the_tenants_hosts() {
        let hosts = hosts();
        for url in [
            "https://pay.acme.example/i/inv_1",
            "https://PAY.ACME.EXAMPLE/i/inv_1",
            "https://checkout.stripe.example/c/pay/cs_1",
            "https://pay.acme.example:8443/i/inv_1",
        ] {
            assert_eq!(hosts.check("acme", url), Ok(()), "{url}");
        }
        assert_eq!(
            hosts.check("acme", "http://pay.acme.example/i/1"),
            Err(PaymentUrlError::NotHttps("http".into()))
        );
        assert_eq!(
            hosts.check("acme", "javascript:alert(1)"),
            Err(PaymentUrlError::NotHttps("javascript".into()))
        );
        assert_eq!(
            hosts.check("acme", "https://pay.acme.example@evil.example/"),
            Err(PaymentUrlError::Credentials)
        );
        for url in [
            "https://evil.example/",
            "https://pay.acme.example.evil.example/",
            "https://stripe.example/",
            "https://evilstripe.example/",
        ] {
            assert!(
                matches!(
                    hosts.check("acme", url),
                    Err(PaymentUrlError::HostNotAllowed { .. })
                ),
                "{url}"
            );
        }
        assert!(matches!(
            hosts.check("acme", "not a url"),
            Err(PaymentUrlError::Malformed(_))
        ));
        // A tenant without a list takes any https host, never http.
        assert_eq!(hosts.check("globex", "https://anything.example/"), Ok(()));
        assert!(hosts.check("globex", "http://anything.example/").is_err());
    }

    #[test]
    fn host_patterns_are_names_or_a_star_and_a_domain() {
        for pattern in [
            "pay.acme.example",
            "*.stripe.example",
            "localhost",
            "x-1.example",
        ] {
            assert!(is_host_pattern(pattern), "{pattern}");
        }
        for pattern in [
            "",
            "*.",
            "*",
            "https://pay.example",
            "pay..example",
            "-a.example",
            "a b",
        ] {
            assert!(!is_host_pattern(pattern), "{pattern}");
        }
    }

    proptest! {
        #[test]
        fn a_wildcard_never_matches_its_own_domain_or_a_lookalike(
            label in "[a-z0-9]{1,10}",
            domain in "[a-z]{1,8}\\.example",
        ) {
            let pattern = format!("*.{domain}");
            let subdomain = format!("{label}.{domain}");
            let glued = format!("{label}{domain}");
            let suffixed = format!("{domain}.{label}");
            prop_assert!(host_matches(&pattern, &subdomain));
            prop_assert!(!host_matches(&pattern, &domain));
            prop_assert!(!host_matches(&pattern, &glued));
            prop_assert!(!host_matches(&pattern, &suffixed));
        }
    }
}
