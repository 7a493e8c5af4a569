//! docs/configuration.md is generated from config/default.toml, so the two cannot drift:
//! this test regenerates it and fails on any difference (`UPDATE_DOCS=1` rewrites the file).

use std::path::PathBuf;

use relance_config::DEFAULT_TOML;

struct Key {
    name: String,
    default: String,
    description: Vec<String>,
}

struct Section {
    name: String,
    keys: Vec<Key>,
}

fn parse(default_toml: &str) -> (Vec<String>, Vec<Section>) {
    let mut intro = Vec::new();
    let mut sections: Vec<Section> = Vec::new();
    let mut comments: Vec<String> = Vec::new();
    for line in default_toml.lines() {
        let line = line.trim();
        if let Some(comment) = line.strip_prefix('#') {
            comments.push(comment.strip_prefix(' ').unwrap_or(comment).to_string());
        } else if line.is_empty() {
            if sections.is_empty() && !comments.is_empty() {
                intro.append(&mut comments);
                intro.push(String::new());
            }
        } else if let Some(name) = line
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'))
        {
            comments.clear();
            sections.push(Section {
                name: name.to_string(),
                keys: Vec::new(),
            });
        } else {
            let (name, default) = line.split_once('=').expect("key = value lines");
            let section = sections.last_mut().expect("keys are inside sections");
            section.keys.push(Key {
                name: name.trim().to_string(),
                default: default.trim().to_string(),
                description: std::mem::take(&mut comments),
            });
        }
    }
    (intro, sections)
}

fn render(default_toml: &str) -> String {
    let (_, sections) = parse(default_toml);
    let mut out = String::from(
        "# Configuration reference

<!-- Generated from config/default.toml by `make docs`; do not edit by hand. -->

Every relance service reads the same settings, in layers, each overriding the one before:

1. `config/default.toml`, compiled into every binary, so every key below always has a value;
2. `<config dir>/<RELANCE_ENV>.toml`: `RELANCE_ENV` defaults to `local`, the folder is
   `RELANCE_CONFIG_DIR` or the `--config-dir` option, default `config`. The repository ships
   `local.toml` (the infrastructure of `make up`), `test.toml` (automated tests) and
   `production.toml`;
3. environment variables `RELANCE__<SECTION>__<KEY>`, with double underscores, for example
   `RELANCE__KAFKA__BOOTSTRAP_SERVERS=broker-1:9092`. Secrets (`database.password`,
   `kafka.sasl_password`, `kafka.ssl_key_password`) come this way, from Kubernetes secrets.
   Maps such as `kafka.librdkafka` come from files.

Unknown keys are errors. Every value is checked when a service starts, and a bad one stops it
with a message naming the key and the value, for example
`kafka.session_timeout_ms = 500: must be between 6000 and 1800000`. `<service> check-config`
runs the same checks without starting anything.
",
    );
    for section in sections {
        out.push_str(&format!("\n## `[{}]`\n\n", section.name));
        out.push_str("| Key | Default | Environment variable | Description |\n|---|---|---|---|\n");
        for key in section.keys {
            let dotted = format!("{}.{}", section.name, key.name);
            let env = format!("RELANCE__{}", dotted.replace('.', "__").to_uppercase());
            let description = key.description.join(" ").replace('|', "\\|");
            out.push_str(&format!(
                "| `{dotted}` | `{}` | `{env}` | {description} |\n",
                key.default.replace('|', "\\|")
            ));
        }
    }
    out
}

#[test]
fn every_default_key_is_documented() {
    let (_, sections) = parse(DEFAULT_TOML);
    for section in sections {
        for key in section.keys {
            assert!(
                !key.description.is_empty(),
                "{}.{} in config/default.toml has no comment describing it",
                section.name,
                key.name
            );
        }
    }
}

#[test]
fn configuration_docs_match_the_defaults() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
    let expected = render(DEFAULT_TOML);
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &expected).expect("write docs/configuration.md");
        return;
    }
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        actual == expected,
        "docs/configuration.md is out of date with config/default.toml: run `make docs`"
    );
}
