//! Who a request comes from, and what the front ends ask about it. Flight SQL's
//! `Auth` answers (users, password checks, sessions, grants); the HTTP gateway asks
//! through [`Access`], so both share one user list and one session table: a token
//! from the Flight SQL handshake is valid over HTTP too.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{Constraints, Statistics};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;

use crate::Result;

pub const ADMIN: &str = "admin";
pub const WRITER: &str = "writer";

/// An authenticated user and the roles their privileges come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user: String,
    pub roles: BTreeSet<String>,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.roles.contains(ADMIN)
    }

    /// Writers and admins may create, append to and describe tables.
    pub fn can_write(&self) -> bool {
        self.is_admin() || self.roles.contains(WRITER)
    }

    /// The roles as `a, b`, for messages.
    pub fn roles_text(&self) -> String {
        self.roles.iter().cloned().collect::<Vec<_>>().join(", ")
    }

    /// The refusal of a read of `table`, which no grant of the caller's roles covers.
    pub fn read_refusal(&self, table: &str) -> Denied {
        Denied::NotGranted {
            user: self.user.clone(),
            roles: self.roles_text(),
            table: table.to_string(),
        }
    }

    /// Writes (`what`) need the writer or admin role.
    pub fn check_write(&self, what: impl Into<String>) -> std::result::Result<(), Denied> {
        if self.can_write() {
            return Ok(());
        }
        Err(Denied::WriteDenied {
            user: self.user.clone(),
            roles: self.roles_text(),
            what: what.into(),
        })
    }
}

/// A refusal both front ends give in the same words.
#[derive(Debug, thiserror::Error)]
pub enum Denied {
    #[error("permission denied: user `{user}` (roles: {roles}) has no SELECT grant on table `{table}`; an admin can add it to auth.grants or run GRANT SELECT ON {table} TO <role>")]
    NotGranted {
        user: String,
        roles: String,
        table: String,
    },

    #[error("permission denied: user `{user}` (roles: {roles}) may not {what}; that needs the writer or admin role")]
    WriteDenied {
        user: String,
        roles: String,
        what: String,
    },
}

/// Credentials and grants, as a front end needs them.
#[async_trait]
pub trait Access: Send + Sync + std::fmt::Debug {
    /// False: anonymous access (loopback only); nothing is asked or checked.
    fn enabled(&self) -> bool;

    /// The caller an `Authorization` header value names: `Basic base64(user:password)`
    /// or `Bearer <session token>`. Refusals are [`crate::Error::Auth`] of kind
    /// `Unauthenticated`, saying why.
    async fn authenticate(&self, authorization: &str) -> Result<Principal>;

    /// Whether `principal` may see and read `table`.
    fn readable(&self, principal: &Principal, table: &str) -> bool;
}

/// A table provider that reads catalog tables its own name does not show:
/// `vector_search('idx', …)` is planned as a scan of `vector_search()` but reads
/// the index's source table. Flight SQL checks the caller's grants on
/// [`ReadsTables::tables`] exactly as on a plain scan of them.
#[derive(Debug)]
pub struct ReadsTables {
    inner: Arc<dyn TableProvider>,
    tables: Vec<String>,
}

impl ReadsTables {
    pub fn new(inner: Arc<dyn TableProvider>, tables: Vec<String>) -> Self {
        Self { inner, tables }
    }

    /// The catalog tables a scan of this provider reads.
    pub fn tables(&self) -> &[String] {
        &self.tables
    }
}

/// Everything but the grants is the wrapped provider's.
#[async_trait]
impl TableProvider for ReadsTables {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn constraints(&self) -> Option<&Constraints> {
        self.inner.constraints()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    fn get_column_default(&self, column: &str) -> Option<&Expr> {
        self.inner.get_column_default(column)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        self.inner.scan(state, projection, filters, limit).await
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }

    fn statistics(&self) -> Option<Statistics> {
        self.inner.statistics()
    }
}
