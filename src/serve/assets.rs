//! Everything the server sends that is not an API answer: the web page and its script and style,
//! the OpenAPI description (with this server's code limit in it), and the security headers every
//! response carries.
//!
//! All of it is compiled into the binary (`include_str!`): the page works offline and loads
//! nothing from anywhere else, which the Content-Security-Policy enforces.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::state::AppState;
use crate::limits::{human_bytes, Limits};

/// The OpenAPI 3 description of the API, kept in the repository next to this file.
pub const OPENAPI: &str = include_str!("openapi.json");

const INDEX_HTML: &str = include_str!("web/index.html");
const APP_JS: &str = include_str!("web/app.js");
const EDITOR_JS: &str = include_str!("web/editor.js");
const STYLE_CSS: &str = include_str!("web/style.css");
const FAVICON_SVG: &str = include_str!("web/favicon.svg");

/// Only our own origin, for everything; no inline script or style, no frames, no forms. Images
/// also from `blob:` URLs (made by the page itself): it shows a run's image files from the bytes
/// it was sent (never SVG inline; see app.js).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   img-src 'self' blob:; connect-src 'self'; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

/// The OpenAPI description as this server serves it: the code's `maxLength` is its
/// `--max-code-chars`, the code's `pattern` is generated from the rule the server applies, each
/// per-request limit's `maximum` is the server's own and stdin's size its `--max-stdin`, so the
/// schema allows exactly what the server accepts.
pub fn render_openapi(limits: &Limits, max_stdin: usize) -> String {
    // openapi.json is JSON (a unit test checks); were it not, it is served as it is.
    let Ok(mut spec) = serde_json::from_str::<serde_json::Value>(OPENAPI) else {
        return OPENAPI.to_owned();
    };
    if let Some(code) = spec.pointer_mut("/components/schemas/RunRequest/properties/code") {
        code["maxLength"] = limits.max_code_chars.into();
        code["pattern"] = code_pattern().into();
    }
    if let Some(stdin) = spec.pointer_mut("/components/schemas/RunRequest/properties/stdin") {
        stdin["maxLength"] = max_stdin.into();
    }
    if let Some(encoded) =
        spec.pointer_mut("/components/schemas/RunRequest/properties/stdin_base64")
    {
        encoded["maxLength"] = max_stdin.div_ceil(3).saturating_mul(4).into();
    }
    if let Some(asked) = spec.pointer_mut("/components/schemas/RequestLimits/properties") {
        let maxima: [(&str, serde_json::Value); 6] = [
            ("timeout_secs", limits.timeout.as_secs_f64().into()),
            (
                "wall_timeout_secs",
                limits.wall_timeout.as_secs_f64().into(),
            ),
            ("memory_bytes", limits.memory_bytes.into()),
            ("cpus", limits.cpus.into()),
            ("pids", limits.pids.into()),
            ("max_output_bytes", limits.max_output_bytes.into()),
        ];
        for (name, maximum) in maxima {
            asked[name]["maximum"] = maximum;
        }
    }
    serde_json::to_string_pretty(&spec).unwrap_or_else(|_| OPENAPI.to_owned())
}

/// A regular expression (one that means the same in ECMA-262 and in Python's `re`) matching
/// exactly the code [`crate::source::Program::from_text`] does not refuse as empty or for a NUL:
/// after one leading BOM, at least one character that is not whitespace (Rust's
/// `char::is_whitespace`, Unicode's White_Space), and no NUL anywhere.
pub fn code_pattern() -> String {
    let mut spaces = String::new();
    let mut characters = (0..=u32::from(char::MAX))
        .filter_map(char::from_u32)
        .peekable();
    while let Some(first) = characters.next() {
        if !first.is_whitespace() {
            continue;
        }
        let mut last = first;
        while let Some(&next) = characters.peek() {
            if !next.is_whitespace() || u32::from(next) != u32::from(last) + 1 {
                break;
            }
            last = next;
            characters.next();
        }
        spaces.push_str(&format!("\\u{:04x}", u32::from(first)));
        if last != first {
            spaces.push_str(&format!("-\\u{:04x}", u32::from(last)));
        }
    }
    let (bom, nul) = ("\\ufeff", "\\u0000");
    format!(
        "^(?:{bom}[{spaces}]*[^{spaces}{nul}]|[{spaces}]+[^{spaces}{nul}]|[^{spaces}{nul}{bom}])[^{nul}]*$"
    )
}

/// The page with this server's limits filled in (the page shows and checks them).
pub fn render_page(limits: &Limits) -> String {
    INDEX_HTML
        .replace("{{MAX_CODE_CHARS}}", &limits.max_code_chars.to_string())
        .replace(
            "{{TIMEOUT_SECS}}",
            &limits.timeout.as_secs_f64().to_string(),
        )
        .replace("{{MEMORY}}", &human_bytes(limits.memory_bytes))
        .replace("{{MAX_OUTPUT}}", &human_bytes(limits.max_output_bytes))
        .replace("{{VERSION}}", env!("CARGO_PKG_VERSION"))
}

pub async fn index(State(state): State<Arc<AppState>>) -> Response {
    file("text/html; charset=utf-8", state.page.clone())
}

