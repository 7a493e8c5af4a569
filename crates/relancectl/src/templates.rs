//! `relancectl templates`: the writing-rules lint and previews, offline.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use relance_policy::{Step, StepChannel};
use relance_templates::{lint, Channel, MessageContext, TemplateStore};

#[derive(Debug, Subcommand)]
pub enum TemplatesCommand {
    /// Check every template against the writing rules, and that every template a policy names
    /// exists for every locale shipped.
    Lint(LintArgs),
    /// Render a template with the sample context (a consolidated statement of two invoices).
    Render(RenderArgs),
}

#[derive(Debug, Args)]
pub struct LintArgs {
    /// The templates folder.
    #[arg(long, default_value = "config/templates")]
    dir: String,
    /// Policy files or folders whose templates must exist.
    #[arg(long, default_value = "config/policies")]
    policies: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// The template id, as policies name it.
    template: String,
    /// The templates folder.
    #[arg(long, default_value = "config/templates")]
    dir: String,
    /// The tenant's template set (falls back to `default`).
    #[arg(long, default_value = "default")]
    set: String,
    #[arg(long, default_value = "fr-FR")]
    locale: String,
    /// Print the HTML part instead of the text part.
    #[arg(long)]
    html: bool,
    /// Use the minimal context (one invoice, nothing optional).
    #[arg(long)]
    minimal: bool,
}

fn load(dir: &str) -> Result<TemplateStore, String> {
    TemplateStore::load(Path::new(dir)).map_err(|error| format!("{dir}: {error}"))
}

/// The message templates of a policy's steps: (template, channel).
fn policy_templates(file: &Path) -> Result<Vec<(String, Channel)>, Vec<String>> {
    let name = file.display().to_string();
    let text = std::fs::read_to_string(file)
        .map_err(|error| vec![format!("{name}: cannot be read: {error}")])?;
    let policy = relance_policy::parse_policy(&name, &text)
        .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    let steps: Vec<&Step> = policy
        .segments
        .iter()
        .flat_map(|segment| segment.steps.iter())
        .chain(
            policy
                .payment_failure
                .iter()
                .flat_map(|sequence| sequence.steps.iter()),
        )
        .collect();
    let mut templates = BTreeSet::new();
    for step in steps {
        let channel = match step.channel {
            StepChannel::Email => Channel::Email,
            StepChannel::Sms => Channel::Sms,
            _ => continue,
        };
        templates.insert((step.template.clone(), channel == Channel::Email));
        if let Some(personal) = &step.personal_template {
            templates.insert((personal.clone(), channel == Channel::Email));
        }
        for variant in step
            .experiment
            .iter()
            .flat_map(|experiment| experiment.variants.iter())
        {
            templates.insert((variant.template.clone(), channel == Channel::Email));
        }
    }
    Ok(templates
        .into_iter()
        .map(|(template, email)| (template, if email { Channel::Email } else { Channel::Sms }))
        .collect())
}

fn policy_files(paths: &[String]) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for path in paths {
        let path = Path::new(path);
        if path.is_dir() {
            if let Ok(entries) = std::fs::read_dir(path) {
                let mut found: Vec<_> = entries
                    .filter_map(Result::ok)
                    .map(|entry| entry.path())
                    .filter(|file| {
                        file.extension()
                            .is_some_and(|ext| ext == "yaml" || ext == "yml")
                    })
                    .collect();
                found.sort();
                files.extend(found);
            }
        } else {
            files.push(path.to_path_buf());
        }
    }
    files
}

pub fn run_lint(arguments: &LintArgs) -> ExitCode {
    let store = match load(&arguments.dir) {
        Ok(store) => store,
        Err(message) => {
            eprintln!("relancectl: {message}");
            return ExitCode::FAILURE;
        }
    };
    let mut problems: Vec<String> = lint(&store).iter().map(ToString::to_string).collect();
    let locales: BTreeSet<String> = store
        .templates()
        .filter(|(set, _, _, _)| *set == "default")
        .map(|(_, locale, _, _)| locale.to_string())
        .collect();
    for file in policy_files(&arguments.policies) {
        // A tenant's policy (acme.yaml) uses the tenant's set, falling back to the default.
        let set = file
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_default();
        match policy_templates(&file) {
            Err(errors) => problems.extend(errors),
            Ok(templates) => {
                for (template, channel) in templates {
                    for locale in &locales {
                        match store.render(&set, &template, &MessageContext::sample(locale)) {
                            Ok(message) if message.channel != channel => problems.push(format!(
                                "{}: template {template} is an {:?} template but a step sends it by {channel:?}",
                                file.display(),
                                message.channel
                            )),
                            Ok(message) if !message.source.ends_with(&format!("/{locale}/{template}")) && locale != "en" => {
                                problems.push(format!(
                                    "{}: template {template} has no {locale} version (falls back to {})",
                                    file.display(),
                                    message.source
                                ));
                            }
                            Ok(_) => {}
                            Err(error) => problems.push(format!("{}: {error}", file.display())),
                        }
                    }
                }
            }
        }
    }
    if problems.is_empty() {
        let count = store.templates().count();
        println!("{}: {count} templates follow every writing rule; every template the policies name exists.", arguments.dir);
        ExitCode::SUCCESS
    } else {
        for problem in &problems {
            eprintln!("{problem}");
        }
        eprintln!("relancectl: {} problems", problems.len());
        ExitCode::FAILURE
    }
}

pub fn run_render(arguments: &RenderArgs) -> Result<(), String> {
    let store = load(&arguments.dir)?;
    let context = if arguments.minimal {
        MessageContext::minimal(&arguments.locale)
    } else {
        MessageContext::sample(&arguments.locale)
    };
    let message = store
        .render(&arguments.set, &arguments.template, &context)
        .map_err(|error| error.to_string())?;
    if arguments.html {
        println!("{}", message.html.unwrap_or_default());
    } else {
        if !message.subject.is_empty() {
            println!("Subject: {}\n", message.subject);
        }
        print!("{}", message.text);
        eprintln!("({})", message.source);
    }
    Ok(())
}
