//! Loading templates from a folder and rendering them, with fallbacks.
//!
//! Layout of the folder: `<set>/<locale>/<template>.toml` and `<set>/<locale>/layout.html`,
//! `layout.txt`, where `<set>` is `default` or a tenant, and `<locale>` a BCP 47 tag (`fr-FR`)
//! or a language (`fr`). A template is looked up in the tenant's set, then the default set;
//! within a set, for the locale, its language, then English.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tera::{Context, Tera};

use crate::context::MessageContext;

/// How a message is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Email,
    Sms,
}

/// A template file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateFile {
    channel: Channel,
    /// Email subject.
    #[serde(default)]
    subject: Option<String>,
    /// Email body: paragraphs separated by blank lines.
    #[serde(default)]
    body: Option<String>,
    /// Email call to action: the button's label.
    #[serde(default)]
    action: Option<String>,
    /// Where the button leads; the signed pay link unless the template says otherwise.
    #[serde(default)]
    action_url: Option<String>,
    /// SMS text.
    #[serde(default)]
    text: Option<String>,
}

/// A rendered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedMessage {
    pub channel: Channel,
    /// Email subject (empty for SMS).
    pub subject: String,
    /// Email HTML body.
    pub html: Option<String>,
    /// Plain-text body (the email's text part, or the SMS).
    pub text: String,
    /// Where the email's one button leads (empty for SMS).
    pub action_url: String,
    /// Which file was used: `<set>/<locale>/<template>`.
    pub source: String,
}

/// Why templates cannot be loaded or rendered.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error(
        "no template {template:?} for set {set:?} and locale {locale:?} (nor their fallbacks)"
    )]
    NotFound {
        set: String,
        locale: String,
        template: String,
    },
    #[error("rendering {source_name}: {reason}")]
    Render { source_name: String, reason: String },
}

/// Every template of a folder, compiled.
pub struct TemplateStore {
    tera: Tera,
    /// (set, locale, template) → channel.
    templates: BTreeMap<(String, String, String), Channel>,
    /// (set, locale) → the set's wording of recurring texts.
    texts: BTreeMap<(String, String), Texts>,
    root: PathBuf,
}

/// Wording a business sets once per template set and locale (`texts.toml`), given to every
/// template of that set: how customers can pay, what happens when they do not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Texts {
    /// How customers can pay, one sentence each (`by card, online`).
    #[serde(default)]
    pub payment_options: Vec<String>,
    /// What happens if an invoice stays unpaid, said on final notices.
    #[serde(default)]
    pub consequences: Option<String>,
}

