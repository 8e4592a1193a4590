//! The Postgres backend for tests that run against both stores.

/// The URL of a fresh, migrated, empty Postgres database for one test, or `None` when no
/// database is available (the Postgres variants of the admin conformance tests then skip).
pub async fn database_url() -> Option<String> {
    super::pg::migrated_database().await
}
