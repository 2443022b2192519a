//! Scale-out on PostgreSQL: many `inkflow worker` processes, on any machines, share batches that
//! `inkflow run --cluster` registered. PostgreSQL is the queue (items claimed with
//! `FOR UPDATE SKIP LOCKED` under leases on the database's clock), the journal (the same
//! [`ItemObserver`](crate::engine::runtime::ItemObserver) and
//! [`SubmissionLog`](crate::engine::run_context::SubmissionLog) a local run's SQLite journal
//! implements, so stages never know which one they run in) and the limiter (one fal
//! `concurrency` per account, across every worker and batch). Output goes to an S3 or R2
//! prefix. No secret is ever written to the database: workers take their keys from their own
//! environment.

pub mod db;
pub mod journal;
pub mod limiter;
pub mod queue;
pub mod registration;
pub mod schema;
pub mod status;
pub mod store;

pub use db::Database;