fn tera_error(error: &tera::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl TemplateStore {
    /// Loads and compiles every template under `root`.
    ///
    /// # Errors
    /// [`TemplateError::File`] naming the file that cannot be read, parsed or compiled.
    pub fn load(root: &Path) -> Result<Self, TemplateError> {
        let fail = |path: &Path, reason: String| TemplateError::File {
            path: path.display().to_string(),
            reason,
        };
        let mut tera = Tera::default();
        tera.autoescape_on(vec![".html"]);
        tera.set_escape_fn(escape_html);
        let mut templates = BTreeMap::new();
        let mut texts = BTreeMap::new();
        let sets = std::fs::read_dir(root).map_err(|error| fail(root, error.to_string()))?;
        let mut sources: Vec<(String, String)> = Vec::new();
        for set in sets
            .filter_map(Result::ok)
            .filter(|entry| entry.path().is_dir())
        {
            let set_name = set.file_name().to_string_lossy().into_owned();
            for locale in std::fs::read_dir(set.path())
                .map_err(|error| fail(&set.path(), error.to_string()))?
                .filter_map(Result::ok)
            {
                if !locale.path().is_dir() {
                    continue;
                }
                let locale_name = locale.file_name().to_string_lossy().into_owned();
                for file in std::fs::read_dir(locale.path())
                    .map_err(|error| fail(&locale.path(), error.to_string()))?
                    .filter_map(Result::ok)
                {
                    let path = file.path();
                    let name = file.file_name().to_string_lossy().into_owned();
                    let text = std::fs::read_to_string(&path)
                        .map_err(|error| fail(&path, error.to_string()))?;
                    let prefix = format!("{set_name}/{locale_name}");
                    if name == "layout.html" || name == "layout.txt" {
                        sources.push((format!("{prefix}/{name}"), text));
                    } else if name == "texts.toml" {
                        let parsed: Texts = toml::from_str(&text)
                            .map_err(|error| fail(&path, error.to_string()))?;
                        texts.insert((set_name.clone(), locale_name.clone()), parsed);
                    } else if let Some(template) = name.strip_suffix(".toml") {
                        let parsed: TemplateFile = toml::from_str(&text)
                            .map_err(|error| fail(&path, error.to_string()))?;
                        let id = format!("{prefix}/{template}");
                        match parsed.channel {
                            Channel::Email => {
                                let (Some(subject), Some(body), Some(action)) =
                                    (&parsed.subject, &parsed.body, &parsed.action)
                                else {
                                    return Err(fail(
                                        &path,
                                        "an email template needs subject, body and action".into(),
                                    ));
                                };
                                sources.push((format!("{id}.subject.txt"), subject.clone()));
                                sources.push((format!("{id}.body.html"), body.clone()));
                                sources.push((format!("{id}.body.txt"), body.clone()));
                                sources.push((format!("{id}.action.txt"), action.clone()));
                                let action_url = parsed
                                    .action_url
                                    .clone()
                                    .unwrap_or_else(|| "{{ links.pay }}".into());
                                sources.push((format!("{id}.action_url.txt"), action_url));
                            }
                            Channel::Sms => {
                                let Some(text) = &parsed.text else {
                                    return Err(fail(&path, "an SMS template needs text".into()));
                                };
                                sources.push((format!("{id}.sms.txt"), text.clone()));
                            }
                        }
                        templates.insert(
                            (set_name.clone(), locale_name.clone(), template.to_string()),
                            parsed.channel,
                        );
                    }
                }
            }
        }
        tera.add_raw_templates(sources)
            .map_err(|error| fail(root, tera_error(&error)))?;
        Ok(Self {
            tera,
            templates,
            texts,
            root: root.to_path_buf(),
        })
    }

    /// The folder the templates came from.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every (set, locale, template) loaded.
    pub fn templates(&self) -> impl Iterator<Item = (&str, &str, &str, Channel)> {
        self.templates
            .iter()
            .map(|((set, locale, template), channel)| {
                (set.as_str(), locale.as_str(), template.as_str(), *channel)
            })
    }

    /// The channel of the template a message of `set` in `locale` would use (with the same
    /// fallbacks as rendering).
    ///
    /// # Errors
    /// [`TemplateError::NotFound`] when no template fits.
    pub fn channel_of(
        &self,
        set: &str,
        locale: &str,
        template: &str,
    ) -> Result<Channel, TemplateError> {
        self.resolve(set, locale, template)
            .map(|(_, _, channel)| channel)
    }

    /// Every locale that has templates, in any set.
    pub fn locales(&self) -> Vec<String> {
        let mut locales: Vec<String> = self
            .templates
            .keys()
            .map(|(_, locale, _)| locale.clone())
            .collect();
        locales.sort();
        locales.dedup();
        locales
    }

    /// The texts for `set` and `locale`, with the same fallbacks as templates.
    pub fn texts(&self, set: &str, locale: &str) -> Texts {
        Self::candidates(set, locale)
            .into_iter()
            .find_map(|key| self.texts.get(&key).cloned())
            .unwrap_or_default()
    }

    fn candidates(set: &str, locale: &str) -> Vec<(String, String)> {
        let language = locale.split('-').next().unwrap_or(locale).to_string();
        let mut locales = vec![locale.to_string(), language, "en".to_string()];
        locales.dedup();
        let mut sets = vec![set.to_string(), "default".to_string()];
        sets.dedup();
        sets.iter()
            .flat_map(|set| {
                locales
                    .iter()
                    .map(move |locale| (set.clone(), locale.clone()))
            })
            .collect()
    }

    fn resolve(
        &self,
        set: &str,
        locale: &str,
        template: &str,
    ) -> Result<(String, String, Channel), TemplateError> {
        Self::candidates(set, locale)
            .into_iter()
            .find_map(|(set, locale)| {
                self.templates
                    .get(&(set.clone(), locale.clone(), template.to_string()))
                    .map(|channel| (set, locale, *channel))
            })
            .ok_or_else(|| TemplateError::NotFound {
                set: set.into(),
                locale: locale.into(),
                template: template.into(),
            })
    }

    fn layout(&self, set: &str, locale: &str, name: &str) -> Option<String> {
        Self::candidates(set, locale)
            .into_iter()
            .map(|(set, locale)| format!("{set}/{locale}/{name}"))
            .find(|candidate| self.tera.get_template(candidate).is_ok())
    }

    fn render_one(&self, name: &str, context: &Context) -> Result<String, TemplateError> {
        self.tera
            .render(name, context)
            .map_err(|error| TemplateError::Render {
                source_name: name.into(),
                reason: tera_error(&error),
            })
    }

    /// Renders `template` for `context` from `set` (a tenant, falling back to `default`).
    ///
    /// # Errors
    /// [`TemplateError`] when no template or layout fits, or rendering fails (a variable the
    /// context lacks).
    pub fn render(
        &self,
        set: &str,
        template: &str,
        context: &MessageContext,
    ) -> Result<RenderedMessage, TemplateError> {
        let (found_set, found_locale, channel) = self.resolve(set, &context.locale, template)?;
        self.render_resolved(set, &found_set, &found_locale, template, channel, context)
    }

    /// Renders the template of exactly this set and locale folder, without fallback (the
    /// lint checks each file on its own).
    ///
    /// # Errors
    /// As [`TemplateStore::render`].
    pub fn render_exact(
        &self,
        set: &str,
        locale: &str,
        template: &str,
        context: &MessageContext,
    ) -> Result<RenderedMessage, TemplateError> {
        let channel = *self
            .templates
            .get(&(set.to_string(), locale.to_string(), template.to_string()))
            .ok_or_else(|| TemplateError::NotFound {
                set: set.into(),
                locale: locale.into(),
                template: template.into(),
            })?;
        self.render_resolved(set, set, locale, template, channel, context)
    }

    fn render_resolved(
        &self,
        set: &str,
        found_set: &str,
        found_locale: &str,
        template: &str,
        channel: Channel,
        context: &MessageContext,
    ) -> Result<RenderedMessage, TemplateError> {
        let id = format!("{found_set}/{found_locale}/{template}");
        let mut tera_context =
            Context::from_serialize(context).map_err(|error| TemplateError::Render {
                source_name: id.clone(),
                reason: error.to_string(),
            })?;
        match channel {
            Channel::Sms => {
                let text =
                    normalise_line(&self.render_one(&format!("{id}.sms.txt"), &tera_context)?);
                Ok(RenderedMessage {
                    channel,
                    subject: String::new(),
                    html: None,
                    text,
                    action_url: String::new(),
                    source: id,
                })
            }
            Channel::Email => {
                let subject =
                    normalise_line(&self.render_one(&format!("{id}.subject.txt"), &tera_context)?);
                let body_html =
                    paragraphs_html(&self.render_one(&format!("{id}.body.html"), &tera_context)?);
                let body_text =
                    paragraphs_text(&self.render_one(&format!("{id}.body.txt"), &tera_context)?);
                let action =
                    normalise_line(&self.render_one(&format!("{id}.action.txt"), &tera_context)?);
                let action_url = normalise_line(
                    &self.render_one(&format!("{id}.action_url.txt"), &tera_context)?,
                );
                tera_context.insert("subject", &subject);
                tera_context.insert("body_html", &body_html);
                tera_context.insert("body_text", &body_text);
                tera_context.insert("action", &action);
                tera_context.insert("action_url", &action_url);
                let missing = |name: &str| TemplateError::NotFound {
                    set: set.into(),
                    locale: context.locale.clone(),
                    template: name.into(),
                };
                let html_layout = self
                    .layout(set, &context.locale, "layout.html")
                    .ok_or_else(|| missing("layout.html"))?;
                let text_layout = self
                    .layout(set, &context.locale, "layout.txt")
                    .ok_or_else(|| missing("layout.txt"))?;
                let html = self.render_one(&html_layout, &tera_context)?;
                let text = tidy_text(&self.render_one(&text_layout, &tera_context)?);
                Ok(RenderedMessage {
                    channel,
                    subject,
                    html: Some(html),
                    text,
                    action_url,
                    source: id,
                })
            }
        }
    }
}

/// Collapses line breaks and runs of spaces, keeping non-breaking spaces (`1 234,56 €`).
fn normalise_line(text: &str) -> String {
    text.split_ascii_whitespace().collect::<Vec<_>>().join(" ")
}

fn trim_ascii(line: &str) -> &str {
    line.trim_matches(|c: char| c.is_ascii_whitespace())
}

fn split_paragraphs(text: &str) -> Vec<String> {
    text.split("\n\n")
        .map(|paragraph| {
            paragraph
                .lines()
                .map(trim_ascii)
                .filter(|line| !line.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|paragraph| !paragraph.is_empty())
        .collect()
}

/// Paragraphs (already escaped by Tera) as HTML.
fn paragraphs_html(text: &str) -> String {
    split_paragraphs(text)
        .into_iter()
        .map(|paragraph| format!("<p style=\"margin:0 0 16px 0\">{paragraph}</p>"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn paragraphs_text(text: &str) -> String {
    split_paragraphs(text).join("\n\n")
}

/// At most one blank line in a row, no trailing spaces.
fn tidy_text(text: &str) -> String {
    let mut out = Vec::new();
    let mut blank = false;
    for line in text
        .lines()
        .map(|line| line.trim_end_matches(|c: char| c.is_ascii_whitespace()))
    {
        if trim_ascii(line).is_empty() {
            if !blank && !out.is_empty() {
                out.push(String::new());
            }
            blank = true;
        } else {
            out.push(line.to_string());
            blank = false;
        }
    }
    while out.last().is_some_and(String::is_empty) {
        out.pop();
    }
    out.join("\n") + "\n"
}

/// HTML escaping for text and quoted attributes. Unlike Tera's default it leaves `/` alone, so
/// links in `href` stay readable to mail clients and click trackers.
pub fn escape_html(input: &str) -> String {
    let mut escaped = String::with_capacity(input.len());
    for character in input.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#x27;"),
            other => escaped.push(other),
        }
    }
    escaped
}
