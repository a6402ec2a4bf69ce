//! Who may talk to the server: the bearer token on the run endpoints, the rule that a public
//! address needs one (and TLS to carry it), and the Host check that keeps a server without a token
//! out of reach of DNS-rebinding web pages.
//!
//! # Where a token may travel
//!
//! A bearer token sent in clear text can be read by anyone on the network path, and then used.
//! So a server on a non-loopback TCP address that has a token must speak TLS itself
//! (`--tls-cert`/`--tls-key`), unless `--behind-tls-proxy` says a proxy in front terminates TLS
//! (and the hop from it to us is trusted). Loopback traffic never leaves the machine, and a unix
//! socket is not on a network at all: no TLS is needed there. On a unix socket no token is
//! required either (the socket is 0600: only the serving user and root can connect), but one that
//! is set is still checked.
//!
//! # The Host rule
//!
//! A page on `evil.example` whose name the attacker re-points at this server (127.0.0.1, or a
//! LAN address) is same-origin with it as far as the browser knows, so it can post JSON and read
//! the answer. What it cannot change is the `Host` header: the browser sends the name from the
//! page's address, `evil.example`. So a server without a token answers only when the Host is
//!
//! - an IP address (`127.0.0.1:5000`, `[::1]`, `192.0.2.7`): a page whose origin is an IP
//!   address cannot be re-pointed anywhere, it *is* that address;
//! - `localhost` or a name under `.localhost`: browsers resolve those to loopback themselves,
//!   never through DNS;
//! - a name the operator listed with `--allow-host` (the name the server is reached by).
//!
//! Anything else gets 403. This holds on every address, `--allow-unauthenticated` on a public
//! one included: that flag accepts that anyone who can *reach* the server may run code, not that
//! any web page visited by someone on the same machine or network may. With a token there is no
//! Host check: a rebinding page does not know the token. Requests with no Host at all (HTTP/1.0
//! clients; browsers always send one) are answered.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

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
        "refusing to take the token in clear text on {addr}: anyone on the network path could read \
         it and run code. Give --tls-cert and --tls-key so the server speaks TLS itself, bind to \
         127.0.0.1 (or use --unix), or pass --behind-tls-proxy if a proxy in front terminates TLS"
    )]
    TokenInClearText { addr: SocketAddr },
    #[error(
        "the token is empty (--token or SAFE_EXEC_TOKEN): set one of at least {MIN_TOKEN_CHARS} \
         characters (try `openssl rand -hex 32`), or leave both unset to run without a token"
    )]
    EmptyToken,
    #[error("the token is too short ({chars} characters): use at least {MIN_TOKEN_CHARS}, e.g. `openssl rand -hex 32`")]
    TokenTooShort { chars: usize },
    #[error("the token may contain only visible ASCII characters (it travels in an HTTP header)")]
    TokenNotPrintable,
    #[error(
        "--allow-host {name:?} is not a host name: give a name such as `code.example.org` \
         (letters, digits, `-` and `.`; no port, scheme or path; IP addresses are always allowed)"
    )]
    BadAllowedHost { name: String },
}

/// Where the server listens, as far as the token rules care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposure {
    /// A TCP address; `tls` when the server speaks TLS itself, `behind_tls_proxy` when a proxy
    /// in front does.
    Tcp {
        addr: SocketAddr,
        tls: bool,
        behind_tls_proxy: bool,
    },
    /// A unix socket (0600).
    Unix,
}

/// The checks every request goes through.
#[derive(Debug, Clone)]
pub struct Auth {
    /// SHA-256 of the token: compared in constant time, and the token itself is not kept.
    token_digest: Option<[u8; 32]>,
    /// With no token: the names (lowercase, no trailing dot) answered besides IP addresses and
    /// localhost. `None` with a token: no Host check.
    allowed_hosts: Option<Vec<String>>,
}

