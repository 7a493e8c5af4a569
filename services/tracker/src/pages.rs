//! The action pages: Tera templates per locale (`pages/<locale>/*.html`), their titles and
//! messages (`messages.toml`), and the stylesheet. French and English ship; any language with
//! a folder is served; others get English.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use tera::{Context, Tera};

/// Why the pages cannot be loaded.
#[derive(Debug, thiserror::Error)]
#[error("tracker.pages_dir = {dir:?}: {reason}")]
pub struct PagesError {
    pub dir: String,
    pub reason: String,
}

/// Every page of every locale.
pub struct Pages {
    tera: Tera,
    messages: BTreeMap<String, BTreeMap<String, String>>,
    pub css: String,
}

/// The business a page speaks for.
#[derive(Debug, Clone, Serialize)]
pub struct CompanyView {
    pub name: String,
    pub email: String,
    pub phone: Option<String>,
}

/// What a page shows of the invoice.
#[derive(Debug, Clone, Serialize)]
pub struct InvoiceView {
    pub number: String,
    pub amount_due: String,
    pub due_on: Option<String>,
}

fn error_text(error: &tera::Error) -> String {
    format!("{:?}", relance_telemetry::ErrorChain(error))
}

impl Pages {
    /// Loads every locale folder of `dir`.
    ///
    /// # Errors
    /// [`PagesError`] naming what cannot be read or compiled.
    pub fn load(dir: &str) -> Result<Self, PagesError> {
        let fail = |reason: String| PagesError {
            dir: dir.to_string(),
            reason,
        };
        let root = Path::new(dir);
        let mut tera = Tera::default();
        tera.autoescape_on(vec![".html"]);
        tera.set_escape_fn(relance_templates::escape_html);
        let mut sources = Vec::new();
        let mut messages = BTreeMap::new();
        let entries = std::fs::read_dir(root).map_err(|error| fail(error.to_string()))?;
        for entry in entries
            .filter_map(Result::ok)
            .filter(|entry| entry.path().is_dir())
        {
            let locale = entry.file_name().to_string_lossy().into_owned();
            for file in std::fs::read_dir(entry.path())
                .map_err(|error| fail(error.to_string()))?
                .filter_map(Result::ok)
            {
                let name = file.file_name().to_string_lossy().into_owned();
                let text = std::fs::read_to_string(file.path())
                    .map_err(|error| fail(format!("{locale}/{name}: {error}")))?;
                if name == "messages.toml" {
                    let parsed: BTreeMap<String, String> = toml::from_str(&text)
                        .map_err(|error| fail(format!("{locale}/{name}: {error}")))?;
                    messages.insert(locale.clone(), parsed);
                } else if name.ends_with(".html") {
                    sources.push((format!("{locale}/{name}"), text));
                }
            }
        }
        tera.add_raw_templates(sources)
            .map_err(|error| fail(error_text(&error)))?;
        if !messages.contains_key("en") {
            return Err(fail(
                "en/messages.toml is missing: English is the fallback".into(),
            ));
        }
        let css = std::fs::read_to_string(root.join("tracker.css")).unwrap_or_default();
        Ok(Self {
            tera,
            messages,
            css,
        })
    }

    /// The locale folder to use for a customer's locale (`fr-FR` → `fr`), English otherwise.
    pub fn locale(&self, wanted: Option<&str>) -> String {
        wanted
            .and_then(|locale| self.language_with_pages(locale))
            .unwrap_or_else(|| "en".into())
    }

    /// The language of `locale` (`fr-FR` → `fr`) when it has pages.
    fn language_with_pages(&self, locale: &str) -> Option<String> {
        let language = locale.split(['-', '_']).next()?.to_ascii_lowercase();
        self.messages.contains_key(&language).then_some(language)
    }

    /// The locale folder for a request's `Accept-Language` (for pages shown before the link
    /// is read, such as "too many requests"): the first language by preference that has a
    /// folder, English otherwise.
    pub fn locale_for_accept_language(&self, header: Option<&str>) -> String {
        let mut wanted: Vec<(f32, usize, &str)> = header
            .unwrap_or_default()
            .split(',')
            .enumerate()
            .filter_map(|(position, part)| {
                let mut fields = part.split(';');
                let tag = fields.next()?.trim();
                let quality = fields
                    .filter_map(|field| field.trim().strip_prefix("q="))
                    .find_map(|value| value.trim().parse::<f32>().ok())
                    .unwrap_or(1.0);
                (!tag.is_empty() && tag != "*" && quality > 0.0).then_some((quality, position, tag))
            })
            .collect();
        wanted.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        wanted
            .into_iter()
            .find_map(|(_, _, tag)| self.language_with_pages(tag))
            .unwrap_or_else(|| "en".into())
    }

