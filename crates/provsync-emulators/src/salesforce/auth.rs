//! OAuth 2.0 token endpoint (client credentials, and the JWT bearer flow with RS256
//! assertions checked against a configured certificate or public key) and the access
//! tokens it issues, which expire.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// Audiences a JWT assertion may name.
pub const AUDIENCES: [&str; 2] = [
    "https://login.salesforce.com",
    "https://test.salesforce.com",
];
/// How far ahead an assertion's `exp` may be. Salesforce's words, in the Salesforce
/// CLI's JWT login help and the JWT bearer flow write-ups that quote the Help page
/// ("OAuth 2.0 JWT Bearer Flow for Server-to-Server Integration",
/// https://help.salesforce.com/s/articleView?id=sf.remoteaccess_oauth_jwt_flow.htm&type=5):
/// "The validity must be the expiration time of the assertion within 3 minutes".
/// Some write-ups say 5 minutes: the stricter reading is kept (guess: the org's
/// tolerance for clock skew is not documented).
const MAX_ASSERTION_LIFETIME_SECS: u64 = 180;

/// Why the JWT key could not be read (each text holds its cause, shown once).
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// No PEM block found.
    #[error("no PEM block (CERTIFICATE, PUBLIC KEY or RSA PUBLIC KEY) found")]
    NoPem,
    /// Base64 of the block is broken.
    #[error("PEM body is not base64: {0}")]
    Base64(base64::DecodeError),
    /// The DER does not hold an RSA public key where expected.
    #[error("the {0} does not hold an RSA public key")]
    NotRsa(&'static str),
}

impl From<base64::DecodeError> for KeyError {
    fn from(e: base64::DecodeError) -> Self {
        Self::Base64(e)
    }
}

/// The RSA key checking JWT assertions.
#[derive(Clone)]
pub struct JwtKey(DecodingKey);

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtKey(RSA)")
    }
}

impl JwtKey {
    /// Reads a PEM X.509 certificate, SPKI public key or PKCS#1 RSA public key.
    pub fn from_pem(pem: &str) -> Result<JwtKey, KeyError> {
        let (label, der) = pem_block(pem)?;
        let rsa = match label.as_str() {
            "CERTIFICATE" => spki_of_certificate(&der)
                .and_then(rsa_of_spki)
                .ok_or(KeyError::NotRsa("certificate"))?,
            "PUBLIC KEY" => rsa_of_spki(&der).ok_or(KeyError::NotRsa("public key"))?,
            "RSA PUBLIC KEY" => der.as_slice(),
            _ => return Err(KeyError::NoPem),
        };
        Ok(JwtKey(DecodingKey::from_rsa_der(rsa)))
    }
}

