//! The one way provsync builds an HTTP client for a system it sends credentials to
//! (GMC, OneKey, Salesforce, callbacks): redirects are followed only within the
//! origin first asked, so a 302 or 307 can never carry a password, a token or a
//! signed payload to another host. A redirect elsewhere is an error naming where it
//! pointed.

use reqwest::redirect::{Attempt, Policy};

/// Redirects followed at most, within one origin.
const MAX_REDIRECTS: usize = 5;

/// A client builder with provsync's user agent and the same-origin redirect rule;
/// callers add their timeouts.
pub fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(concat!("provsync/", env!("CARGO_PKG_VERSION")))
        .redirect(Policy::custom(same_origin_only))
}

/// Why a redirect was not followed.
#[derive(Debug, thiserror::Error)]
pub enum RedirectRefused {
    /// It pointed at another origin (scheme, host or port).
    #[error(
        "redirected to {0}, another origin: not followed, since the request carries credentials"
    )]
    OtherOrigin(String),
    /// Too many redirects within the origin.
    #[error("more than {MAX_REDIRECTS} redirects")]
    TooMany,
}

fn same_origin_only(attempt: Attempt<'_>) -> reqwest::redirect::Action {
    let first = attempt.previous().first().map(reqwest::Url::origin);
    if first != Some(attempt.url().origin()) {
        let to = attempt.url().to_string();
        return attempt.error(RedirectRefused::OtherOrigin(to));
    }
    if attempt.previous().len() > MAX_REDIRECTS {
        return attempt.error(RedirectRefused::TooMany);
    }
    attempt.follow()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    use axum::routing::any;
    use axum::Router;

    use super::*;

    async fn serve(app: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn a_redirect_to_another_origin_is_refused_naming_it_and_nothing_reaches_it() {
        let stolen = Arc::new(AtomicUsize::new(0));
        let hits = stolen.clone();
        let elsewhere = serve(Router::new().route(
            "/{*path}",
            any(move || {
                hits.fetch_add(1, Ordering::SeqCst);
                async { "thanks" }
            }),
        ))
        .await;
        for status in [StatusCode::FOUND, StatusCode::TEMPORARY_REDIRECT] {
            let to = format!("{elsewhere}/steal");
            let origin = serve(Router::new().route(
                "/soap",
                any(move || async move { (status, [(header::LOCATION, to)]).into_response() }),
            ))
            .await;
            let err = client_builder()
                .build()
                .unwrap()
                .post(format!("{origin}/soap"))
                .body("<Password>s3cret</Password>")
                .send()
                .await
                .expect_err("a redirect elsewhere is an error");
            let text = crate::errors::http(&err);
            assert!(text.contains(&format!("{elsewhere}/steal")), "{text}");
            assert!(text.contains("another origin"), "{text}");
        }
        assert_eq!(
            stolen.load(Ordering::SeqCst),
            0,
            "a request reached the other host"
        );
    }

    #[tokio::test]
    async fn a_redirect_within_the_origin_is_followed() {
        let app = Router::new()
            .route(
                "/old",
                any(|| async {
                    (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, "/new")]).into_response()
                }),
            )
            .route("/new", any(|| async { "here" }));
        let origin = serve(app).await;
        let resp = client_builder()
            .build()
            .unwrap()
            .post(format!("{origin}/old"))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.text().await.unwrap(), "here");
    }
}
