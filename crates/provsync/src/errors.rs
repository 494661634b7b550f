//! Error text for people: an error with its causes, each shown once, and an HTTP
//! client's error with the cause beneath it (connection refused, DNS, timeout).
//!
//! Our own error types carry their whole message in `Display` and return no
//! `source()`; third-party ones often do both (sqlx's `Io`, lapin's `IOError`), so
//! [`chain`] drops a cause whose text is already shown.

use std::error::Error;

/// `e` and its causes joined with `: `, each once: a cause whose text is already in
/// the message (a type that prints its source and also returns it) adds nothing.
pub fn chain(e: &(dyn Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let t = cause.to_string();
        if !t.is_empty() && !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        next = cause.source();
    }
    text
}

/// An HTTP client's error with its causes (`error sending request for url
/// (http://h:1/p): client error (Connect): tcp connect error: Connection refused
/// (os error 111)`); the URL's query is left out (it may be long, or carry ids).
pub fn http(e: &reqwest::Error) -> String {
    let mut text = chain(e);
    if let Some(url) = e.url() {
        if let Some(query) = url.query() {
            text = text.replace(&format!("?{query}"), "");
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A type that prints its source and also returns it.
    #[derive(Debug)]
    struct Both(std::io::Error);

    impl std::fmt::Display for Both {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "talking to the server: {}", self.0)
        }
    }

    impl Error for Both {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    fn refused() -> std::io::Error {
        std::io::Error::from(std::io::ErrorKind::ConnectionRefused)
    }

    #[test]
    fn an_error_chain_prints_each_cause_once() {
        let cause = refused().to_string();
        let e = anyhow::Error::new(Both(refused())).context("opening the state store");
        let text = chain(e.as_ref());
        assert_eq!(text.matches(&cause).count(), 1, "{text}");
        assert!(
            text.starts_with("opening the state store: talking to the server: "),
            "{text}"
        );
        // anyhow's own `{:#}` repeats it: the reason the binary prints with `chain`.
        assert_eq!(format!("{e:#}").matches(&cause).count(), 2);
        // Causes that add something are all kept.
        let e = anyhow::Error::new(refused())
            .context("connect")
            .context("open");
        assert_eq!(chain(e.as_ref()), format!("open: connect: {cause}"));
    }

    #[tokio::test]
    async fn an_http_error_names_the_os_cause_once_without_the_query() {
        // A port that was just free: nothing listens on it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/token?secret=x"))
            .send()
            .await
            .unwrap_err();
        let text = http(&e);
        assert!(text.contains(&format!("127.0.0.1:{port}/token")), "{text}");
        assert!(!text.contains("secret=x"), "{text}");
        assert_eq!(text.matches("Connection refused").count(), 1, "{text}");
    }
}
