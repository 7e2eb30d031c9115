//! What attachment discovery asks of a registry: a fake registry written here serves N small
//! images in one repository and records every request, so a test can count the round trips
//! `create` spends looking for signatures, SBOMs and referrers (one tag listing per repository,
//! one referrers probe per registry, then only the tags that exist), and check that a registry
//! refusing to list its tags still gives up every attachment, found tag by tag.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::common::{Env, image, signed_index};
use crate::fakes::{fake_server, reply};

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

pub(crate) fn sha256(bytes: &str) -> String {
    use sha2::Digest as _;
    let hex: String = sha2::Sha256::digest(bytes.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// A repository of a fake registry: what each path answers (content type, body).
#[derive(Default)]
pub(crate) struct Served {
    paths: HashMap<String, (String, String)>,
}

impl Served {
    /// Adds a blob; returns its descriptor.
    fn blob(&mut self, media_type: &str, body: &str) -> serde_json::Value {
        let digest = sha256(body);
        self.paths.insert(format!("/v2/app/blobs/{digest}"), ("application/octet-stream".into(), body.into()));
        serde_json::json!({"mediaType": media_type, "digest": digest, "size": body.len()})
    }

    /// Adds a manifest of one config and one layer under `tag` and its digest; returns its digest.
    fn manifest(&mut self, tag: &str, config: &str, layer: &str) -> String {
        let config = self.blob("application/vnd.oci.image.config.v1+json", config);
        let layer = self.blob("application/vnd.oci.image.layer.v1.tar+gzip", layer);
        let doc = serde_json::json!({"schemaVersion": 2, "mediaType": MANIFEST, "config": config, "layers": [layer]})
            .to_string();
        let digest = sha256(&doc);
        for reference in [tag, &digest] {
            self.paths.insert(format!("/v2/app/manifests/{reference}"), (MANIFEST.into(), doc.clone()));
        }
        digest
    }

    /// `n` images tagged `1.1` … `1.N`, each with a config of its own and a shared layer.
    pub(crate) fn images(n: usize) -> (Served, Vec<String>) {
        let mut served = Served::default();
        let digests = (1..=n)
            .map(|i| {
                let config = format!(
                    r#"{{"architecture":"amd64","os":"linux","config":{{"Cmd":["/app{i}"]}},"rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
                    sha256("layer")
                );
                served.manifest(&format!("1.{i}"), &config, "layer")
            })
            .collect();
        (served, digests)
    }

    /// The tags this repository holds, as `tags/list` answers.
    pub(crate) fn tag_list(&self) -> String {
        let mut tags: Vec<&str> = self
            .paths
            .keys()
            .filter_map(|p| p.strip_prefix("/v2/app/manifests/"))
            .filter(|t| !t.contains(':'))
            .collect();
        tags.sort();
        serde_json::json!({"name": "app", "tags": tags}).to_string()
    }

    /// Serves the repository; `tags_list` answers `tags/list` (given the request head), the
    /// referrers API is missing (404, as distribution 2.8). Returns the registry's host and the
    /// requests it saw.
    pub(crate) fn start(
        self,
        tags_list: impl Fn(&str) -> String + Send + 'static,
    ) -> (String, Arc<Mutex<Vec<String>>>) {
        let (port, seen) = fake_server(move |head| {
            let path = head.split(' ').nth(1).unwrap_or_default();
            if path == "/v2/" {
                return reply("200 OK", "", "");
            }
            if path.starts_with("/v2/app/tags/list") {
                return tags_list(head);
            }
            match self.paths.get(path) {
                Some((media_type, body)) => reply("200 OK", &format!("Content-Type: {media_type}\r\n"), body),
                None => reply("404 Not Found", "", r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}"#),
            }
        });
        (format!("127.0.0.1:{port}"), seen)
    }
}

/// Requests seen whose path starts with `prefix`.
pub(crate) fn count(seen: &Mutex<Vec<String>>, prefix: &str) -> usize {
    seen.lock().unwrap().iter().filter(|h| h.split(' ').nth(1).is_some_and(|p| p.starts_with(prefix))).count()
}

fn create(env: &Env, host: &str, tags: impl Iterator<Item = String>) {
    env.keygen("ops");
    let sources: Vec<String> = tags.map(|t| format!("{host}/app:{t}")).collect();
    let mut args = vec!["create", "-k", "ops.key", "-o", "b.tar"];
    args.extend(sources.iter().map(String::as_str));
    env.run(&args).ok();
}

#[test]
fn images_of_one_repository_with_nothing_attached_cost_one_tag_listing_and_no_tag_probes() {
    let env = Env::new();
    let n = 20;
    let (served, _) = Served::images(n);
    let list = reply("200 OK", "Content-Type: application/json\r\n", &served.tag_list());
    let (host, seen) = served.start(move |_| list.clone());
    create(&env, &host, (1..=n).map(|i| format!("1.{i}")));
    assert_eq!(count(&seen, "/v2/app/tags/list"), 1, "one tag listing for the repository");
    assert_eq!(count(&seen, "/v2/app/manifests/sha256-"), 0, "no cosign or fallback tag probed");
    assert_eq!(count(&seen, "/v2/app/referrers/"), 1, "the registry lacks the referrers API: asked once");
    assert_eq!(signed_index(&env, "b.tar")["images"].as_array().unwrap().len(), n);
}

#[test]
fn a_registry_refusing_to_list_tags_still_gives_up_a_signature_found_by_its_tag() {
    for refusal in ["401 Unauthorized", "403 Forbidden", "404 Not Found"] {
        let env = Env::new();
        let (mut served, digests) = Served::images(3);
        let sig = served.manifest(
            &format!("sha256-{}.sig", digests[1].trim_start_matches("sha256:")),
            "{}",
            "simple signing payload",
        );
        let list = reply(refusal, "", r#"{"errors":[{"code":"DENIED","message":"no listing here"}]}"#);
        let (host, seen) = served.start(move |_| list.clone());
        create(&env, &host, (1..=3).map(|i| format!("1.{i}")));
        let index = signed_index(&env, "b.tar");
        let signed = &image(&index, &format!("{host}/app:1.2"))["attachments"];
        assert_eq!(signed[0]["kind"], "cosign-signature", "{refusal}: {signed}");
        assert_eq!(signed[0]["digest"], sig.as_str(), "{refusal}");
        assert_eq!(image(&index, &format!("{host}/app:1.1"))["attachments"], serde_json::Value::Null, "{refusal}");
        assert!(count(&seen, "/v2/app/manifests/sha256-") >= 3 * 4, "{refusal}: every tag probed");
    }
}

#[test]
fn a_tag_listing_in_pages_is_read_to_its_end_and_a_signature_on_the_last_page_is_found() {
    let env = Env::new();
    let (mut served, digests) = Served::images(12);
    let sig_tag = format!("sha256-{}.sig", digests[4].trim_start_matches("sha256:"));
    let sig = served.manifest(&sig_tag, "{}", "simple signing payload");
    let all: Vec<String> = serde_json::from_str::<serde_json::Value>(&served.tag_list()).unwrap()["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(all.last(), Some(&sig_tag), "the signature's tag sorts last");
    // A registry that pages by 5 whatever `n` asks, so the signature is on the last page.
    let (host, seen) = served.start(move |head| {
        let last = head.split(' ').nth(1).unwrap().split("last=").nth(1).map(|l| l.split('&').next().unwrap());
        let mut rest: Vec<&String> = all.iter().collect();
        if let Some(last) = last {
            rest.retain(|t| t.as_str() > last);
        }
        let page: Vec<&String> = rest.into_iter().take(5).collect();
        let link = if page.len() == 5 { "Link: </v2/app/tags/list?n=5>; rel=\"next\"\r\n" } else { "" };
        reply("200 OK", link, &serde_json::json!({"name": "app", "tags": page}).to_string())
    });
    create(&env, &host, (1..=12).map(|i| format!("1.{i}")));
    let index = signed_index(&env, "b.tar");
    assert_eq!(image(&index, &format!("{host}/app:1.5"))["attachments"][0]["digest"], sig.as_str());
    assert_eq!(count(&seen, "/v2/app/tags/list"), 3, "13 tags in pages of 5");
    assert_eq!(count(&seen, "/v2/app/manifests/sha256-"), 1, "the signature's tag, and no other tag, asked for");
}

/// How a fake registry answers `tags/list`.
type Listing = dyn Fn(&str) -> String + Send;

#[test]
fn a_tag_listing_that_never_ends_or_lists_too_many_tags_is_left_for_probes() {
    let too_many: Vec<String> = (0..10_001).map(|i| format!("x{i:05}")).collect();
    let endless = |_: &str| {
        let page = serde_json::json!({"name": "app", "tags": ["1.1"]}).to_string();
        reply("200 OK", "Link: </v2/app/tags/list?n=1000&last=1.1>; rel=\"next\"\r\n", &page)
    };
    let flood = move |_: &str| reply("200 OK", "", &serde_json::json!({"name": "app", "tags": too_many}).to_string());
    let listings: [(&str, Box<Listing>); 2] = [("endless", Box::new(endless)), ("flood", Box::new(flood))];
    for (what, listing) in listings {
        let env = Env::new();
        let (mut served, digests) = Served::images(2);
        let sig_tag = format!("sha256-{}.sig", digests[0].trim_start_matches("sha256:"));
        let sig = served.manifest(&sig_tag, "{}", "simple signing payload");
        let (host, seen) = served.start(listing);
        create(&env, &host, (1..=2).map(|i| format!("1.{i}")));
        let index = signed_index(&env, "b.tar");
        assert_eq!(image(&index, &format!("{host}/app:1.1"))["attachments"][0]["digest"], sig.as_str(), "{what}");
        assert!(count(&seen, "/v2/app/tags/list") <= 2, "{what}: the listing was followed on and on");
        assert!(count(&seen, "/v2/app/manifests/sha256-") >= 2 * 4, "{what}: every tag probed");
    }
}

#[test]
fn a_registry_with_the_referrers_api_is_asked_it_for_every_image() {
    let env = Env::new();
    let n = 8;
    let (mut served, digests) = Served::images(n);
    let empty = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
    for d in &digests {
        let index = "application/vnd.oci.image.index.v1+json".to_owned();
        served.paths.insert(format!("/v2/app/referrers/{d}"), (index, empty.to_owned()));
    }
    let list = reply("200 OK", "Content-Type: application/json\r\n", &served.tag_list());
    let (host, seen) = served.start(move |_| list.clone());
    create(&env, &host, (1..=n).map(|i| format!("1.{i}")));
    assert_eq!(count(&seen, "/v2/app/referrers/"), n, "one referrers call per image");
    assert_eq!(count(&seen, "/v2/app/tags/list"), 1);
    assert_eq!(count(&seen, "/v2/app/manifests/sha256-"), 0);
}