fn pem_block(pem: &str) -> Result<(String, Vec<u8>), KeyError> {
    let begin = pem.find("-----BEGIN ").ok_or(KeyError::NoPem)?;
    let rest = &pem[begin + 11..];
    let label_end = rest.find("-----").ok_or(KeyError::NoPem)?;
    let label = rest[..label_end].to_owned();
    let body_start = label_end + 5;
    let end_marker = format!("-----END {label}-----");
    let end = rest.find(&end_marker).ok_or(KeyError::NoPem)?;
    let b64: String = rest[body_start..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = base64::engine::general_purpose::STANDARD.decode(b64)?;
    Ok((label, der))
}

/// One DER element: (tag, content, rest).
fn tlv(buf: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = buf.split_first()?;
    let (&len0, rest) = rest.split_first()?;
    let (len, rest) = if len0 < 0x80 {
        (usize::from(len0), rest)
    } else {
        let n = usize::from(len0 & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The SubjectPublicKeyInfo of an X.509 certificate (the 6th field of tbsCertificate
/// after the optional version).
fn spki_of_certificate(der: &[u8]) -> Option<&[u8]> {
    let (0x30, cert, _) = tlv(der)? else {
        return None;
    };
    let (0x30, tbs, _) = tlv(cert)? else {
        return None;
    };
    let mut rest = tbs;
    let (tag, _, after) = tlv(rest)?;
    if tag == 0xA0 {
        rest = after;
    }
    for _ in 0..5 {
        rest = tlv(rest)?.2;
    }
    let (tag, _, after) = tlv(rest)?;
    (tag == 0x30).then(|| &rest[..rest.len() - after.len()])
}

/// The PKCS#1 RSAPublicKey inside a SubjectPublicKeyInfo.
fn rsa_of_spki(der: &[u8]) -> Option<&[u8]> {
    let (0x30, spki, _) = tlv(der)? else {
        return None;
    };
    let (0x30, _alg, rest) = tlv(spki)? else {
        return None;
    };
    let (0x03, bits, _) = tlv(rest)? else {
        return None;
    };
    bits.split_first()
        .filter(|(&unused, _)| unused == 0)
        .map(|(_, key)| key)
}

#[derive(Debug, Deserialize)]
struct Claims {
    exp: u64,
}

/// An OAuth error answer: (`error`, `error_description`).
pub type OAuthError = (&'static str, String);

/// Checks a JWT bearer assertion: RS256 signature, `iss` = client id, `sub` = user,
/// `aud` a login URL, `exp` in the future but not far.
pub fn check_assertion(
    key: &JwtKey,
    assertion: &str,
    client_id: &str,
    username: &str,
) -> Result<(), OAuthError> {
    let header = jsonwebtoken::decode_header(assertion)
        .map_err(|_| ("invalid_grant", "invalid assertion".to_owned()))?;
    if header.alg != Algorithm::RS256 {
        return Err(("invalid_grant", "invalid assertion".to_owned()));
    }
    let mut v = Validation::new(Algorithm::RS256);
    v.set_audience(&AUDIENCES);
    v.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    v.leeway = 0;
    let data = jsonwebtoken::decode::<serde_json::Value>(assertion, &key.0, &v).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind;
        match e.kind() {
            ErrorKind::InvalidAudience => ("invalid_grant", "audience is invalid".to_owned()),
            ErrorKind::ExpiredSignature => {
                ("invalid_grant", "expired authorization code".to_owned())
            }
            ErrorKind::InvalidSignature => ("invalid_grant", "invalid assertion".to_owned()),
            _ => ("invalid_grant", "invalid assertion".to_owned()),
        }
    })?;
    let claims = &data.claims;
    if claims.get("iss").and_then(|v| v.as_str()) != Some(client_id) {
        return Err(("invalid_client_id", "client identifier invalid".to_owned()));
    }
    if claims.get("sub").and_then(|v| v.as_str()) != Some(username) {
        return Err((
            "invalid_grant",
            "user hasn't approved this consumer".to_owned(),
        ));
    }
    let exp: Claims = serde_json::from_value(claims.clone())
        .map_err(|_| ("invalid_grant", "invalid assertion".to_owned()))?;
    let now = jsonwebtoken::get_current_timestamp();
    if exp.exp > now + MAX_ASSERTION_LIFETIME_SECS {
        return Err((
            "invalid_grant",
            "assertion expiration is too far in the future".to_owned(),
        ));
    }
    Ok(())
}

/// Access tokens issued and their expiry.
#[derive(Debug)]
pub struct Tokens {
    live: Mutex<HashMap<String, Instant>>,
    ttl: Mutex<Duration>,
    n: AtomicU64,
    salt: u64,
}

impl Tokens {
    /// No tokens yet; new ones live `ttl`.
    pub fn new(ttl: Duration, salt: u64) -> Tokens {
        Tokens {
            live: Mutex::new(HashMap::new()),
            ttl: Mutex::new(ttl),
            n: AtomicU64::new(0),
            salt,
        }
    }

    /// Changes the lifetime of tokens issued from now on.
    pub fn set_ttl(&self, ttl: Duration) {
        *self.ttl.lock().expect("ttl lock") = ttl;
    }

    /// A new token, in Salesforce's `00D...!...` session id shape.
    pub fn issue(&self) -> String {
        let n = self.n.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default();
        let token = format!(
            "00DEm0000000001!AQ{:016x}{:016x}{n:08x}",
            nanos ^ self.salt,
            self.salt.rotate_left(17) ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        );
        let ttl = *self.ttl.lock().expect("ttl lock");
        self.live
            .lock()
            .expect("tokens lock")
            .insert(token.clone(), Instant::now() + ttl);
        token
    }

    /// Whether the token is known and not expired (expired ones are forgotten).
    pub fn valid(&self, token: &str) -> bool {
        let mut live = self.live.lock().expect("tokens lock");
        match live.get(token) {
            Some(&until) if Instant::now() < until => true,
            Some(_) => {
                live.remove(token);
                false
            }
            None => false,
        }
    }

    /// Expires every token.
    pub fn expire_all(&self) -> usize {
        let mut live = self.live.lock().expect("tokens lock");
        let n = live.len();
        live.clear();
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_expire_after_their_lifetime_or_on_demand() {
        let t = Tokens::new(Duration::from_millis(30), 1);
        let a = t.issue();
        assert!(t.valid(&a));
        assert!(!t.valid("nonsense"));
        std::thread::sleep(Duration::from_millis(40));
        assert!(!t.valid(&a));
        t.set_ttl(Duration::from_secs(60));
        let b = t.issue();
        assert_ne!(a, b);
        assert_eq!(t.expire_all(), 1);
        assert!(!t.valid(&b));
    }

    #[test]
    fn der_walk_rejects_truncated_input() {
        assert!(tlv(&[0x30, 0x05, 0x01]).is_none());
        assert!(spki_of_certificate(&[0x30, 0x00]).is_none());
        assert!(JwtKey::from_pem("not a pem").is_err());
    }
}
