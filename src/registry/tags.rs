//! The tag listing endpoint of the distribution spec, `GET /v2/<name>/tags/list`, one page at a
//! time (`n` tags after `last`); the registry says more follow with a `Link: <…>; rel="next"`
//! header. Each page is a small document read whole, at most [`MANIFEST_MAX_BYTES`].

use serde::Deserialize;
use ureq::http::Method;

use super::manifest::{is_tag, read_document};
use super::transport::{Body, header, retrying};
use super::{Client, MANIFEST_MAX_BYTES, expect, scopes};
use crate::error::{Error, Result};
use crate::json;

/// One page of a repository's tags.
pub struct TagPage {
    /// The tags, in the registry's order (lexical, per the spec).
    pub tags: Vec<String>,
    /// Whether the registry says more tags follow the last of these.
    pub more: bool,
}

/// Whether a `Link` header names a next page: `rel="next"`, or the unquoted `rel=next` RFC 8288
/// also allows.
pub(super) fn names_next(link: &str) -> bool {
    let link = link.to_ascii_lowercase().replace(' ', "");
    link.contains("rel=\"next\"") || link.split([';', ',']).any(|p| p == "rel=next")
}

#[derive(Deserialize)]
struct TagList {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

impl Client {
    /// `GET /v2/<name>/tags/list?n=<n>[&last=<tag>]`: at most `n` tags (as the registry honours
    /// it) after `last`.
    pub fn tags(&self, repo: &str, n: usize, last: Option<&str>) -> Result<TagPage> {
        let place = self.place(repo, " (tags)")?;
        let mut url = format!("/v2/{repo}/tags/list?n={n}");
        if let Some(last) = last {
            if !is_tag(last) {
                return Err(Error::registry(place, "listed a tag that is not a valid tag"));
            }
            url.push_str(&format!("&last={last}"));
        }
        let scopes = scopes(repo, "pull");
        let req = self.request(Method::GET, url, &scopes, &place);
        let (bytes, more) = retrying(&self.transport.pace, || {
            let resp = expect(self.transport.send(&req, Body::Empty)?, &[200], &req)?;
            let more = header(&resp, "link").is_some_and(names_next);
            Ok((read_document(resp, &place)?, more))
        })?;
        if bytes.len() as u64 > MANIFEST_MAX_BYTES {
            return Err(Error::registry(place, format!("tag list larger than {MANIFEST_MAX_BYTES} bytes")));
        }
        let list: TagList = json::parse_as(&bytes).map_err(|e| Error::registry(&place, e))?;
        Ok(TagPage { tags: list.tags.unwrap_or_default(), more })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_header_names_a_next_page_quoted_or_not() {
        assert!(names_next(r#"</v2/app/tags/list?n=2&last=b>; rel="next""#));
        assert!(names_next("</v2/app/tags/list?n=2&last=b>; REL=next"));
        assert!(!names_next(r#"</v2/app/tags/list?n=2>; rel="prev""#));
        assert!(!names_next("</v2/app/tags/list?n=2&last=next>; rel=nextish"));
    }
}
