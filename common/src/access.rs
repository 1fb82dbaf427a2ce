//! Who a request comes from, and what the front ends ask about it. Flight SQL's
//! `Auth` answers (users, password checks, sessions, grants); the HTTP gateway asks
//! through [`Access`], so both share one user list and one session table: a token
//! from the Flight SQL handshake is valid over HTTP too.

use std::collections::BTreeSet;

use async_trait::async_trait;

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
