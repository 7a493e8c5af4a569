//! Topic creation, for tests and first-time setups. Production topics are usually created by
//! the platform team; creating an existing topic is not an error.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use relance_config::KafkaSettings;

use crate::client::admin_config;
use crate::context::RelanceContext;

/// A topic to create.
#[derive(Debug, Clone)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i32,
}

/// Creates the topics that do not exist yet.
///
/// # Errors
/// [`KafkaError`] when the brokers cannot be reached or refuse a topic for another reason
/// than its existence.
pub async fn ensure_topics(
    settings: &KafkaSettings,
    service: &str,
    topics: &[TopicSpec],
) -> Result<(), KafkaError> {
    let admin: AdminClient<RelanceContext> =
        admin_config(settings, service).create_with_context(RelanceContext::default())?;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|topic| {
            NewTopic::new(
                &topic.name,
                topic.partitions,
                TopicReplication::Fixed(topic.replication_factor),
            )
        })
        .collect();
    let options = AdminOptions::new()
        .operation_timeout(Some(Duration::from_millis(settings.metadata_timeout_ms)))
        .request_timeout(Some(Duration::from_millis(settings.metadata_timeout_ms)));
    for result in admin.create_topics(new_topics.iter(), &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                tracing::error!(topic = %name, error = %code, "Creating a topic failed.");
                return Err(KafkaError::AdminOp(code));
            }
        }
    }
    Ok(())
}