impl Auth {
    /// Validate the token, the address and the extra host names together.
    pub fn new(
        exposure: Exposure,
        token: Option<&str>,
        allow_unauthenticated: bool,
        allow_hosts: &[String],
    ) -> Result<Auth, AuthConfigError> {
        // Which public TCP address, if any: a unix socket and loopback are not on a network.
        let public = match exposure {
            Exposure::Tcp { addr, .. } if !addr.ip().to_canonical().is_loopback() => Some(addr),
            _ => None,
        };
        let token_digest = match token {
            Some("") => return Err(AuthConfigError::EmptyToken),
            Some(token) => {
                if !token.bytes().all(|byte| byte.is_ascii_graphic()) {
                    return Err(AuthConfigError::TokenNotPrintable);
                }
                if token.len() < MIN_TOKEN_CHARS {
                    return Err(AuthConfigError::TokenTooShort { chars: token.len() });
                }
                if let Exposure::Tcp {
                    addr,
                    tls: false,
                    behind_tls_proxy: false,
                } = exposure
                {
                    if public.is_some() {
                        return Err(AuthConfigError::TokenInClearText { addr });
                    }
                }
                Some(digest(token.as_bytes()))
            }
            None => match public {
                Some(addr) if !allow_unauthenticated => {
                    return Err(AuthConfigError::PublicWithoutToken { addr });
                }
                _ => None,
            },
        };
        let mut names = Vec::with_capacity(allow_hosts.len());
        for name in allow_hosts {
            names.push(
                host_name(name)
                    .ok_or_else(|| AuthConfigError::BadAllowedHost { name: name.clone() })?,
            );
        }
        Ok(Auth {
            allowed_hosts: token_digest.is_none().then_some(names),
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

    /// `Err(host)` when the server has no token and the request's Host is not one it answers
    /// to (see the module docs). A page on evil.example whose name was re-pointed at this server
    /// still sends `Host: evil.example`.
    pub fn host_ok<'a>(&self, headers: &'a HeaderMap) -> Result<(), &'a str> {
        let Some(allowed) = &self.allowed_hosts else {
            return Ok(());
        };
        match headers.get(HOST).map(|value| value.to_str()) {
            // HTTP/1.0 clients may send no Host; browsers always do.
            None => Ok(()),
            Some(Ok(host)) if host_allowed(host, allowed) => Ok(()),
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

/// Is `host` (a Host header: a name or address, with or without a port) an IP address,
/// `localhost`, a name under `.localhost`, or one of `allowed`?
fn host_allowed(host: &str, allowed: &[String]) -> bool {
    if let Some(rest) = host.strip_prefix('[') {
        // Only an IPv6 address is bracketed: `[v6]` or `[v6]:port`.
        return rest.split_once(']').is_some_and(|(inside, after)| {
            inside.parse::<Ipv6Addr>().is_ok()
                && (after.is_empty() || after.strip_prefix(':').is_some_and(is_port))
        });
    }
    let name = match host.split_once(':') {
        Some((name, port)) if is_port(port) => name,
        Some(_) => return false,
        None => host,
    };
    if name.parse::<Ipv4Addr>().is_ok() {
        return true;
    }
    host_name(name).is_some_and(|name| {
        name == "localhost" || name.ends_with(".localhost") || allowed.contains(&name)
    })
}

fn is_port(digits: &str) -> bool {
    (1..=5).contains(&digits.len()) && digits.bytes().all(|byte| byte.is_ascii_digit())
}

/// `name` as compared: lowercase, without a trailing dot; `None` unless it is a DNS name
/// (labels of letters, digits and `-`).
fn host_name(name: &str) -> Option<String> {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
        });
    valid.then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const TOKEN: &str = "0123456789abcdef0123";

    /// A plain-HTTP TCP address.
    fn plain(addr: &str) -> Exposure {
        Exposure::Tcp {
            addr: addr.parse().unwrap(),
            tls: false,
            behind_tls_proxy: false,
        }
    }

    #[test]
    fn a_token_never_crosses_a_network_in_clear_text() {
        let public: SocketAddr = "192.0.2.7:5000".parse().unwrap();
        assert_eq!(
            Auth::new(plain("192.0.2.7:5000"), Some(TOKEN), false, &[]).unwrap_err(),
            AuthConfigError::TokenInClearText { addr: public }
        );
        let message = AuthConfigError::TokenInClearText { addr: public }.to_string();
        assert!(message.contains("--tls-cert") && message.contains("--behind-tls-proxy"));
        for (tls, behind_tls_proxy) in [(true, false), (false, true)] {
            let exposure = Exposure::Tcp {
                addr: public,
                tls,
                behind_tls_proxy,
            };
            assert!(Auth::new(exposure, Some(TOKEN), false, &[])
                .unwrap()
                .requires_token());
        }
        // Loopback and the unix socket are not on a network.
        assert!(Auth::new(plain("127.0.0.1:5000"), Some(TOKEN), false, &[]).is_ok());
        assert!(Auth::new(Exposure::Unix, Some(TOKEN), false, &[]).is_ok());
        // Without a token nothing secret travels: the public-address rule is unchanged.
        assert!(Auth::new(plain("192.0.2.7:5000"), None, true, &[]).is_ok());
        // A unix socket needs no token (its mode is the access control).
        assert!(!Auth::new(Exposure::Unix, None, false, &[])
            .unwrap()
            .requires_token());
    }

    fn headers(name: axum::http::HeaderName, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn public_addresses_need_a_token_or_an_explicit_flag() {
        let public = plain("0.0.0.0:5000");
        assert!(matches!(
            Auth::new(public, None, false, &[]),
            Err(AuthConfigError::PublicWithoutToken { .. })
        ));
        assert!(Auth::new(public, None, true, &[]).is_ok());
        assert!(
            Auth::new(public, Some(TOKEN), false, &[]).is_err(),
            "not in clear text"
        );
        assert!(Auth::new(plain("[::1]:0"), None, false, &[]).is_ok());
        assert!(Auth::new(plain("127.0.0.2:0"), None, false, &[]).is_ok());
        assert_eq!(
            Auth::new(public, Some("short"), false, &[]).unwrap_err(),
            AuthConfigError::TokenTooShort { chars: 5 }
        );
        // Empty is a mistake (an unset secret), not "no token", on any address.
        for addr in [public, plain("127.0.0.1:0"), Exposure::Unix] {
            assert_eq!(
                Auth::new(addr, Some(""), true, &[]).unwrap_err(),
                AuthConfigError::EmptyToken
            );
        }
        assert_eq!(
            Auth::new(public, Some("has a space in it, long"), false, &[]).unwrap_err(),
            AuthConfigError::TokenNotPrintable
        );
    }

    #[test]
    fn bearer_token_is_checked() {
        let auth = Auth::new(plain("127.0.0.1:0"), Some(TOKEN), false, &[]).unwrap();
        assert!(auth.token_ok(&headers(AUTHORIZATION, &format!("Bearer {TOKEN}"))));
        assert!(auth.token_ok(&headers(AUTHORIZATION, &format!("bearer  {TOKEN} "))));
        assert!(!auth.token_ok(&headers(AUTHORIZATION, "Bearer wrong-token-wrong-token")));
        assert!(!auth.token_ok(&headers(AUTHORIZATION, TOKEN)));
        assert!(!auth.token_ok(&HeaderMap::new()));
        let open = Auth::new(plain("127.0.0.1:0"), None, false, &[]).unwrap();
        assert!(open.token_ok(&HeaderMap::new()));
    }

    fn host_allowed_by(auth: &Auth, host: &str) -> bool {
        auth.host_ok(&headers(HOST, host)).is_ok()
    }

    #[test]
    fn without_a_token_only_addresses_localhost_and_listed_names_are_answered() {
        let loopback = Auth::new(plain("127.0.0.1:5000"), None, false, &[]).unwrap();
        // --allow-unauthenticated on a public address keeps the same rule: rebinding a name to
        // 127.0.0.1 (or to this machine's LAN address) must not reach it either.
        let public = Auth::new(plain("0.0.0.0:5000"), None, true, &[]).unwrap();
        for auth in [&loopback, &public] {
            for host in [
                "localhost:5000",
                "127.0.0.1:5000",
                "[::1]:5000",
                "[::1]",
                "app.localhost",
                "LOCALHOST",
                "localhost.",
                "127.0.0.1",
                "192.0.2.7:5000",
                "[2001:db8::1]:80",
            ] {
                assert!(host_allowed_by(auth, host), "{host}");
            }
            for host in [
                "evil.example:5000",
                "evil.example",
                "localhost.evil.example",
                "127.0.0.1.nip.example",
                "[evil.example]:80",
                "localhost:80:80",
                "localhost:http",
                "",
                "bad name",
            ] {
                assert!(!host_allowed_by(auth, host), "{host}");
            }
            assert!(auth.host_ok(&HeaderMap::new()).is_ok());
        }
        let named = Auth::new(
            plain("0.0.0.0:5000"),
            None,
            true,
            &["Code.Example.org.".to_owned()],
        )
        .unwrap();
        assert!(host_allowed_by(&named, "code.example.org:5000"));
        assert!(host_allowed_by(&named, "CODE.EXAMPLE.ORG"));
        assert!(!host_allowed_by(&named, "sub.code.example.org"));
        assert!(!host_allowed_by(&named, "evil.example"));
        // With a token the token is the protection; any name is fine.
        let with_token = Auth::new(plain("127.0.0.1:5000"), Some(TOKEN), false, &[]).unwrap();
        assert!(host_allowed_by(&with_token, "evil.example"));
    }

    #[test]
    fn allowed_hosts_must_be_names() {
        for bad in [
            "http://x.example",
            "x.example:80",
            "",
            "a b",
            "x..example",
            "x/y",
        ] {
            assert_eq!(
                Auth::new(plain("127.0.0.1:0"), None, false, &[bad.to_owned()]).unwrap_err(),
                AuthConfigError::BadAllowedHost {
                    name: bad.to_owned()
                },
                "{bad}"
            );
        }
    }
}
