//! Amounts as people write them ("1234.56") to minor units, without floats.

/// Minor-unit digits of a currency (ISO 4217 exponent): 2 unless known otherwise.
pub fn exponent(currency: &str) -> u32 {
    match currency {
        "JPY" | "KRW" | "CLP" | "ISK" | "VND" | "XAF" | "XOF" | "XPF" | "UGX" | "PYG" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

/// Parses `1234.56` (or `1234`) into minor units of `currency`.
///
/// # Errors
/// A message when the text is not a non-negative decimal with at most the currency's digits.
pub fn parse_amount(text: &str, currency: &str) -> Result<i64, String> {
    let digits = exponent(currency);
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let invalid = || format!("{text:?} is not an amount such as 1234.56 in {currency}");
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(invalid());
    }
    if fraction.len() > digits as usize {
        return Err(format!(
            "{text:?} has more decimals than {currency} allows ({digits})"
        ));
    }
    let scale = 10i64.pow(digits);
    let whole: i64 = whole.parse().map_err(|_| invalid())?;
    let padded = format!("{fraction:0<width$}", width = digits as usize);
    let fraction: i64 = if padded.is_empty() {
        0
    } else {
        padded.parse().map_err(|_| invalid())?
    };
    whole
        .checked_mul(scale)
        .and_then(|major| major.checked_add(fraction))
        .ok_or_else(invalid)
}

/// Formats minor units as `1,234.56 EUR`.
pub fn format_amount(minor: i64, currency: &str) -> String {
    let digits = exponent(currency);
    let scale = 10i64.pow(digits);
    let whole = (minor / scale).to_string();
    let mut grouped = String::new();
    for (index, character) in whole.chars().enumerate() {
        if index > 0 && (whole.len() - index) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(character);
    }
    if digits == 0 {
        format!("{grouped} {currency}")
    } else {
        format!(
            "{grouped}.{:0width$} {currency}",
            minor % scale,
            width = digits as usize
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_parse_to_minor_units_by_currency() {
        assert_eq!(parse_amount("1234.56", "EUR"), Ok(123_456));
        assert_eq!(parse_amount("1234.5", "EUR"), Ok(123_450));
        assert_eq!(parse_amount("1234", "EUR"), Ok(123_400));
        assert_eq!(parse_amount("1500", "JPY"), Ok(1_500));
        assert_eq!(parse_amount("1.234", "KWD"), Ok(1_234));
        assert!(parse_amount("12.345", "EUR").is_err());
        assert!(parse_amount("-5", "EUR").is_err());
        assert!(parse_amount("1e3", "EUR").is_err());
        assert_eq!(format_amount(123_456, "EUR"), "1,234.56 EUR");
        assert_eq!(format_amount(1_500, "JPY"), "1,500 JPY");
    }
}
