//! Storage errors and whether retrying can help.

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("applying database migrations")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error("database unreachable")]
    Unreachable(#[source] sqlx::Error),
    #[error("database query failed: {context}")]
    Query {
        context: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("stored {what} {id} cannot be read back")]
    Corrupt {
        what: &'static str,
        id: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("stored {what} {id} cannot be read back: {detail}")]
    Unreadable {
        what: &'static str,
        id: String,
        detail: String,
    },
}

impl StorageError {
    pub(crate) fn query(context: &'static str) -> impl FnOnce(sqlx::Error) -> Self {
        move |source| Self::Query { context, source }
    }

    /// Whether the same operation may succeed later: the database is unreachable, restarting,
    /// overloaded, or aborted the transaction for a concurrency conflict. Anything else (a
    /// constraint the code broke, unreadable stored data) will fail again.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable(_) => true,
            Self::Query { source, .. } => is_transient_sqlx(source),
            Self::Migrate(sqlx::migrate::MigrateError::Execute(source)) => {
                is_transient_sqlx(source)
            }
            Self::Migrate(_) | Self::Corrupt { .. } | Self::Unreadable { .. } => false,
        }
    }
}

impl StorageError {
    /// Whether the database refused a value for its content — an invalid byte sequence, a
    /// value out of range, a constraint a value breaks (SQLSTATE classes 22 data exception,
    /// 23 integrity constraint, 54 program limit): the same data will always be refused, so
    /// the record carrying it must be set aside, not retried and not allowed to stop anything.
    pub fn is_refused_content(&self) -> bool {
        let Self::Query {
            source: sqlx::Error::Database(database),
            ..
        } = self
        else {
            return false;
        };
        database.code().is_some_and(|code| {
            ["22", "23", "54"]
                .iter()
                .any(|class| code.starts_with(class))
        })
    }
}

fn is_transient_sqlx(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(database) => database.code().is_some_and(|code| {
            // SQLSTATE classes: 08 connection, 40 transaction rollback (serialization failure,
            // deadlock), 53 insufficient resources, 57 operator intervention (shutdown), 58
            // system error.
            ["08", "40", "53", "57", "58"]
                .iter()
                .any(|class| code.starts_with(class))
        }),
        _ => false,
    }
}
