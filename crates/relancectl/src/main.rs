//! relancectl: check and simulate dunning policies and lint templates offline, and drive the
//! scheduler's admin API (approvals, pauses, timelines). See `docs/policy.md` and
//! `docs/templates.md`.

mod admin;
mod amounts;
mod simulate;
mod templates;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Check and simulate dunning policies; approve, pause and inspect dunning through the admin API."
)]
struct Cli {
    /// The scheduler's admin API.
    #[arg(
        long,
        env = "RELANCE_ADMIN_URL",
        default_value = "http://127.0.0.1:8081",
        global = true
    )]
    url: String,
    /// Bearer token for the admin API (its digest is a line of the scheduler's admin tokens
    /// file; `relancectl tokens mint` makes one).
    #[arg(
        long,
        env = "RELANCE_ADMIN_TOKEN",
        global = true,
        hide_env_values = true
    )]
    token: Option<String>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// The tenant whose invoice or customer an id names (ids are each tenant's own). Needed
    /// only when the token sees that id in several tenants; for `approvals list`, the tenant
    /// to list.
    #[arg(long, env = "RELANCE_TENANT", global = true)]
    tenant: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Dunning policies, offline.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Reminders waiting for a person's approval.
    #[command(subcommand)]
    Approvals(ApprovalCommand),
    /// Pause, resume and inspect an invoice's dunning.
    #[command(subcommand)]
    Invoices(InvoiceCommand),
    /// Pause and resume dunning of all of a customer's invoices; erase a customer's personal
    /// data.
    #[command(subcommand, alias = "customer")]
    Customers(CustomerCommand),
    /// Reminder templates, offline: the writing-rules lint and previews.
    #[command(subcommand)]
    Templates(templates::TemplatesCommand),
    /// Dead letters: records a service could not process, kept in full; replay them once the
    /// cause is fixed.
    #[command(subcommand)]
    Dlq(DeadLetterCommand),
    /// Admin API tokens, offline: mint one and the line of the tokens file that accepts it.
    #[command(subcommand)]
    Tokens(TokenCommand),
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Make a random token and print it, with the line to add to the scheduler's admin tokens
    /// file (which holds its SHA-256, never the token). Give the token to its holder only.
    Mint {
        /// Who holds it: a person or a system; recorded on everything it changes.
        #[arg(long)]
        holder: String,
        /// read_only (reads), credit_manager (approves, pauses, resumes), operator (also dead
        /// letters, erasure, repairing payment behaviour).
        #[arg(long, value_parser = ["read_only", "credit_manager", "operator"])]
        role: String,
        /// The tenants it may act for, comma-separated, or * for all.
        #[arg(long)]
        tenants: String,
    },
}

#[derive(Debug, Args)]
struct DeadLetterSelection {
    /// Only this reason (invalid_json, database_refused, customer_mismatch, ...).
    #[arg(long)]
    reason: Option<String>,
    /// Only those that failed at or after this instant (RFC 3339).
    #[arg(long)]
    since: Option<String>,
    /// Only those that failed before this instant (RFC 3339).
    #[arg(long)]
    until: Option<String>,
}

impl DeadLetterSelection {
    fn query(&self) -> Vec<(&'static str, String)> {
        [
            ("reason", &self.reason),
            ("since", &self.since),
            ("until", &self.until),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.clone().map(|value| (name, value)))
        .collect()
    }
}

