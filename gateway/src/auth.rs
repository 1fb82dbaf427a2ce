//! Who calls the `/v1` routes. With auth on, each request carries `Authorization:
//! Basic …` or `Bearer <token>` (a Flight SQL session token works too: one session
//! table); [`authenticate`] checks it before any handler runs and hands the handler
//! a [`Caller`], which answers the role and grant questions.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use lakehouse_common::Principal;
use tracing::Instrument;

use crate::error::{Error, Result};
use crate::ingest::drain;
use crate::GatewayState;

/// The authenticated caller of a request; `None` inside when auth is off.
#[derive(Debug, Clone)]
pub(crate) struct Caller(Option<Principal>);

impl Caller {
    /// Reads need a grant on the table (admins have every grant).
    pub(crate) fn may_read(&self, state: &GatewayState, table: &str) -> bool {
        self.0
            .as_ref()
            .is_none_or(|p| state.access.readable(p, table))
    }

    pub(crate) fn require_read(&self, state: &GatewayState, table: &str) -> Result<()> {
        match &self.0 {
            Some(p) if !state.access.readable(p, table) => Err(p.read_refusal(table).into()),
            _ => Ok(()),
        }
    }

    /// Ingest and metadata changes need the writer or admin role.
    pub(crate) fn require_write(&self, what: impl Into<String>) -> Result<()> {
        match &self.0 {
            Some(p) => Ok(p.check_write(what)?),
            None => Ok(()),
        }
    }
}

/// The Authorization header's value (owned: the request body is not `Sync`, so no
/// reference to the request may be held across the password check).
fn authorization(request: &Request) -> Result<String> {
    let value = request
        .headers()
        .get(AUTHORIZATION)
        .ok_or(Error::MissingCredentials)?;
    let value = value.to_str().map_err(|_| Error::BadAuthorizationHeader)?;
    Ok(value.to_string())
}

async fn principal(state: &GatewayState, authorization: Result<String>) -> Result<Principal> {
    Ok(state.access.authenticate(&authorization?).await?)
}

/// Middleware for the `/v1` routes: refuses a request without valid credentials
/// (401), else runs it with its [`Caller`] as an extension.
pub(crate) async fn authenticate(
    State(state): State<GatewayState>,
    mut request: Request,
    next: Next,
) -> Result<Response> {
    if !state.access.enabled() {
        request.extensions_mut().insert(Caller(None));
        return Ok(next.run(request).await);
    }
    let span = tracing::info_span!("http_auth", method = %request.method(), path = %request.uri().path(), user = tracing::field::Empty);
    let principal = match principal(&state, authorization(&request))
        .instrument(span.clone())
        .await
    {
        Ok(principal) => principal,
        Err(e) => {
            span.in_scope(|| tracing::info!(error = %e, "request refused"));
            // An uploading client then reads the 401 instead of a broken pipe.
            drain(request.into_body()).await;
            return Err(e);
        }
    };
    span.record("user", principal.user.as_str());
    request.extensions_mut().insert(Caller(Some(principal)));
    Ok(next.run(request).instrument(span).await)
}