    /// A message of the locale (English if the locale lacks it).
    pub fn message(&self, locale: &str, key: &str) -> String {
        self.messages
            .get(locale)
            .and_then(|messages| messages.get(key))
            .or_else(|| {
                self.messages
                    .get("en")
                    .and_then(|messages| messages.get(key))
            })
            .cloned()
            .unwrap_or_else(|| key.to_string())
    }

    /// Renders `page` of `locale` with `context`.
    ///
    /// # Errors
    /// The template's error (a bug in a page: a missing variable).
    pub fn render(&self, locale: &str, page: &str, context: &Context) -> Result<String, String> {
        self.tera
            .render(&format!("{locale}/{page}.html"), context)
            .map_err(|error| error_text(&error))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn pages() -> Pages {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/pages");
        Pages::load(dir).unwrap()
    }

    #[test]
    fn the_first_preferred_language_with_pages_wins() {
        let pages = pages();
        for (header, expected) in [
            (Some("fr-FR,fr;q=0.9,en;q=0.8"), "fr"),
            (Some("de-DE, fr;q=0.5, en;q=0.4"), "fr"),
            (Some("en;q=0.2, fr-CA;q=0.7"), "fr"),
            (Some("de, it"), "en"),
            (Some("fr;q=0, en"), "en"),
            (Some("*"), "en"),
            (Some(""), "en"),
            (None, "en"),
        ] {
            assert_eq!(
                pages.locale_for_accept_language(header),
                expected,
                "{header:?}"
            );
        }
    }

    /// The colour a rule of `css` gives `property`, as `#rrggbb`.
    fn colour(css: &str, selector: &str, property: &str) -> [u8; 3] {
        let rule = css
            .lines()
            .find(|line| line.starts_with(&format!("{selector} {{")))
            .unwrap_or_else(|| panic!("no rule for {selector}"));
        let value = rule
            .trim_start_matches(&format!("{selector} {{"))
            .split(';')
            .find_map(|declaration| {
                let (name, value) = declaration.split_once(':')?;
                (name.trim() == property).then_some(value)
            })
            .unwrap_or_else(|| panic!("{selector} has no {property}"));
        let hex = value
            .split_whitespace()
            .find(|word| word.starts_with('#'))
            .unwrap()
            .trim_start_matches('#');
        let byte = |at: usize| u8::from_str_radix(&hex[at..at + 2], 16).unwrap();
        [byte(0), byte(2), byte(4)]
    }

    /// WCAG 2.x relative luminance and contrast ratio.
    fn contrast(a: [u8; 3], b: [u8; 3]) -> f64 {
        let luminance = |rgb: [u8; 3]| {
            let channel = |value: u8| {
                let c = f64::from(value) / 255.0;
                if c <= 0.040_45 {
                    c / 12.92
                } else {
                    ((c + 0.055) / 1.055).powf(2.4)
                }
            };
            0.2126 * channel(rgb[0]) + 0.7152 * channel(rgb[1]) + 0.0722 * channel(rgb[2])
        };
        let (l1, l2) = (luminance(a), luminance(b));
        (l1.max(l2) + 0.05) / (l1.min(l2) + 0.05)
    }

    /// WCAG 2.2, 1.4.11 and 2.4.13: the focus indicator needs 3:1 against what surrounds it.
    #[test]
    fn the_focus_outline_has_three_to_one_contrast_on_every_background() {
        let css = pages().css;
        let outline = colour(&css, ":focus-visible", "outline");
        for (selector, property) in [
            ("body", "background"),
            (".card", "background"),
            ("header", "background"),
        ] {
            let background = colour(&css, selector, property);
            let ratio = contrast(outline, background);
            assert!(ratio >= 3.0, "focus outline on {selector}: {ratio:.2}:1");
        }
    }
}
