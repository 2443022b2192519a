//! The connection to the cluster's database.

use std::sync::Arc;

use anyhow::Context as _;
use futures::StreamExt as _;
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, Client, NoTls};

/// The channel on which a released fal slot is announced (PostgreSQL's LISTEN/NOTIFY), so an
/// item waiting for one wakes at once instead of at its next look.
pub(super) const SLOT_FREED: &str = "inkflow_fal_slot_freed";

/// An open connection, shared by every task of a process (tokio-postgres pipelines concurrent
/// statements on one connection).
#[derive(Clone)]
pub struct Database {
    /// The client; statements are plain SQL.
    pub client: Arc<Client>,
    /// Woken whenever any process of the cluster releases a fal slot.
    pub(super) slot_freed: Arc<Notify>,
}

impl Database {
    /// Connects to `url` (`postgres://user@host:port/db`) and brings the schema up to date.
    /// The URL may hold a password, so it is never part of a message.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let (client, mut connection) = tokio_postgres::connect(url, NoTls)
            .await
            .context("cannot connect to the cluster's PostgreSQL (--cluster)")?;
        let slot_freed = Arc::new(Notify::new());
        let woken = slot_freed.clone();
        // Driving the connection through its messages is what delivers the notifications.
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        tokio::spawn(async move {
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(_)) => woken.notify_waiters(),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::error!("cluster database connection: {e}");
                        break;
                    }
                }
            }
        });
        let mut db = Database { client: Arc::new(client), slot_freed };
        super::schema::upgrade(&mut db).await?;
        db.client.batch_execute(&format!("LISTEN {SLOT_FREED}")).await?;
        Ok(db)
    }
}
