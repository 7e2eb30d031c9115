//! Which URLs the registry client may contact, and with what. Every URL airlock speaks to — the
//! registry itself, a bearer token realm, a redirect of a blob download, an upload session's
//! `Location` — passes [`SchemePolicy::check`] before a byte is sent to it, so the rule "https
//! only; plain http to a loopback host or with `--insecure`; never from https down to http" holds
//! in one place. [`same_origin`] decides where credentials may go, [`absolute`] resolves the
//! `Location`s a registry answers with, and [`shown`] is how a URL appears in a message (without
//! its query, which may hold a storage signature).

use std::net::IpAddr;

use ureq::http::Uri;

/// The plain-http rule for one client.
#[derive(Debug, Clone, Copy)]
pub(super) struct SchemePolicy {
    /// `--insecure`: plain http to hosts that are not loopback.
    pub insecure: bool,
}

impl SchemePolicy {
    /// Whether `to`, reached from `from` (the URL that named it, or the registry's origin), may be
    /// contacted; the reason when not.
    pub fn check(&self, from: &str, to: &str) -> Result<(), String> {
        match scheme(to).as_deref() {
            Some("https") => Ok(()),
            Some("http") if scheme(from).as_deref() == Some("https") => {
                Err(format!("refusing to go from {} down to plain-http {}", shown(from), shown(to)))
            }
            Some("http") if self.insecure || host(to).is_some_and(|h| is_loopback(&h)) => Ok(()),
            Some("http") => Err(format!(
                "refusing plain http to {} (named by {}): only loopback hosts, or any with --insecure",
                shown(to),
                shown(from)
            )),
            _ => Err(format!("unsupported URL {} (named by {})", shown(to), shown(from))),
        }
    }
}

fn scheme(url: &str) -> Option<String> {
    Some(url.parse::<Uri>().ok()?.scheme_str()?.to_ascii_lowercase())
}

fn host(url: &str) -> Option<String> {
    Some(url.parse::<Uri>().ok()?.host()?.to_owned())
}

/// `localhost`, `127.0.0.0/8` and `::1`, with or without a port or IPv6 brackets.
pub(super) fn is_loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A URL as messages show it: no query or fragment, at most 200 characters.
pub(super) fn shown(url: &str) -> String {
    let bare = url.split(['?', '#']).next().unwrap_or("");
    let mut out: String = bare.chars().take(200).flat_map(char::escape_debug).collect();
    if bare.chars().count() > 200 {
        out.push('…');
    }
    out
}

/// Resolves a `Location` (absolute, or an absolute path) against the URL it came from.
pub(super) fn absolute(base: &str, location: &str) -> Result<String, String> {
    if location.starts_with("https://") || location.starts_with("http://") {
        return Ok(location.to_owned());
    }
    if location.starts_with('/') && !location.starts_with("//") {
        let uri: Uri = base.parse().map_err(|_| format!("bad URL {}", shown(base)))?;
        let (scheme, authority) = (uri.scheme_str().unwrap_or("https"), uri.authority().map_or("", |a| a.as_str()));
        return Ok(format!("{scheme}://{authority}{location}"));
    }
    Err(format!("unsupported Location `{}`", shown(location)))
}

/// Same scheme, host and port (a missing port is the scheme's default).
pub(super) fn same_origin(a: &str, b: &str) -> bool {
    let parts = |u: &str| {
        let uri: Uri = u.parse().ok()?;
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let port = uri.port_u16().unwrap_or(if scheme == "https" { 443 } else { 80 });
        Some((scheme, uri.host()?.to_ascii_lowercase(), port))
    };
    matches!((parts(a), parts(b)), (Some(x), Some(y)) if x == y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_resolve_against_the_url_they_came_from() {
        let base = "https://reg.example:5000/v2/a/blobs/uploads/";
        assert_eq!(
            absolute(base, "/v2/a/blobs/uploads/u?_state=x").unwrap(),
            "https://reg.example:5000/v2/a/blobs/uploads/u?_state=x"
        );
        assert_eq!(absolute(base, "http://s3.example/b?sig=1").unwrap(), "http://s3.example/b?sig=1");
        assert!(absolute(base, "relative/path").is_err());
        assert!(absolute(base, "//evil.example/x").is_err());
    }

    #[test]
    fn credentials_stay_with_the_same_scheme_host_and_port() {
        assert!(same_origin("https://reg.example", "https://REG.example:443/v2/"));
        assert!(same_origin("http://127.0.0.1:5000", "http://127.0.0.1:5000/v2/x"));
        assert!(!same_origin("http://127.0.0.1:5000", "http://localhost:5000/v2/x"));
        assert!(!same_origin("https://reg.example", "http://reg.example/v2/"));
        assert!(!same_origin("https://reg.example:5000", "https://reg.example:50001/"));
        assert!(!same_origin("https://reg.example", "https://reg.example.evil/"));
    }

    #[test]
    fn loopback_hosts_are_recognised_with_and_without_ports() {
        for host in
            ["localhost", "localhost:5000", "127.0.0.1", "127.0.0.1:5000", "127.1.2.3:80", "[::1]:5000", "[::1]"]
        {
            assert!(is_loopback(host), "{host}");
        }
        for host in ["registry.example", "10.0.0.1:5000", "localhost.example", "[::2]:5000"] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn plain_http_only_to_loopback_or_when_insecure_and_never_after_https() {
        let strict = SchemePolicy { insecure: false };
        let lax = SchemePolicy { insecure: true };
        assert!(strict.check("https://r.example", "https://auth.example/token").is_ok());
        assert!(strict.check("http://127.0.0.1:5000", "http://localhost:9/token").is_ok());
        assert!(strict.check("http://127.0.0.1:5000", "http://[::1]:9/b").is_ok());
        assert!(strict.check("http://127.0.0.1:5000", "http://10.0.0.1/b").is_err());
        assert!(lax.check("http://10.0.0.2:5000", "http://10.0.0.1/b").is_ok());
        for policy in [strict, lax] {
            let err = policy.check("https://127.0.0.1:5000/v2/", "http://127.0.0.1:9/token?account=x").unwrap_err();
            assert!(err.contains("https://127.0.0.1:5000/v2/") && err.contains("http://127.0.0.1:9/token"), "{err}");
            assert!(!err.contains("account"), "{err}");
            assert!(policy.check("https://r.example", "ftp://r.example/x").is_err());
        }
    }

    #[test]
    fn shown_urls_drop_the_query_and_escape_control_characters() {
        assert_eq!(shown("https://s3.example/b?X-Amz-Signature=abc"), "https://s3.example/b");
        assert_eq!(shown("http://a/\u{1b}[31m"), "http://a/\\u{1b}[31m");
        assert!(shown(&format!("https://a/{}", "x".repeat(500))).chars().count() <= 201);
    }
}
