//! Who may talk to the server: the bearer token on the run endpoints, the rule that a public
//! address needs one, and the Host check that keeps a token-less loopback server out of reach of
//! DNS-rebinding web pages.

use std::net::SocketAddr;

use axum::http::header::{AUTHORIZATION, HOST};
use axum::http::HeaderMap;
use sha2::{Digest, Sha256};
use thiserror::Error;

/// Tokens shorter than this are refused at startup: they can be guessed.
pub const MIN_TOKEN_CHARS: usize = 16;

/// Why the server refuses to start with the given address and token.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AuthConfigError {
    #[error(
        "refusing to listen on {addr} without a token: anyone who can reach it could run code. \
         Set --token (or SAFE_EXEC_TOKEN; try `openssl rand -hex 32`), bind to 127.0.0.1, or pass \
         --allow-unauthenticated if this is really meant"
    )]
    PublicWithoutToken { addr: SocketAddr },
    #[error(
        "the token is empty (--token or SAFE_EXEC_TOKEN): set one of at least {MIN_TOKEN_CHARS} \
         characters (try `openssl rand -hex 32`), or leave both unset to run without a token"
    )]
    EmptyToken,
    #[error("the token is too short ({chars} characters): use at least {MIN_TOKEN_CHARS}, e.g. `openssl rand -hex 32`")]
    TokenTooShort { chars: usize },
    #[error("the token may contain only visible ASCII characters (it travels in an HTTP header)")]
    TokenNotPrintable,
}

/// The checks every request goes through.
#[derive(Debug, Clone)]
pub struct Auth {
    /// SHA-256 of the token: compared in constant time, and the token itself is not kept.
    token_digest: Option<[u8; 32]>,
    /// Answer only to loopback host names (no token, loopback address).
    loopback_hosts_only: bool,
}

impl Auth {
    /// Validate the token and the address together.
    pub fn new(
        addr: SocketAddr,
        token: Option<&str>,
        allow_unauthenticated: bool,
    ) -> Result<Auth, AuthConfigError> {
        let loopback = addr.ip().to_canonical().is_loopback();
        let token_digest = match token {
            Some("") => return Err(AuthConfigError::EmptyToken),
            Some(token) => {
                if !token.bytes().all(|byte| byte.is_ascii_graphic()) {
                    return Err(AuthConfigError::TokenNotPrintable);
                }
                if token.len() < MIN_TOKEN_CHARS {
                    return Err(AuthConfigError::TokenTooShort { chars: token.len() });
                }
                Some(digest(token.as_bytes()))
            }
            None if !loopback && !allow_unauthenticated => {
                return Err(AuthConfigError::PublicWithoutToken { addr });
            }
            None => None,
        };
        Ok(Auth {
            loopback_hosts_only: token_digest.is_none() && loopback,
            token_digest,
        })
    }

    pub fn requires_token(&self) -> bool {
        self.token_digest.is_some()
    }

    /// Does the request carry `Authorization: Bearer <token>` (when a token is set)?
    pub fn token_ok(&self, headers: &HeaderMap) -> bool {
        let Some(expected) = &self.token_digest else {
            return true;
        };
        let Some(given) = headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(bearer)
        else {
            return false;
        };
        constant_time_eq(&digest(given.as_bytes()), expected)
    }

    /// `Err(host)` when the request's Host is not a loopback name and the server only answers
    /// to those. A page on evil.example whose name was re-pointed at 127.0.0.1 still sends
    /// `Host: evil.example`.
    pub fn host_ok<'a>(&self, headers: &'a HeaderMap) -> Result<(), &'a str> {
        if !self.loopback_hosts_only {
            return Ok(());
        }
        match headers.get(HOST).map(|value| value.to_str()) {
            // HTTP/1.0 clients may send no Host; browsers always do.
            None => Ok(()),
            Some(Ok(host)) if is_loopback_host(host) => Ok(()),
            Some(Ok(host)) => Err(host),
            Some(Err(_)) => Err("(not ASCII)"),
        }
    }
}

fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `localhost`, `*.localhost`, `127.x.y.z` or `[::1]`, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((inside, _)) => inside,
            None => return false,
        }
    } else {
        host.rsplit_once(':').map_or(host, |(name, _port)| name)
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    name.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const TOKEN: &str = "0123456789abcdef0123";

    fn headers(name: axum::http::HeaderName, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn public_addresses_need_a_token_or_an_explicit_flag() {
        let public: SocketAddr = "0.0.0.0:5000".parse().unwrap();
        assert!(matches!(
            Auth::new(public, None, false),
            Err(AuthConfigError::PublicWithoutToken { .. })
        ));
        assert!(Auth::new(public, None, true).is_ok());
        assert!(Auth::new(public, Some(TOKEN), false).is_ok());
        assert!(Auth::new("[::1]:0".parse().unwrap(), None, false).is_ok());
        assert!(Auth::new("127.0.0.2:0".parse().unwrap(), None, false).is_ok());
        assert_eq!(
            Auth::new(public, Some("short"), false).unwrap_err(),
            AuthConfigError::TokenTooShort { chars: 5 }
        );
        // Empty is a mistake (an unset secret), not "no token", on any address.
        for addr in [public, "127.0.0.1:0".parse().unwrap()] {
            assert_eq!(
                Auth::new(addr, Some(""), true).unwrap_err(),
                AuthConfigError::EmptyToken
            );
        }
        assert_eq!(
            Auth::new(public, Some("has a space in it, long"), false).unwrap_err(),
            AuthConfigError::TokenNotPrintable
        );
    }

    #[test]
    fn bearer_token_is_checked() {
        let auth = Auth::new("127.0.0.1:0".parse().unwrap(), Some(TOKEN), false).unwrap();
        assert!(auth.token_ok(&headers(AUTHORIZATION, &format!("Bearer {TOKEN}"))));
        assert!(auth.token_ok(&headers(AUTHORIZATION, &format!("bearer  {TOKEN} "))));
        assert!(!auth.token_ok(&headers(AUTHORIZATION, "Bearer wrong-token-wrong-token")));
        assert!(!auth.token_ok(&headers(AUTHORIZATION, TOKEN)));
        assert!(!auth.token_ok(&HeaderMap::new()));
        let open = Auth::new("127.0.0.1:0".parse().unwrap(), None, false).unwrap();
        assert!(open.token_ok(&HeaderMap::new()));
    }

    #[test]
    fn loopback_server_without_token_answers_only_loopback_names() {
        let auth = Auth::new("127.0.0.1:5000".parse().unwrap(), None, false).unwrap();
        for host in [
            "localhost:5000",
            "127.0.0.1:5000",
            "[::1]:5000",
            "app.localhost",
            "LOCALHOST",
            "127.0.0.1",
        ] {
            assert!(auth.host_ok(&headers(HOST, host)).is_ok(), "{host}");
        }
        for host in [
            "evil.example:5000",
            "evil.example",
            "10.0.0.1:5000",
            "[2001:db8::1]:80",
        ] {
            assert!(auth.host_ok(&headers(HOST, host)).is_err(), "{host}");
        }
        assert!(auth.host_ok(&HeaderMap::new()).is_ok());
        // With a token the token is the protection; any name is fine.
        let with_token = Auth::new("127.0.0.1:5000".parse().unwrap(), Some(TOKEN), false).unwrap();
        assert!(with_token.host_ok(&headers(HOST, "evil.example")).is_ok());
    }
}
