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
        let language = wanted
            .and_then(|locale| locale.split(['-', '_']).next())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        if self.messages.contains_key(&language) {
            language
        } else {
            "en".into()
        }
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
