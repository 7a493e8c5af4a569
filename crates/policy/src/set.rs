//! The policies of every tenant, loaded and checked at start-up.

use std::collections::BTreeMap;
use std::path::Path;

use crate::{parse_policy, Policy, PolicyError};

/// The default policy and the tenants' own.
#[derive(Debug, Clone)]
pub struct PolicySet {
    default: Policy,
    by_tenant: BTreeMap<String, Policy>,
}

impl PolicySet {
    /// Loads `default.yaml` and every other `<tenant>.yaml` of `dir`.
    ///
    /// # Errors
    /// Every problem of every file, each naming the file, the key and why.
    pub fn load(dir: &str) -> Result<Self, Vec<PolicyError>> {
        let fail = |reason: String| {
            vec![PolicyError {
                file: dir.to_string(),
                key: String::new(),
                reason,
            }]
        };
        let entries =
            std::fs::read_dir(dir).map_err(|error| fail(format!("cannot be read: {error}")))?;
        let mut files: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| {
                path.extension()
                    .is_some_and(|extension| extension == "yaml" || extension == "yml")
            })
            .collect();
        files.sort();
        let mut errors = Vec::new();
        let mut default = None;
        let mut by_tenant = BTreeMap::new();
        for path in files {
            let name = path.display().to_string();
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(error) => {
                    errors.push(PolicyError {
                        file: name,
                        key: String::new(),
                        reason: format!("cannot be read: {error}"),
                    });
                    continue;
                }
            };
            match parse_policy(&name, &text) {
                Ok(policy) => {
                    let stem = Path::new(&path)
                        .file_stem()
                        .map(|stem| stem.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    if stem == "default" {
                        default = Some(policy);
                    } else {
                        by_tenant.insert(stem, policy);
                    }
                }
                Err(mut found) => errors.append(&mut found),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let default = default.ok_or_else(|| fail("holds no default.yaml".into()))?;
        Ok(Self { default, by_tenant })
    }

    /// The policy of `tenant`: its own, or the default.
    pub fn for_tenant(&self, tenant: &str) -> &Policy {
        self.by_tenant.get(tenant).unwrap_or(&self.default)
    }

    /// Every loaded policy, the default first: (tenant or `default`, policy).
    pub fn all(&self) -> impl Iterator<Item = (&str, &Policy)> {
        std::iter::once(("default", &self.default)).chain(
            self.by_tenant
                .iter()
                .map(|(tenant, policy)| (tenant.as_str(), policy)),
        )
    }
}
