//! The admin API's tokens: a file of "holder token" lines, mounted from a secret.

use secrecy::SecretString;

/// A token and the person or system holding it.
#[derive(Debug, Clone)]
pub struct AdminToken {
    pub holder: String,
    pub token: SecretString,
}

/// The shortest token accepted: guessing one must be hopeless.
const MIN_TOKEN_LENGTH: usize = 24;

/// Reads the tokens file at `path`.
///
/// # Errors
/// Why the file cannot be used, as text: unreadable, empty, a malformed line, a short token,
/// or a holder listed twice.
pub fn read_admin_tokens(path: &str) -> Result<Vec<AdminToken>, String> {
    let text = std::fs::read_to_string(path).map_err(|error| format!("cannot be read: {error}"))?;
    let mut tokens: Vec<AdminToken> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let number = index + 1;
        let mut parts = line.split_whitespace();
        let (Some(holder), Some(token), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("line {number} must be \"holder token\""));
        };
        if token.len() < MIN_TOKEN_LENGTH {
            return Err(format!(
                "line {number}: the token of {holder} has fewer than {MIN_TOKEN_LENGTH} characters"
            ));
        }
        if tokens.iter().any(|known| known.holder == holder) {
            return Err(format!("line {number}: {holder} is listed twice"));
        }
        tokens.push(AdminToken {
            holder: holder.to_string(),
            token: SecretString::from(token.to_string()),
        });
    }
    if tokens.is_empty() {
        return Err("holds no token".into());
    }
    Ok(tokens)
}
