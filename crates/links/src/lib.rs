//! Signed customer links.
//!
//! A reminder carries links to the tracker's public pages: pay, already paid, dispute, promise
//! to pay, payment plan, a tracking pixel and click-tracked links. Each carries a token
//!
//! ```text
//! v1.<key id>.<base64url(JSON claims)>.<base64url(HMAC-SHA256(key, "v1.<key id>.<claims>"))>
//! ```
//!
//! bound to the tenant, the invoice, the customer, the reminder and the action, with an expiry.
//! The key id lets keys rotate: new links are signed with the current key, and links signed
//! with any key still listed keep working until they expire. Claims hold ids only, never a
//! name, an address or an amount.

pub mod payment;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// What a link does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkAction {
    Pay,
    AlreadyPaid,
    Dispute,
    PromiseToPay,
    PaymentPlan,
    /// The tracking pixel.
    Open,
    /// A click-tracked link to `target`.
    Click,
}

impl LinkAction {
    /// The action's path segment on the tracker.
    pub fn path(self) -> &'static str {
        match self {
            Self::Pay => "pay",
            Self::AlreadyPaid => "already-paid",
            Self::Dispute => "dispute",
            Self::PromiseToPay => "promise",
            Self::PaymentPlan => "payment-plan",
            Self::Open => "o",
            Self::Click => "c",
        }
    }

    /// Whether the link opens one of the customer's action pages. Only an expired one of these
    /// may ask for a fresh reminder: the pixel and click-tracked links sit in every message and
    /// are not something a customer acts on.
    pub fn is_action_page(self) -> bool {
        match self {
            Self::Pay
            | Self::AlreadyPaid
            | Self::Dispute
            | Self::PromiseToPay
            | Self::PaymentPlan => true,
            Self::Open | Self::Click => false,
        }
    }
}

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkClaims {
    /// Tenant.
    pub t: String,
    /// Invoice.
    pub i: String,
    /// Customer.
    pub c: String,
    /// Reminder the link was sent in.
    pub r: uuid::Uuid,
    /// Action.
    pub a: LinkAction,
    /// Expiry, seconds since the Unix epoch.
    pub exp: i64,
    /// The target of a click-tracked link (only ever one the reminder itself contained).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub u: Option<String>,
}

/// A signing key and its id.
#[derive(Debug, Clone)]
pub struct SigningKey {
    pub id: String,
    pub secret: SecretString,
}

/// Why a token is refused. The tracker answers all but `Expired` with a plain 404.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("malformed token")]
    Malformed,
    #[error("unknown key id")]
    UnknownKey,
    #[error("bad signature")]
    BadSignature,
    /// Genuine but expired: the tracker offers a fresh link.
    #[error("expired")]
    Expired(Box<LinkClaims>),
}

/// Signs and verifies tokens with a set of keys.
#[derive(Debug, Clone)]
pub struct LinkSigner {
    /// New tokens are signed with the first key; all are accepted.
    keys: Vec<SigningKey>,
}

/// Why keys cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub String);

impl LinkSigner {
    /// A signer; the first key signs.
    ///
    /// # Errors
    /// [`KeyError`] when there is no key, an id is not `[A-Za-z0-9_-]{1,32}` or repeated, or a
    /// secret has fewer than 32 bytes.
    pub fn new(keys: Vec<SigningKey>) -> Result<Self, KeyError> {
        if keys.is_empty() {
            return Err(KeyError("no signing key".into()));
        }
        for (index, key) in keys.iter().enumerate() {
            let id_ok = !key.id.is_empty()
                && key.id.len() <= 32
                && key
                    .id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !id_ok {
                return Err(KeyError(format!(
                    "key id {:?} must be 1 to 32 letters, digits, _ or -",
                    key.id
                )));
            }
            if key.secret.expose_secret().len() < 32 {
                return Err(KeyError(format!(
                    "the secret of key {} has fewer than 32 bytes",
                    key.id
                )));
            }
            if keys[..index].iter().any(|other| other.id == key.id) {
                return Err(KeyError(format!("key id {} is listed twice", key.id)));
            }
        }
        Ok(Self { keys })
    }

