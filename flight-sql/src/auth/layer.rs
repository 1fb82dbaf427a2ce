//! The gRPC wrapper that authenticates every Flight call before the service sees
//! it. `authorization: Bearer <token>` names a session from the handshake;
//! `authorization: Basic base64(user:password)` logs in on the spot (the handshake
//! itself, and clients that send credentials on every call).

use std::convert::Infallible;
use std::sync::Arc;

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use tonic::body::Body;
use tonic::codegen::http::{header, HeaderMap, Request, Response};
use tonic::codegen::{BoxFuture, Context, Poll, Service};
use tonic::server::NamedService;
use tonic::Status;
use tracing::Instrument;

use super::{Auth, Principal, CALLER};
use crate::error::{Error, Result};

/// Go clients (ADBC) send Basic credentials without `=` padding; others pad.
const BASIC: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Wraps a gRPC service so that each call runs with its caller authenticated.
#[derive(Debug, Clone)]
pub struct Authenticated<S> {
    inner: S,
    auth: Arc<Auth>,
}

impl<S> Authenticated<S> {
    pub fn new(inner: S, auth: Arc<Auth>) -> Self {
        Self { inner, auth }
    }
}

impl<S: NamedService> NamedService for Authenticated<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<Request<Body>> for Authenticated<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // The clone that was polled ready serves this call; a fresh clone waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = Arc::clone(&self.auth);
        let span = tracing::info_span!("flight_auth", method = %request.uri().path(), user = tracing::field::Empty);
        Box::pin(
            async move {
                match authenticate(&auth, request.headers()).await {
                    Ok(principal) => {
                        tracing::Span::current().record("user", principal.user.as_str());
                        CALLER.scope(principal, inner.call(request)).await
                    }
                    Err(e) => {
                        tracing::info!(error = %e, "call refused");
                        Ok(Status::from(e).into_http())
                    }
                }
            }
            .instrument(span),
        )
    }
}

async fn authenticate(auth: &Auth, headers: &HeaderMap) -> Result<Principal> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(Error::MissingCredentials);
    };
    let value = value.to_str().map_err(|_| Error::BadAuthorizationHeader {
        reason: "is not ASCII",
    })?;
    auth.authorization(value).await
}

impl Auth {
    /// The caller an `Authorization` header value names (Basic or Bearer).
    pub(super) async fn authorization(&self, value: &str) -> Result<Principal> {
        let (scheme, credentials) =
            value
                .trim()
                .split_once(' ')
                .ok_or(Error::BadAuthorizationHeader {
                    reason: "has no scheme",
                })?;
        let credentials = credentials.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            self.session(credentials)
        } else if scheme.eq_ignore_ascii_case("basic") {
            let (user, password) = decode_basic(credentials)?;
            self.login(&user, &password).await
        } else {
            Err(Error::BadAuthorizationHeader {
                reason: "has an unknown scheme",
            })
        }
    }
}

fn decode_basic(credentials: &str) -> Result<(String, String)> {
    let bad = |reason| Error::BadAuthorizationHeader { reason };
    let bytes = BASIC
        .decode(credentials)
        .map_err(|_| bad("holds Basic credentials that are not base64"))?;
    let text =
        String::from_utf8(bytes).map_err(|_| bad("holds Basic credentials that are not UTF-8"))?;
    let (user, password) = text
        .split_once(':')
        .ok_or(bad("holds Basic credentials without `user:password`"))?;
    Ok((user.to_string(), password.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn basic_with_and_without_padding() {
        let padded = base64::engine::general_purpose::STANDARD.encode("al:pw");
        let raw = base64::engine::general_purpose::STANDARD_NO_PAD.encode("al:pw");
        assert_ne!(padded, raw);
        for encoded in [padded, raw] {
            assert_eq!(
                decode_basic(&encoded).unwrap(),
                ("al".to_string(), "pw".to_string())
            );
        }
        assert!(decode_basic("%%%").is_err());
    }
}
