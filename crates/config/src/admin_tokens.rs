//! The admin API's tokens: a file mounted from a secret, one token per line:
//!
//! ```text
//! # holder              role            tenants       SHA-256 of the token
//! marie.dupont          credit_manager  acme          sha256:5e88489…
//! ops-oncall            operator        *             sha256:03ac674…
//! finance-dashboard     read_only       acme,globex   sha256:b1f5a3c…
//! ```
//!
//! The file holds digests, never tokens: whoever reads it (a backup, a `kubectl get secret`)
//! cannot act. `relancectl tokens mint` makes a token and its line.

use sha2::{Digest, Sha256};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AdminRole {
    /// Reads approvals, timelines, policies.
    ReadOnly,
    /// Also approves, edits and rejects reminders, pauses and resumes, settles claims,
    /// withdraws promises.
    CreditManager,
    /// Also reads and replays dead letters.
    Operator,
}

impl AdminRole {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "read_only" => Some(Self::ReadOnly),
            "credit_manager" => Some(Self::CreditManager),
            "operator" => Some(Self::Operator),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadOnly => "read_only",
            Self::CreditManager => "credit_manager",
            Self::Operator => "operator",
        }
    }
}

/// The tenants a token may act for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantScope {
    All,
    Only(Vec<String>),
}

impl TenantScope {
    pub fn allows(&self, tenant: &str) -> bool {
        match self {
            Self::All => true,
            Self::Only(tenants) => tenants.iter().any(|allowed| allowed == tenant),
        }
    }
}

/// One line of the tokens file.
#[derive(Debug, Clone)]
pub struct AdminToken {
    pub holder: String,
    pub role: AdminRole,
    pub tenants: TenantScope,
    /// SHA-256 of the token.
    pub digest: [u8; 32],
}

impl AdminToken {
    /// Whether `presented` is this token (comparing digests, so timing reveals nothing of it).
    pub fn matches(&self, presented: &str) -> bool {
        let digest = Sha256::digest(presented.as_bytes());
        digest
            .iter()
            .zip(self.digest.iter())
            .fold(0u8, |difference, (a, b)| difference | (a ^ b))
            == 0
    }
}

/// The shortest token accepted: guessing one must be hopeless.
pub const MIN_TOKEN_LENGTH: usize = 24;

/// The line of the tokens file for `token`.
pub fn token_line(holder: &str, role: AdminRole, tenants: &TenantScope, token: &str) -> String {
    let tenants = match tenants {
        TenantScope::All => "*".to_string(),
        TenantScope::Only(tenants) => tenants.join(","),
    };
    format!(
        "{holder} {} {tenants} sha256:{}",
        role.as_str(),
        hex(&Sha256::digest(token.as_bytes()))
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn parse_digest(text: &str) -> Option<[u8; 32]> {
    let hex = text.strip_prefix("sha256:")?;
    if hex.len() != 64 || !hex.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return None;
    }
    let mut digest = [0u8; 32];
    for (index, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(index * 2..index * 2 + 2)?, 16).ok()?;
    }
    Some(digest)
}

fn is_tenant(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'))
}

/// Reads the tokens file at `path`.
///
/// # Errors
/// Why the file cannot be used, as text: unreadable, empty, a malformed line (naming what is
/// wrong), a token written in clear, or a holder listed twice.
pub fn read_admin_tokens(path: &str) -> Result<Vec<AdminToken>, String> {
    let text = std::fs::read_to_string(path).map_err(|error| format!("cannot be read: {error}"))?;
    let mut tokens: Vec<AdminToken> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let number = index + 1;
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [holder, role, tenants, digest] = fields[..] else {
            if fields.len() == 2 {
                return Err(format!(
                    "line {number}: \"holder token\" lines are no longer read: the file holds \
                     \"holder role tenants sha256:<digest>\" (relancectl tokens mint writes one)"
                ));
            }
            return Err(format!(
                "line {number} must be \"holder role tenants sha256:<hex digest of the token>\""
            ));
        };
        let role = AdminRole::parse(role).ok_or_else(|| {
            format!("line {number}: role {role:?} must be read_only, credit_manager or operator")
        })?;
        let tenants = if tenants == "*" {
            TenantScope::All
        } else {
            let list: Vec<String> = tenants.split(',').map(str::to_string).collect();
            if let Some(bad) = list.iter().find(|tenant| !is_tenant(tenant)) {
                return Err(format!(
                    "line {number}: tenant {bad:?} is not a tenant id (or * for all tenants)"
                ));
            }
            TenantScope::Only(list)
        };
        let digest = parse_digest(digest).ok_or_else(|| {
            format!(
                "line {number}: the token must be given as sha256: and 64 hex digits, not in clear"
            )
        })?;
        if tokens.iter().any(|known| known.holder == holder) {
            return Err(format!("line {number}: {holder} is listed twice"));
        }
        tokens.push(AdminToken {
            holder: holder.to_string(),
            role,
            tenants,
            digest,
        });
    }
    if tokens.is_empty() {
        return Err("holds no token".into());
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_minted_line_reads_back_and_matches_only_its_token() {
        let token = "a-long-enough-token-for-the-test-0001";
        let line = token_line(
            "marie",
            AdminRole::CreditManager,
            &TenantScope::Only(vec!["acme".into()]),
            token,
        );
        let dir = std::env::temp_dir().join(format!("relance-tokens-{}", std::process::id()));
        std::fs::write(&dir, format!("# comment\n{line}\n")).unwrap();
        let tokens = read_admin_tokens(&dir.to_string_lossy()).unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(tokens[0].holder, "marie");
        assert_eq!(tokens[0].role, AdminRole::CreditManager);
        assert!(tokens[0].tenants.allows("acme") && !tokens[0].tenants.allows("globex"));
        assert!(tokens[0].matches(token));
        assert!(!tokens[0].matches("a-long-enough-token-for-the-test-0002"));
        assert!(!line.contains(token));
    }
}
