//! The connection to the cluster's database.

use std::sync::Arc;

use anyhow::Context as _;
use tokio_postgres::{Client, NoTls};

/// An open connection, shared by every task of a process (tokio-postgres pipelines concurrent
/// statements on one connection).
#[derive(Clone)]
pub struct Database {
    /// The client; statements are plain SQL.
    pub client: Arc<Client>,
}

impl Database {
    /// Connects to `url` (`postgres://user@host:port/db`) and brings the schema up to date.
    /// The URL may hold a password, so it is never part of a message.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let (client, connection) = tokio_postgres::connect(url, NoTls)
            .await
            .context("cannot connect to the cluster's PostgreSQL (--cluster)")?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::error!("cluster database connection: {e}");
            }
        });
        let mut db = Database { client: Arc::new(client) };
        super::schema::upgrade(&mut db).await?;
        Ok(db)
    }
}
