//! The policies of every tenant: `default.yaml` and `<tenant>.yaml` (shared with the tracker,
//! which reads promise limits from them).

pub use relance_policy::PolicySet;