    /// Reads keys from text: one `key_id secret` a line, the current key first, `#` comments.
    ///
    /// # Errors
    /// [`KeyError`] naming the line that is wrong.
    pub fn from_text(text: &str) -> Result<Self, KeyError> {
        let mut keys = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split_whitespace();
            match (parts.next(), parts.next(), parts.next()) {
                (Some(id), Some(secret), None) => keys.push(SigningKey {
                    id: id.to_string(),
                    secret: SecretString::from(secret.to_string()),
                }),
                _ => {
                    return Err(KeyError(format!(
                        "line {} must be \"key_id secret\"",
                        index + 1
                    )))
                }
            }
        }
        Self::new(keys)
    }

    fn mac(key: &SigningKey, signed: &str) -> HmacSha256 {
        #[allow(clippy::expect_used)]
        let mut mac = HmacSha256::new_from_slice(key.secret.expose_secret().as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(signed.as_bytes());
        mac
    }

    /// A token for `claims`, signed with the current key.
    pub fn sign(&self, claims: &LinkClaims) -> String {
        let key = &self.keys[0];
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
        let signed = format!("v1.{}.{body}", key.id);
        let signature = URL_SAFE_NO_PAD.encode(Self::mac(key, &signed).finalize().into_bytes());
        format!("{signed}.{signature}")
    }

    /// The claims of `token` if it is genuine and not expired at `now` (Unix seconds).
    ///
    /// # Errors
    /// [`LinkError`]: malformed, unknown key, bad signature, or expired (with its claims).
    pub fn verify(&self, token: &str, now: i64) -> Result<LinkClaims, LinkError> {
        let mut parts = token.split('.');
        let (Some("v1"), Some(key_id), Some(body), Some(signature), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(LinkError::Malformed);
        };
        let key = self
            .keys
            .iter()
            .find(|key| key.id == key_id)
            .ok_or(LinkError::UnknownKey)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| LinkError::Malformed)?;
        // verify_slice compares in constant time.
        Self::mac(key, &format!("v1.{key_id}.{body}"))
            .verify_slice(&signature)
            .map_err(|_| LinkError::BadSignature)?;
        let claims: LinkClaims = URL_SAFE_NO_PAD
            .decode(body)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or(LinkError::Malformed)?;
        if claims.exp <= now {
            return Err(LinkError::Expired(Box::new(claims)));
        }
        Ok(claims)
    }

    /// The URL of a link on the tracker at `base_url`.
    pub fn url(&self, base_url: &str, claims: &LinkClaims) -> String {
        format!(
            "{}/l/{}/{}",
            base_url.trim_end_matches('/'),
            claims.a.path(),
            self.sign(claims)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(id: &str, secret: &str) -> SigningKey {
        SigningKey {
            id: id.into(),
            secret: SecretString::from(secret.to_string()),
        }
    }

    fn claims() -> LinkClaims {
        LinkClaims {
            t: "acme".into(),
            i: "inv_1".into(),
            c: "cus_1".into(),
            r: uuid::Uuid::from_u128(7),
            a: LinkAction::Pay,
            exp: 2_000_000_000,
            u: None,
        }
    }

    fn signer() -> LinkSigner {
        LinkSigner::new(vec![
            key("k2", "a-secret-of-at-least-thirty-two-bytes-2"),
            key("k1", "a-secret-of-at-least-thirty-two-bytes-1"),
        ])
        .unwrap()
    }

    #[test]
    fn a_signed_token_verifies_and_carries_no_personal_data() {
        let token = signer().sign(&claims());
        assert!(token.starts_with("v1.k2."));
        assert_eq!(signer().verify(&token, 1_900_000_000), Ok(claims()));
        let body = URL_SAFE_NO_PAD
            .decode(token.split('.').nth(2).unwrap())
            .unwrap();
        let text = String::from_utf8(body).unwrap();
        assert!(!text.contains('@'), "{text}");
    }

    #[test]
    fn every_kind_of_forgery_is_refused() {
        let signer = signer();
        let token = signer.sign(&claims());
        // Wrong key: a signer with other secrets.
        let stranger =
            LinkSigner::new(vec![key("k2", "another-secret-of-at-least-thirty-two-b")]).unwrap();
        assert_eq!(stranger.verify(&token, 0), Err(LinkError::BadSignature));
        // Changed field: another invoice, same signature.
        let mut tampered = claims();
        tampered.i = "inv_2".into();
        let forged_body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&tampered).unwrap());
        let parts: Vec<&str> = token.split('.').collect();
        let forged = format!("v1.{}.{forged_body}.{}", parts[1], parts[3]);
        assert_eq!(signer.verify(&forged, 0), Err(LinkError::BadSignature));
        // Unknown key id.
        assert_eq!(
            signer.verify(&token.replacen("v1.k2.", "v1.k9.", 1), 0),
            Err(LinkError::UnknownKey)
        );
        // Expired.
        assert!(matches!(
            signer.verify(&token, 2_000_000_000),
            Err(LinkError::Expired(_))
        ));
        // Malformed.
        assert_eq!(signer.verify("v2.k2.a.b", 0), Err(LinkError::Malformed));
        assert_eq!(signer.verify("not a token", 0), Err(LinkError::Malformed));
    }

    #[test]
    fn tokens_of_an_older_key_still_verify_after_rotation() {
        let old =
            LinkSigner::new(vec![key("k1", "a-secret-of-at-least-thirty-two-bytes-1")]).unwrap();
        let token = old.sign(&claims());
        assert_eq!(signer().verify(&token, 0), Ok(claims()));
    }

    #[test]
    fn weak_or_duplicate_keys_are_refused() {
        assert!(LinkSigner::new(vec![key("k1", "short")]).is_err());
        assert!(LinkSigner::new(vec![]).is_err());
        assert!(LinkSigner::new(vec![
            key("k1", "a-secret-of-at-least-thirty-two-bytes-1"),
            key("k1", "a-secret-of-at-least-thirty-two-bytes-2")
        ])
        .is_err());
        assert!(LinkSigner::from_text("k1 a-secret-of-at-least-thirty-two-bytes-1 extra").is_err());
    }

    proptest! {
        #[test]
        fn any_single_character_change_breaks_the_token(position in any::<prop::sample::Index>(), replacement in "[A-Za-z0-9_.-]") {
            let token = signer().sign(&claims());
            let index = position.index(token.len());
            let mut changed: Vec<char> = token.chars().collect();
            prop_assume!(changed[index].to_string() != replacement);
            changed[index] = replacement.chars().next().unwrap();
            let changed: String = changed.into_iter().collect();
            prop_assert!(signer().verify(&changed, 0).is_err(), "{changed}");
        }
    }
}
