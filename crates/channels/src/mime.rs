//! A MIME message (RFC 5322 + RFC 2045/2047): the file provider's `.eml`, which any mail client
//! opens. Headers are one line of neutralised text (no line breaks, no bidi controls), folded
//! at 78 characters; text that is not plain ASCII, holds something an RFC 2047 decoder would
//! take for an encoded word (`=?`), or has a word too long to fold is written as UTF-8 encoded
//! words of at most 75 characters. Both body parts are base64, so no line length or encoding
//! rule can be broken.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use relance_delivery::text::one_line;

use crate::{Mailbox, OutgoingEmail};

const CRLF: &str = "\r\n";
/// RFC 5322's recommended line length.
const LINE: usize = 78;
/// Raw bytes in one encoded word: base64 of 36 bytes is 48 characters, and
/// `=?UTF-8?B?` + 48 + `?=` is 60: within RFC 2047's 75, and on one line after the longest
/// header name we write.
const WORD_BYTES: usize = 36;
/// The longest word that still folds on a line of its own.
const LONGEST_PLAIN_WORD: usize = 60;

/// Whether `text` (already one line) must be written as encoded words.
fn needs_encoding(text: &str) -> bool {
    !text.is_ascii()
        || text.contains("=?")
        || text.split(' ').any(|word| word.len() > LONGEST_PLAIN_WORD)
}

/// `text` as UTF-8 base64 encoded words, split between characters.
fn encoded_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chunk = String::new();
    for character in text.chars() {
        if chunk.len() + character.len_utf8() > WORD_BYTES {
            words.push(std::mem::take(&mut chunk));
        }
        chunk.push(character);
    }
    if !chunk.is_empty() {
        words.push(chunk);
    }
    words
        .iter()
        .map(|chunk| format!("=?UTF-8?B?{}?=", STANDARD.encode(chunk.as_bytes())))
        .collect()
}

/// The tokens of unstructured text: its words, or its encoded words.
fn text_tokens(text: &str) -> Vec<String> {
    let line = one_line(text);
    if needs_encoding(&line) {
        encoded_words(&line)
    } else {
        line.split(' ').map(str::to_string).collect()
    }
}

/// A display name as tokens: a quoted string when it is plain ASCII and fits a line, encoded
/// words otherwise.
fn phrase_tokens(name: &str) -> Vec<String> {
    let line = one_line(name);
    let quoted = format!("\"{}\"", line.replace('\\', "\\\\").replace('"', "\\\""));
    if needs_encoding(&line) || quoted.len() > LONGEST_PLAIN_WORD {
        encoded_words(&line)
    } else {
        vec![quoted]
    }
}

fn mailbox_tokens(mailbox: &Mailbox) -> Vec<String> {
    let mut tokens = mailbox
        .name
        .as_deref()
        .filter(|name| !one_line(name).is_empty())
        .map(phrase_tokens)
        .unwrap_or_default();
    tokens.push(format!("<{}>", one_line(&mailbox.address).replace(' ', "")));
    tokens
}

/// `Name: tokens`, the tokens separated by one space, folded before a token that would take
/// the line past 78 characters. Unfolding (removing each CRLF) gives the text back.
fn header(name: &str, tokens: &[String]) -> String {
    let mut out = format!("{name}:");
    let mut line_length = out.len();
    for token in tokens {
        if line_length + 1 + token.len() > LINE && line_length > name.len() + 1 {
            out.push_str(CRLF);
            line_length = 0;
        }
        out.push(' ');
        out.push_str(token);
        line_length += 1 + token.len();
    }
    out
}

fn base64_lines(body: &str) -> String {
    let encoded = STANDARD.encode(body.as_bytes());
    encoded
        .as_bytes()
        .chunks(76)
        .map(|line| String::from_utf8_lossy(line).into_owned())
        .collect::<Vec<_>>()
        .join(CRLF)
}

/// The message as an `.eml` file's content.
pub fn render_eml(email: &OutgoingEmail) -> String {
    let boundary = format!("relance-{}", email.send_id.simple());
    let mut headers = vec![
        format!("Date: {}", email.date.to_rfc2822()),
        header("From", &mailbox_tokens(&email.from)),
        header("To", &mailbox_tokens(&email.to)),
    ];
    if let Some(reply_to) = &email.reply_to {
        headers.push(header(
            "Reply-To",
            &mailbox_tokens(&Mailbox::new(reply_to.clone(), None)),
        ));
    }
    headers.push(header("Subject", &text_tokens(&email.subject)));
    headers.push(format!("Message-ID: <{}@relance.invalid>", email.send_id));
    headers.push(format!("X-Relance-Send: {}", email.send_id));
    if let Some(tag) = &email.tag {
        headers.push(header("X-Relance-Tag", &text_tokens(tag)));
    }
    headers.push("MIME-Version: 1.0".into());
    headers.push(format!(
        "Content-Type: multipart/alternative;{CRLF} boundary=\"{boundary}\""
    ));
    let part = |content_type: &str, body: &str| {
        format!(
            "--{boundary}{CRLF}Content-Type: {content_type}; charset=utf-8{CRLF}Content-Transfer-Encoding: base64{CRLF}{CRLF}{}{CRLF}",
            base64_lines(body)
        )
    };
    format!(
        "{}{CRLF}{CRLF}{}{}--{boundary}--{CRLF}",
        headers.join(CRLF),
        part("text/plain", &email.text),
        part("text/html", &email.html),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::collections::BTreeMap;
    use uuid::Uuid;

    fn email() -> OutgoingEmail {
        OutgoingEmail {
            send_id: Uuid::from_u128(7),
            from: Mailbox::new("billing@acme.example", Some("Acme \"Billing\"".into())),
            reply_to: None,
            to: Mailbox::new("camille@example.fr", Some("Camille Durand".into())),
            subject: "Facture F-1 : échéance\r\nBcc: evil@example.com".into(),
            html: "<p>é</p>".into(),
            text: "é".into(),
            tag: Some("dunning-default-first_reminder".into()),
            metadata: BTreeMap::new(),
            date: chrono::Utc
                .with_ymd_and_hms(2026, 12, 2, 9, 0, 0)
                .single()
                .unwrap_or_default(),
        }
    }

    #[test]
    fn headers_cannot_be_injected_and_non_ascii_is_encoded() {
        let eml = render_eml(&email());
        let header_block = eml.split("\r\n\r\n").next().unwrap_or_default();
        assert!(
            !header_block.lines().any(|line| line.starts_with("Bcc:")),
            "{header_block}"
        );
        assert!(
            header_block.contains("Subject: =?UTF-8?B?"),
            "{header_block}"
        );
        assert!(
            header_block.contains("From: \"Acme \\\"Billing\\\"\" <billing@acme.example>"),
            "{header_block}"
        );
        assert!(
            header_block.contains("Date: Wed, 2 Dec 2026 09:00:00 +0000"),
            "{header_block}"
        );
        assert!(eml.ends_with("--relance-00000000000000000000000000000007--\r\n"));
        assert!(eml.lines().all(|line| line.len() <= 998));
    }
}
