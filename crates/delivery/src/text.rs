//! Data made safe to show: customer names, invoice numbers and subjects come from billing
//! systems and customers, and must not reorder what a reader sees, start a new header line, or
//! pass for an RFC 2047 encoded word that a mail client would decode.

/// Unicode's explicit bidirectional formatting characters: embeddings, overrides, isolates and
/// marks. In a name they can make `invoice.pdf.exe` read `invoice.exe.pdf`.
pub fn is_bidi_control(character: char) -> bool {
    matches!(
        character,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// One line of text: control characters (line breaks, tabs) become spaces, bidi controls go,
/// runs of whitespace become one space, and the ends are trimmed.
pub fn one_line(text: &str) -> String {
    let mut line = String::with_capacity(text.len());
    let mut pending_space = false;
    for character in text.chars() {
        if is_bidi_control(character) {
            continue;
        }
        if character.is_whitespace() || character.is_control() {
            pending_space = !line.is_empty();
            continue;
        }
        if pending_space {
            line.push(' ');
            pending_space = false;
        }
        line.push(character);
    }
    line
}

/// Text for a header that a provider writes (a subject, a display name): [`one_line`], and an
/// encoded-word look-alike (`=?`) broken with a space, so no mail client decodes data as an
/// encoded word (which could carry a line break).
pub fn header_text(text: &str) -> String {
    one_line(text).replace("=?", "= ?")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_line_breaks_and_encoded_word_look_alikes_are_neutralised() {
        assert_eq!(
            one_line(" Facture\r\nBcc: x@y \u{202E}fdp.exe\u{202C}  "),
            "Facture Bcc: x@y fdp.exe"
        );
        assert_eq!(
            header_text("F-=?UTF-8?Q?a=0D=0AX?="),
            "F-= ?UTF-8?Q?a=0D=0AX?="
        );
        assert_eq!(one_line("Zoë 👩‍👩‍👧"), "Zoë 👩‍👩‍👧", "joiners stay");
    }
}