/// The gateway's side of auth over the real router: which routes ask, the 401 and
/// 403 answers, and filtering by grant. The credentials and grants come from a
/// stand-in [`Access`] here; Flight SQL's `Auth` answers the same questions against
/// the config (tested there, and end to end in tests/python/test_auth.py).
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::{header, Method, Request, StatusCode};
    use axum::Router;
    use lakehouse_catalog_raft::Catalog;
    use lakehouse_common::config::CatalogConfig;
    use lakehouse_common::{Access, Bucket, ErrorKind, Principal, SystemClock};
    use lakehouse_ingest::TableWriter;
    use serde_json::Value;
    use tower::ServiceExt;

    use crate::{router, Embedders, GatewayState, Metrics};

    /// Basic credentials of the two users (`rita:pw`, `walt:pw`).
    const RITA: &str = "Basic cml0YTpwdw==";
    const WALT: &str = "Basic d2FsdDpwdw==";
    const RITA_WRONG: &str = "Basic cml0YTpub3Bl";
    /// A session of walt's, as the Flight SQL handshake would issue it.
    const WALT_TOKEN: &str = "Bearer walt-session";

    /// rita reads `granted`; walt writes. Mirrors `auth.users` / `auth.grants`.
    #[derive(Debug)]
    struct TwoUsers;

    #[async_trait::async_trait]
    impl Access for TwoUsers {
        fn enabled(&self) -> bool {
            true
        }

        async fn authenticate(&self, authorization: &str) -> lakehouse_common::Result<Principal> {
            let (user, role) = match authorization {
                RITA => ("rita", "reader"),
                WALT | WALT_TOKEN => ("walt", "writer"),
                _ => {
                    return Err(lakehouse_common::Error::Auth {
                        kind: ErrorKind::Unauthenticated,
                        message: "user name or password not accepted".to_string(),
                    })
                }
            };
            Ok(Principal {
                user: user.to_string(),
                roles: [role.to_string()].into(),
            })
        }

        fn readable(&self, principal: &Principal, table: &str) -> bool {
            principal.user == "rita" && table == "granted"
        }
    }

    async fn app(dir: &std::path::Path) -> Router {
        let bucket_dir = dir.join("bucket");
        std::fs::create_dir_all(&bucket_dir).unwrap();
        let bucket =
            Bucket::open("primary", bucket_dir.to_str().unwrap(), &Default::default()).unwrap();
        let catalog = Catalog::open(
            &CatalogConfig::default(),
            &dir.join("catalog"),
            bucket,
            Arc::new(SystemClock),
        )
        .await
        .unwrap();
        router(GatewayState {
            writer: TableWriter::new(catalog.clone(), 1_000, Duration::from_secs(10)),
            catalog,
            metrics: Metrics::new(|_| {}),
            spool_dir: dir.join("spool"),
            max_ingest_bytes: 1 << 20,
            embedders: Arc::new(Embedders::new(Default::default())),
            access: Arc::new(TwoUsers),
            indexes: None,
        })
    }

    async fn call(
        app: &Router,
        method: Method,
        uri: &str,
        authorization: Option<&str>,
        body: &str,
    ) -> (StatusCode, header::HeaderMap, Value) {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(value) = authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        let response = app
            .clone()
            .oneshot(request.body(Body::from(body.to_string())).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (parts.status, parts.headers, json)
    }

    fn ingest_uri(table: &str) -> String {
        format!(
            "/v1/tables/{table}/ingest?filename=t.csv&owner=o&sensitivity=internal&lineage=l\
             &freshness_sla=1d&description=d&tags=t"
        )
    }

    #[tokio::test]
    async fn each_route_asks_for_credentials_and_checks_roles_and_grants() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(dir.path()).await;

        // Probes and scrapers come without credentials.
        for uri in ["/health", "/metrics"] {
            let (status, ..) = call(&app, Method::GET, uri, None, "").await;
            assert_eq!(status, StatusCode::OK, "{uri}");
        }

        // Every /v1 route: 401 without or with wrong credentials, naming the scheme.
        let routes = [
            (Method::GET, "/v1/tables".to_string()),
            (Method::GET, "/v1/tables/granted".to_string()),
            (Method::POST, ingest_uri("granted")),
            (Method::PATCH, "/v1/tables/granted/metadata".to_string()),
            (Method::POST, "/v1/embeddings".to_string()),
        ];
        for (method, uri) in &routes {
            for authorization in [None, Some(RITA_WRONG), Some("Bearer made-up")] {
                let (status, headers, body) =
                    call(&app, method.clone(), uri, authorization, "x\n1\n").await;
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri}");
                assert_eq!(
                    headers[header::WWW_AUTHENTICATE],
                    r#"Basic realm="lakehouse""#
                );
                assert_eq!(body["error"], "unauthenticated", "{body}");
                assert!(
                    body["detail"].as_str().unwrap().contains("not accepted")
                        || authorization.is_none(),
                    "{body}"
                );
            }
        }

        // Ingest needs writer or admin: the reader is refused, the writer (Basic or Bearer) commits.
        let (status, _, body) = call(
            &app,
            Method::POST,
            &ingest_uri("granted"),
            Some(RITA),
            "x\n1\n",
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["error"], "permission_denied");
        assert!(
            body["detail"].as_str().unwrap().contains("writer"),
            "{body}"
        );
        for (table, authorization) in [("granted", WALT), ("secret", WALT_TOKEN)] {
            let (status, _, body) = call(
                &app,
                Method::POST,
                &ingest_uri(table),
                Some(authorization),
                "x\n1\n",
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{table}: {body}");
        }

        // Reads need a grant: the list shows only granted tables.
        let (status, _, body) = call(&app, Method::GET, "/v1/tables", Some(RITA), "").await;
        assert_eq!(status, StatusCode::OK);
        let names: Vec<&str> = body["tables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["granted"]);
        let (status, ..) = call(&app, Method::GET, "/v1/tables/granted", Some(RITA), "").await;
        assert_eq!(status, StatusCode::OK);
        for table in ["secret", "no_such_table"] {
            let (status, _, body) = call(
                &app,
                Method::GET,
                &format!("/v1/tables/{table}"),
                Some(RITA),
                "",
            )
            .await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{table}: {body}");
            assert!(body["detail"].as_str().unwrap().contains(table), "{body}");
        }

        // Metadata changes need writer or admin.
        let patch = r#"{"description": "changed"}"#;
        let uri = "/v1/tables/granted/metadata";
        let (status, ..) = call(&app, Method::PATCH, uri, Some(RITA), patch).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _, body) = call(&app, Method::PATCH, uri, Some(WALT), patch).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["metadata"]["description"], "changed");

        // Embeddings: any authenticated user gets past auth (to the body check here).
        let (status, _, body) = call(&app, Method::POST, "/v1/embeddings", Some(RITA), "{}").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }
}
