//! Money and dates as people of a locale write them. Amounts are integer minor units; nothing
//! here goes through a float.

use chrono::{Datelike, NaiveDate};

/// Minor-unit digits of a currency (ISO 4217 exponent).
pub fn exponent(currency: &str) -> u32 {
    match currency {
        "JPY" | "KRW" | "CLP" | "ISK" | "VND" | "XAF" | "XOF" | "XPF" | "UGX" | "PYG" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

fn symbol(currency: &str) -> Option<&'static str> {
    Some(match currency {
        "EUR" => "€",
        "USD" => "$",
        "GBP" => "£",
        "JPY" => "¥",
        _ => return None,
    })
}

fn group(digits: &str, separator: &str) -> String {
    let mut grouped = String::new();
    for (index, character) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            grouped.push_str(separator);
        }
        grouped.push(character);
    }
    grouped
}

/// `1 234,56 €` in French (non-breaking spaces), `€1,234.56` in English, `1.234,56 €` in German.
pub fn money(amount_minor: i64, currency: &str, locale: &str) -> String {
    let digits = exponent(currency);
    let scale = 10i64.pow(digits);
    let negative = amount_minor < 0;
    let amount = amount_minor.unsigned_abs();
    let whole = (amount / scale.unsigned_abs()).to_string();
    let fraction = format!(
        "{:0width$}",
        amount % scale.unsigned_abs(),
        width = digits as usize
    );
    let sign = if negative { "-" } else { "" };
    let language = locale.split('-').next().unwrap_or(locale);
    match language {
        "fr" | "de" | "es" | "it" | "pt" | "nl" => {
            let (thousands, decimal) = if language == "fr" {
                ("\u{a0}", ",")
            } else {
                (".", ",")
            };
            let number = if digits == 0 {
                group(&whole, thousands)
            } else {
                format!("{}{decimal}{fraction}", group(&whole, thousands))
            };
            let unit = symbol(currency).unwrap_or(currency);
            format!("{sign}{number}\u{a0}{unit}")
        }
        _ => {
            let number = if digits == 0 {
                group(&whole, ",")
            } else {
                format!("{}.{fraction}", group(&whole, ","))
            };
            match symbol(currency) {
                Some(symbol) => format!("{sign}{symbol}{number}"),
                None => format!("{sign}{currency}\u{a0}{number}"),
            }
        }
    }
}

const FRENCH_MONTHS: [&str; 12] = [
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
];
const ENGLISH_MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// `2 décembre 2026` in French, `2 December 2026` otherwise.
pub fn date(date: NaiveDate, locale: &str) -> String {
    let month = date.month0() as usize;
    match locale.split('-').next().unwrap_or(locale) {
        "fr" => {
            let day = if date.day() == 1 {
                "1er".to_string()
            } else {
                date.day().to_string()
            };
            format!("{day} {} {}", FRENCH_MONTHS[month], date.year())
        }
        _ => format!("{} {} {}", date.day(), ENGLISH_MONTHS[month], date.year()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_written_the_way_each_locale_writes_it() {
        assert_eq!(money(123_456, "EUR", "fr-FR"), "1\u{a0}234,56\u{a0}€");
        assert_eq!(money(123_456, "EUR", "en-GB"), "€1,234.56");
        assert_eq!(money(123_456, "EUR", "de-DE"), "1.234,56\u{a0}€");
        assert_eq!(money(5, "EUR", "en"), "€0.05");
        assert_eq!(money(1_500, "JPY", "en"), "¥1,500");
        assert_eq!(money(123_456, "CHF", "en"), "CHF\u{a0}1,234.56");
        assert_eq!(
            money(100_000_000, "USD", "fr"),
            "1\u{a0}000\u{a0}000,00\u{a0}$"
        );
    }

    #[test]
    fn dates_are_written_in_the_locale() {
        let day = NaiveDate::from_ymd_opt(2026, 12, 2).unwrap_or_default();
        assert_eq!(date(day, "fr-FR"), "2 décembre 2026");
        assert_eq!(date(day, "en"), "2 December 2026");
        assert_eq!(
            date(
                NaiveDate::from_ymd_opt(2027, 1, 1).unwrap_or_default(),
                "fr"
            ),
            "1er janvier 2027"
        );
    }
}
