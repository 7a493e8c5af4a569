//! The local default: each email becomes `<send id>.eml` (the full MIME message) and
//! `<send id>.html` (to look at in a browser), each SMS `<send id>.sms.txt`. Files are written
//! to a temporary name and renamed, so a crash never leaves half a message, and a send id whose
//! file exists is not written again: the provider is idempotent and can be searched.

use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::mime::render_eml;
use crate::{
    BoxFuture, EmailProvider, Lookup, Outcome, OutgoingEmail, OutgoingSms, ProviderError,
    SmsProvider,
};

/// Writes messages to a folder.
#[derive(Debug, Clone)]
pub struct FileProvider {
    folder: PathBuf,
}

async fn write_atomically(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let temporary = path.with_extension("partial");
    tokio::fs::write(&temporary, content).await?;
    tokio::fs::rename(&temporary, path).await
}

fn io_outcome(path: &Path, error: &std::io::Error) -> Outcome {
    Outcome::Transient {
        code: "io".into(),
        message: format!("{}: {error}", path.display()),
        retry_after: None,
    }
}

impl FileProvider {
    /// # Errors
    /// [`ProviderError::Config`] when the folder cannot be created.
    pub fn new(folder: impl Into<PathBuf>) -> Result<Self, ProviderError> {
        let folder = folder.into();
        std::fs::create_dir_all(&folder)
            .map_err(|error| ProviderError::Config(format!("{}: {error}", folder.display())))?;
        Ok(Self { folder })
    }

    pub fn folder(&self) -> &Path {
        &self.folder
    }

    fn eml_path(&self, send_id: Uuid) -> PathBuf {
        self.folder.join(format!("{send_id}.eml"))
    }

    fn sms_path(&self, send_id: Uuid) -> PathBuf {
        self.folder.join(format!("{send_id}.sms.txt"))
    }
}

impl EmailProvider for FileProvider {
    fn name(&self) -> &'static str {
        "file"
    }

    fn send<'a>(&'a self, email: &'a OutgoingEmail) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let eml = self.eml_path(email.send_id);
            let message_id = Some(format!("file:{}", email.send_id));
            if tokio::fs::try_exists(&eml).await.unwrap_or(false) {
                return Outcome::Accepted { message_id };
            }
            let html = self.folder.join(format!("{}.html", email.send_id));
            if let Err(error) = write_atomically(&html, email.html.as_bytes()).await {
                return io_outcome(&html, &error);
            }
            // The .eml last: its presence means the message is complete.
            if let Err(error) = write_atomically(&eml, render_eml(email).as_bytes()).await {
                return io_outcome(&eml, &error);
            }
            Outcome::Accepted { message_id }
        })
    }

    fn lookup(&self, send_id: Uuid) -> BoxFuture<'_, Lookup> {
        Box::pin(async move {
            match tokio::fs::try_exists(self.eml_path(send_id)).await {
                Ok(true) => Lookup::Found {
                    message_id: Some(format!("file:{send_id}")),
                },
                Ok(false) => Lookup::NotFound,
                Err(error) => Lookup::Unavailable(error.to_string()),
            }
        })
    }
}

impl SmsProvider for FileProvider {
    fn name(&self) -> &'static str {
        "file"
    }

    fn send<'a>(&'a self, sms: &'a OutgoingSms) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let path = self.sms_path(sms.send_id);
            let message_id = Some(format!("file:{}", sms.send_id));
            if tokio::fs::try_exists(&path).await.unwrap_or(false) {
                return Outcome::Accepted { message_id };
            }
            let content = format!(
                "To: {}\nDate: {}\n\n{}\n",
                sms.to,
                sms.date.to_rfc3339(),
                sms.body
            );
            match write_atomically(&path, content.as_bytes()).await {
                Ok(()) => Outcome::Accepted { message_id },
                Err(error) => io_outcome(&path, &error),
            }
        })
    }

    fn lookup(&self, send_id: Uuid) -> BoxFuture<'_, Lookup> {
        Box::pin(async move {
            match tokio::fs::try_exists(self.sms_path(send_id)).await {
                Ok(true) => Lookup::Found {
                    message_id: Some(format!("file:{send_id}")),
                },
                Ok(false) => Lookup::NotFound,
                Err(error) => Lookup::Unavailable(error.to_string()),
            }
        })
    }
}