#[derive(Debug, Subcommand)]
enum DeadLetterCommand {
    /// List dead letters, newest first.
    List {
        #[command(flatten)]
        selection: DeadLetterSelection,
        /// Leave out those already replayed.
        #[arg(long)]
        not_replayed: bool,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Publish dead letters again, unchanged, to the topic they were read from.
    Replay {
        /// Dead letter ids (from `dlq list`).
        ids: Vec<i64>,
        #[command(flatten)]
        selection: DeadLetterSelection,
        /// What was fixed (kept with the replay, with who asked).
        #[arg(long)]
        note: String,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Check policy files: every error names the file, the key and why; every template a
    /// policy sends must exist for its channel in every locale; warnings tell of steps that
    /// can never go out and options that cannot take effect.
    Check {
        files: Vec<PathBuf>,
        /// The template folder the sender uses (sender.templates_dir).
        #[arg(long, default_value = "config/templates")]
        templates: PathBuf,
        /// The template set of the tenants using these policies (default: the shared one).
        #[arg(long, default_value = "default")]
        template_set: String,
    },
    /// Print the planned timeline of an invoice for a customer.
    Simulate(Box<simulate::SimulateArgs>),
}

#[derive(Debug, Subcommand)]
enum ApprovalCommand {
    /// List reminders awaiting approval.
    List,
    /// Approve a reminder: it goes out now.
    Approve {
        reminder_id: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Reject a reminder: it is not sent, and the sequence continues with the next step.
    Reject {
        reminder_id: String,
        #[arg(long)]
        reason: String,
    },
    /// Change a reminder's template or channel before approving it.
    Edit {
        reminder_id: String,
        #[arg(long)]
        template: Option<String>,
        #[arg(long)]
        channel: Option<String>,
        #[arg(long)]
        note: Option<String>,
    },
}

#[derive(Debug, Args)]
struct PauseArgs {
    /// The invoice or customer id, as the billing system knows it (any characters; encoded).
    id: String,
    /// Why, recorded with your name on the timeline.
    #[arg(long)]
    reason: String,
    /// Last day of the pause (YYYY-MM-DD); without it, until resumed.
    #[arg(long)]
    until: Option<String>,
}

#[derive(Debug, Args)]
struct ResumeArgs {
    /// The invoice or customer id, as the billing system knows it (any characters; encoded).
    id: String,
    /// Why, recorded with your name on the timeline.
    #[arg(long)]
    reason: String,
}

#[derive(Debug, Subcommand)]
enum InvoiceCommand {
    /// Hold an invoice's dunning, until a date or until resumed; its queued reminders are
    /// cancelled.
    Pause(PauseArgs),
    /// Lift an invoice's hold: it is planned again at once.
    Resume(ResumeArgs),
    /// Settle a customer's "already paid" claim after checking it: dunning resumes.
    SettleClaim(ResumeArgs),
    /// Withdraw a customer's promise to pay: dunning resumes.
    CancelPromise(ResumeArgs),
    /// The invoice's events, reminders and manual actions, oldest first.
    Timeline { invoice_id: String },
}

#[derive(Debug, Subcommand)]
enum CustomerCommand {
    /// The right to erasure: remove the customer's contact data from everything relance keeps
    /// (amounts, dates and the audit stay) and hold its dunning for good. Needs an operator
    /// token; recorded with the legal basis.
    Erase {
        customer_id: String,
        /// Why the data may or must go, as the audit will show it (for example "GDPR art. 17,
        /// request of 2026-11-28, ticket DPO-112").
        #[arg(long)]
        legal_basis: String,
    },
    /// Hold dunning of all of a customer's invoices; their queued reminders are cancelled.
    Pause(PauseArgs),
    /// Lift a customer's hold.
    Resume(ResumeArgs),
    /// Count a customer's payment behaviour (paid on time, days late, open balance, lifetime
    /// paid, first invoice) again from all their invoices, and repair the stored sums if they
    /// drifted. With --all, every customer of --tenant, page by page. Needs an operator token;
    /// each repair is recorded with the reason.
    RecountBehaviour {
        /// The customer; omit it with --all.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        customer_id: Option<String>,
        /// Every customer of --tenant.
        #[arg(long)]
        all: bool,
        /// With --all, start after this customer id (to resume a sweep that stopped).
        #[arg(long, requires = "all")]
        after: Option<String>,
        /// Why, recorded with your name on each customer repaired.
        #[arg(long)]
        reason: String,
        /// Report what differs; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Policy(PolicyCommand::Check {
            files,
            templates,
            template_set,
        }) => return check(&files, &templates, &template_set),
        Command::Policy(PolicyCommand::Simulate(arguments)) => simulate::run(&arguments, cli.json),
        Command::Templates(templates::TemplatesCommand::Lint(arguments)) => {
            return templates::run_lint(&arguments)
        }
        Command::Templates(templates::TemplatesCommand::Render(arguments)) => {
            templates::run_render(&arguments)
        }
        Command::Tokens(TokenCommand::Mint {
            holder,
            role,
            tenants,
        }) => mint(&holder, &role, &tenants),
        command => {
            let client = admin::Client::new(&cli.url, cli.token.as_deref(), cli.json)
                .for_tenant(cli.tenant.as_deref());
            match command {
                Command::Approvals(ApprovalCommand::List) => {
                    client.list_approvals(cli.tenant.as_deref()).await
                }
                Command::Approvals(ApprovalCommand::Approve { reminder_id, note }) => {
                    client
                        .decide(&reminder_id, "approve", serde_json::json!({"note": note}))
                        .await
                }
                Command::Approvals(ApprovalCommand::Reject {
                    reminder_id,
                    reason,
                }) => {
                    client
                        .decide(
                            &reminder_id,
                            "reject",
                            serde_json::json!({"reason": reason}),
                        )
                        .await
                }
                Command::Approvals(ApprovalCommand::Edit {
                    reminder_id,
                    template,
                    channel,
                    note,
                }) => client
                    .edit(
                        &reminder_id,
                        serde_json::json!({"template": template, "channel": channel, "note": note}),
                    )
                    .await,
                Command::Invoices(InvoiceCommand::Pause(pause)) => {
                    client
                        .pause("invoices", &pause.id, &pause.reason, pause.until.as_deref())
                        .await
                }
                Command::Invoices(InvoiceCommand::Resume(resume)) => {
                    client.resume("invoices", &resume.id, &resume.reason).await
                }
                Command::Invoices(InvoiceCommand::SettleClaim(settle)) => {
                    client.invoice_action(&settle.id, "settle-claim", &settle.reason).await
                }
                Command::Invoices(InvoiceCommand::CancelPromise(cancel)) => {
                    client.invoice_action(&cancel.id, "cancel-promise", &cancel.reason).await
                }
                Command::Invoices(InvoiceCommand::Timeline { invoice_id }) => {
                    client.timeline(&invoice_id).await
                }
                Command::Customers(CustomerCommand::Pause(pause)) => {
                    client
                        .pause(
                            "customers",
                            &pause.id,
                            &pause.reason,
                            pause.until.as_deref(),
                        )
                        .await
                }
                Command::Customers(CustomerCommand::Erase {
                    customer_id,
                    legal_basis,
                }) => client.erase_customer(&customer_id, &legal_basis).await,
                Command::Customers(CustomerCommand::Resume(resume)) => {
                    client.resume("customers", &resume.id, &resume.reason).await
                }
                Command::Customers(CustomerCommand::RecountBehaviour {
                    customer_id,
                    all: _,
                    after,
                    reason,
                    dry_run,
                }) => match (customer_id, cli.tenant.as_deref()) {
                    (Some(customer_id), _) => {
                        client.recount_customer(&customer_id, &reason, dry_run).await
                    }
                    (None, Some(tenant)) => {
                        client
                            .recount_tenant(tenant, after, &reason, dry_run)
                            .await
                    }
                    (None, None) => Err("--all needs --tenant (or RELANCE_TENANT): a sweep is of one tenant's customers".to_string()),
                },
                Command::Dlq(DeadLetterCommand::List {
                    selection,
                    not_replayed,
                    limit,
                }) => {
                    let mut query = selection.query();
                    if not_replayed {
                        query.push(("not_replayed", "true".to_string()));
                    }
                    query.push(("limit", limit.to_string()));
                    client.list_dead_letters(&query).await
                }
                Command::Dlq(DeadLetterCommand::Replay {
                    ids,
                    selection,
                    note,
                }) => {
                    client
                        .replay_dead_letters(serde_json::json!({
                            "ids": ids,
                            "reason": selection.reason,
                            "since": selection.since,
                            "until": selection.until,
                            "note": note,
                        }))
                        .await
                }
                Command::Policy(_) | Command::Templates(_) | Command::Tokens(_) => Ok(()),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("relancectl: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Problems with the templates a policy sends: a template missing for a locale, or written
/// for another channel.
fn template_problems(
    name: &str,
    policy: &relance_policy::Policy,
    store: &relance_templates::TemplateStore,
    set: &str,
) -> Vec<String> {
    let mut problems = Vec::new();
    for usage in relance_policy::templates_used(policy) {
        let wanted = match usage.channel {
            relance_policy::StepChannel::Sms => relance_templates::Channel::Sms,
            _ => relance_templates::Channel::Email,
        };
        for locale in store.locales() {
            match store.channel_of(set, &locale, &usage.template) {
                Ok(channel) if channel == wanted => {}
                Ok(channel) => problems.push(format!(
                    "{name}: {}: template {} is a {channel:?} template in {locale}, but the step sends {}",
                    usage.used_by,
                    usage.template,
                    usage.channel.code()
                )),
                Err(_) => problems.push(format!(
                    "{name}: {}: template {} does not exist for locale {locale} in set {set} (nor in default)",
                    usage.used_by, usage.template
                )),
            }
        }
    }
    problems
}

fn check(files: &[PathBuf], templates: &std::path::Path, set: &str) -> ExitCode {
    if files.is_empty() {
        eprintln!("relancectl: give at least one policy file");
        return ExitCode::from(2);
    }
    let store = match relance_templates::TemplateStore::load(templates) {
        Ok(store) => store,
        Err(error) => {
            eprintln!("--templates {}: {error}", templates.display());
            return ExitCode::from(2);
        }
    };
    let mut failed = false;
    for file in files {
        let name = file.display().to_string();
        match std::fs::read_to_string(file) {
            Err(error) => {
                eprintln!("{name}: cannot be read: {error}");
                failed = true;
            }
            Ok(text) => match relance_policy::parse_policy(&name, &text) {
                Ok(policy) => {
                    let problems = template_problems(&name, &policy, &store, set);
                    for problem in &problems {
                        eprintln!("{problem}");
                    }
                    for warning in relance_policy::warnings(&policy) {
                        eprintln!("{name}: warning: {warning}");
                    }
                    if problems.is_empty() {
                        println!(
                            "{name}: valid (policy {} version {}, {} segments)",
                            policy.policy,
                            policy.version,
                            policy.segments.len()
                        );
                    } else {
                        failed = true;
                    }
                }
                Err(errors) => {
                    for error in errors {
                        eprintln!("{error}");
                    }
                    failed = true;
                }
            },
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `relancectl tokens mint`.
fn mint(holder: &str, role: &str, tenants: &str) -> Result<(), String> {
    if holder.is_empty() || holder.contains(char::is_whitespace) {
        return Err("--holder must be one word (a name or an email address)".into());
    }
    let role = relance_config::AdminRole::parse(role)
        .ok_or("--role must be read_only, credit_manager or operator")?;
    let scope = if tenants == "*" {
        relance_config::TenantScope::All
    } else {
        let list: Vec<String> = tenants
            .split(',')
            .map(|tenant| tenant.trim().to_string())
            .collect();
        if list
            .iter()
            .any(|tenant| tenant.is_empty() || tenant.contains(char::is_whitespace))
        {
            return Err("--tenants must be tenant ids separated by commas, or *".into());
        }
        relance_config::TenantScope::Only(list)
    };
    // 244 random bits from the operating system's generator.
    let token = format!(
        "rlc_{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    println!("token (give it to {holder} only; it is not stored anywhere):\n  {token}");
    println!("line for the admin tokens file (scheduler.admin_tokens_file):");
    println!(
        "  {}",
        relance_config::token_line(holder, role, &scope, &token)
    );
    Ok(())
}