pub async fn asset(Path(name): Path<String>) -> Response {
    match name.as_str() {
        "app.js" => file("text/javascript; charset=utf-8", APP_JS),
        "editor.js" => file("text/javascript; charset=utf-8", EDITOR_JS),
        "style.css" => file("text/css; charset=utf-8", STYLE_CSS),
        _ => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

pub async fn favicon() -> Response {
    file("image/svg+xml", FAVICON_SVG)
}

pub async fn openapi(State(state): State<Arc<AppState>>) -> Response {
    file("application/json", state.openapi.clone())
}

fn file(content_type: &'static str, body: impl Into<axum::body::Body>) -> Response {
    let mut response = Response::new(body.into());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Small files; always revalidate so an upgraded server never serves a stale script.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// Headers for every response, API answers included.
pub async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        HeaderName::from_static("x-frame-options"),
        HeaderValue::from_static("DENY"),
    );
    headers.insert(
        HeaderName::from_static("referrer-policy"),
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("same-origin"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::DEFAULT_MAX_CODE_CHARS;
    use crate::report::{Outcome, RunReport, Status};

    /// The page may show images from the `blob:` URLs it makes, and from nowhere else.
    #[test]
    fn images_only_from_our_origin_and_the_page_s_blobs() {
        let directives: Vec<&str> = CSP.split(';').map(str::trim).collect();
        assert!(directives.contains(&"img-src 'self' blob:"), "{CSP}");
        assert!(directives.contains(&"default-src 'none'"), "{CSP}");
        assert!(
            !CSP.contains("data:") && !CSP.contains('*') && !CSP.contains("http"),
            "{CSP}"
        );
    }

    #[test]
    fn page_is_self_contained() {
        let page = render_page(&Limits::default());
        assert!(!page.contains("{{"), "unfilled placeholder");
        assert!(page.contains("5000"));
        for text in [page.as_str(), APP_JS, EDITOR_JS, STYLE_CSS] {
            assert!(
                !text.contains("http://") && !text.contains("https://"),
                "external reference"
            );
            assert!(!text.contains("//cdn"), "CDN reference");
        }
        for asset in [
            "/assets/app.js",
            "/assets/editor.js",
            "/assets/style.css",
            "/favicon.svg",
        ] {
            assert!(page.contains(asset), "{asset} not linked");
        }
    }

    #[test]
    fn openapi_describes_every_status_and_report_field() {
        let spec: serde_json::Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
        assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
        for path in ["/run", "/api/v1/runs", "/healthz"] {
            assert!(spec["paths"].get(path).is_some(), "{path} missing");
        }
        let report = &spec["components"]["schemas"]["RunReport"];
        let statuses: Vec<&str> = report["properties"]["status"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|value| value.as_str().unwrap())
            .collect();
        for status in Status::ALL {
            assert!(
                statuses.contains(&status.as_str()),
                "{} missing",
                status.as_str()
            );
        }
        let example = serde_json::to_value(RunReport::new(&Outcome::not_run(
            Status::Rejected,
            "x",
            Limits::default(),
        )))
        .unwrap();
        for field in example.as_object().unwrap().keys() {
            assert!(
                report["properties"].get(field).is_some(),
                "RunReport.{field} undocumented"
            );
        }
        for field in example["limits"].as_object().unwrap().keys() {
            let limits = &spec["components"]["schemas"]["Limits"]["properties"];
            assert!(limits.get(field).is_some(), "Limits.{field} undocumented");
        }
    }

    /// The copy in openapi.json (what a reader of the file sees) is the pattern the server
    /// serves, and the served spec carries the server's own code limit.
    #[test]
    fn the_served_spec_says_exactly_what_the_server_accepts() {
        let spec: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        let code = &spec["components"]["schemas"]["RunRequest"]["properties"]["code"];
        assert_eq!(
            code["pattern"],
            code_pattern(),
            "regenerate the pattern in openapi.json"
        );
        assert_eq!(code["maxLength"], DEFAULT_MAX_CODE_CHARS);
        assert_eq!(code["minLength"], 1);
        let limits = Limits {
            max_code_chars: 77,
            ..Limits::default()
        };
        let served: serde_json::Value =
            serde_json::from_str(&render_openapi(&limits, 300)).unwrap();
        let request = &served["components"]["schemas"]["RunRequest"]["properties"];
        let code = &request["code"];
        assert_eq!(code["maxLength"], 77);
        assert_eq!(code["pattern"], code_pattern());
        assert_eq!(request["stdin"]["maxLength"], 300);
        assert_eq!(request["stdin_base64"]["maxLength"], 400);
        // Every per-request limit the server takes is in the schema, with the server's own
        // value as its maximum and the server's minimum.
        let asked = &served["components"]["schemas"]["RequestLimits"];
        assert_eq!(asked["additionalProperties"], false);
        let documented: Vec<&String> = asked["properties"].as_object().unwrap().keys().collect();
        assert_eq!(documented.len(), crate::serve::api::REQUEST_LIMITS.len());
        let applied = serde_json::to_value(limits.applied()).unwrap();
        for name in crate::serve::api::REQUEST_LIMITS {
            assert_eq!(
                asked["properties"][name]["maximum"], applied[name],
                "{name}"
            );
        }
        let minimum = |name: &str| asked["properties"][name]["minimum"].as_f64().unwrap();
        assert_eq!(minimum("timeout_secs"), crate::serve::api::MIN_REQUEST_SECS);
        assert_eq!(
            minimum("wall_timeout_secs"),
            crate::serve::api::MIN_REQUEST_SECS
        );
        assert_eq!(
            minimum("memory_bytes"),
            crate::limits::MIN_MEMORY_BYTES as f64
        );
        assert_eq!(minimum("cpus"), crate::serve::api::MIN_REQUEST_CPUS);
        assert_eq!(
            minimum("pids"),
            f64::from(crate::serve::api::MIN_REQUEST_PIDS)
        );
        assert_eq!(minimum("max_output_bytes"), 1.0);
    }
}
