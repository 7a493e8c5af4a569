//! A/B assignment: deterministic, so a customer always gets the same variant of an experiment
//! and results can be compared per variant.

use crate::model::{Experiment, Variant};

/// FNV-1a, 64 bits: stable across platforms and releases, unlike the standard library's hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The variant of `experiment` that `customer_id` gets: a hash of the customer and the
/// experiment, over the variants' weights.
pub fn assign_variant<'a>(experiment: &'a Experiment, customer_id: &str) -> Option<&'a Variant> {
    let total: u64 = experiment
        .variants
        .iter()
        .map(|variant| u64::from(variant.weight))
        .sum();
    if total == 0 {
        return None;
    }
    let key = format!("{}\u{1f}{}", experiment.id, customer_id);
    let mut point = fnv1a(key.as_bytes()) % total;
    for variant in &experiment.variants {
        let weight = u64::from(variant.weight);
        if point < weight {
            return Some(variant);
        }
        point -= weight;
    }
    experiment.variants.last()
}
