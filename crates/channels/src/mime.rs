//! A MIME message (RFC 5322 + RFC 2045/2047): the file provider's `.eml`, which any mail client
//! opens. Both parts are base64 so no line length or encoding rule can be broken.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::{Mailbox, OutgoingEmail};

const CRLF: &str = "\r\n";

/// An RFC 2047 encoded word when the text is not plain ASCII, the text otherwise.
fn encode_header_text(text: &str) -> String {
    let clean: String = text.chars().filter(|c| !c.is_control()).collect();
    if clean.chars().all(|c| c.is_ascii() && !c.is_ascii_control()) {
        clean
    } else {
        format!("=?UTF-8?B?{}?=", STANDARD.encode(clean.as_bytes()))
    }
}

fn mailbox_header(mailbox: &Mailbox) -> String {
    match &mailbox.name {
        Some(name) if !name.is_ascii() => {
            format!("{} <{}>", encode_header_text(name), mailbox.address)
        }
        _ => mailbox.to_header(),
    }
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
        format!("From: {}", mailbox_header(&email.from)),
        format!("To: {}", mailbox_header(&email.to)),
    ];
    if let Some(reply_to) = &email.reply_to {
        headers.push(format!("Reply-To: {}", encode_header_text(reply_to)));
    }
    headers.push(format!("Subject: {}", encode_header_text(&email.subject)));
    headers.push(format!("Message-ID: <{}@relance.invalid>", email.send_id));
    headers.push(format!("X-Relance-Send: {}", email.send_id));
    if let Some(tag) = &email.tag {
        headers.push(format!("X-Relance-Tag: {}", encode_header_text(tag)));
    }
    headers.push("MIME-Version: 1.0".into());
    headers.push(format!(
        "Content-Type: multipart/alternative; boundary=\"{boundary}\""
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
