//! What happens after a reminder is sent, as pure logic the tracker wires to HTTP, Kafka and
//! PostgreSQL:
//!
//! - [`classify`]: whether an open or a click was a person or software (privacy proxies that
//!   prefetch images, security scanners that follow every link). Rates count people only.
//! - [`webhooks`]: Postmark and SendGrid event payloads, and their authentication.
//! - [`attribution`]: which reminders a payment is credited to.

pub mod attribution;
pub mod classify;
pub mod webhooks;
