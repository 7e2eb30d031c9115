//! `create --cache DIR` against the fake registry of [`crate::discovery`]: the bundle is the same
//! byte for byte with a cold cache, a warm one and none, a warm cache fetches no blob again, and
//! a split bundle made from the cache verifies.

use crate::common::Env;
use crate::discovery::{Served, count};
use crate::fakes::reply;

#[test]
fn a_cold_and_a_warm_cache_write_the_bundle_a_create_without_one_writes_and_warm_fetches_nothing() {
    let env = Env::new();
    env.keygen("ops");
    let (served, _) = Served::images(6);
    let list = reply("200 OK", "Content-Type: application/json\r\n", &served.tag_list());
    let (host, seen) = served.start(move |_| list.clone());
    let sources: Vec<String> = (1..=6).map(|i| format!("{host}/app:1.{i}")).collect();
    let create = |out: &str, extra: &[&str]| {
        let mut args = vec!["create", "-k", "ops.key", "--created", "2026-01-01T00:00:00Z", "-o", out];
        args.extend(extra);
        args.extend(sources.iter().map(String::as_str));
        env.run(&args).ok();
    };
    create("none.tar", &[]);
    // Configs are read while the images are resolved, cache or not; layers come from the cache.
    let layer = format!("/v2/app/blobs/{}", crate::discovery::sha256("layer"));
    create("cold.tar", &["--cache", "cache"]);
    assert_eq!(count(&seen, &layer), 2, "the layer, once without a cache and once into it");
    create("warm.tar", &["--cache", "cache"]);
    assert_eq!(count(&seen, &layer), 2, "a warm cache fetched the layer again");
    let none = std::fs::read(env.path("none.tar")).unwrap();
    for other in ["cold.tar", "warm.tar"] {
        assert!(
            std::fs::read(env.path(other)).unwrap() == none,
            "{other} differs from the bundle made without a cache"
        );
    }
    env.run(&["verify", "-p", "ops.pub", "warm.tar"]).ok();
    // Into volumes the cached copies go through the writer that makes the parts' digests and parity.
    create("split.tar", &["--cache", "cache", "--volume-size", "4K", "--parity", "1"]);
    env.run(&["verify", "-p", "ops.pub", "split.tar.001"]).ok();
}
