//! The sender's decisions, pure and shared: the guard's verdict just before a message goes
//! ([`guard`]), what an attempt's outcome or a reconciliation leads to ([`transition`]),
//! backoff, rate limits and the circuit breaker ([`resilience`]), and who a message is
//! addressed to ([`recipient`]). The sender loads, calls and stores; these decide, and are
//! property-tested here (tests/properties.rs).

pub mod guard;
pub mod outcome;
pub mod recipient;
pub mod resilience;
pub mod text;
pub mod transition;

pub use outcome::{Lookup, Outcome};
