//! Versions order the updates of one object whatever their arrival order.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The version of a fact: the source's revision if it sends one, then the event time, then the
/// event id to break ties. Ordered lexicographically, so the order is total and every replica
/// picks the same winner.
///
/// A source that sends revisions must send them on every event of the object: an event without
/// one counts as revision 0, older than any revised event.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version {
    pub revision: i64,
    pub time: DateTime<Utc>,
    pub event_id: String,
}

impl Version {
    /// The version of an event.
    pub fn new(revision: Option<i64>, time: DateTime<Utc>, event_id: impl Into<String>) -> Self {
        Self {
            revision: revision.unwrap_or(0),
            time,
            event_id: event_id.into(),
        }
    }
}

/// A value with the version that set it; a newer version replaces it, an older one does not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versioned<T> {
    pub value: T,
    pub version: Version,
}

impl<T> Versioned<T> {
    /// Keeps whichever of `current` and (`value`, `version`) is newer.
    pub fn merge(current: &mut Option<Versioned<T>>, value: T, version: &Version) {
        let newer = current
            .as_ref()
            .is_none_or(|existing| *version > existing.version);
        if newer {
            *current = Some(Versioned {
                value,
                version: version.clone(),
            });
        }
    }
}
