//! Values no one should send, sent anyway: times past year 9999, deeply nested lists, lists that
//! smuggle local paths. Each is a clear error (exit 3), never a panic or a long stall.

use std::time::{Duration, Instant};

use crate::common::{EXIT_BAD_INPUT, Env, fixture_str};

fn create_with_created(env: &Env, created: Option<&str>, epoch: Option<&str>) -> crate::common::Run {
    let src = format!("oci-archive:{}", fixture_str("tools.oci.tar"));
    let mut cmd = env.cmd();
    cmd.args(["create", "-k", "ops.key", "-o", "b.tar", &src]);
    if let Some(c) = created {
        cmd.args(["--created", c]);
    }
    if let Some(e) = epoch {
        cmd.env("SOURCE_DATE_EPOCH", e);
    }
    crate::common::Run::from_output(cmd.output().unwrap())
}

#[test]
fn a_creation_time_after_year_9999_is_refused_not_a_panic() {
    let env = Env::new();
    env.keygen("ops");
    for t in ["18446744073709551615", "253402300800", "99999999999999"] {
        create_with_created(&env, Some(t), None).fails(EXIT_BAD_INPUT, &["--created", "after 9999-12-31T23:59:59Z"]);
        create_with_created(&env, None, Some(t))
            .fails(EXIT_BAD_INPUT, &["SOURCE_DATE_EPOCH", "after 9999-12-31T23:59:59Z"]);
    }
    create_with_created(&env, Some("10000-01-01T00:00:00Z"), None).fails(EXIT_BAD_INPUT, &["--created"]);
    assert!(!env.path("b.tar").exists());
    create_with_created(&env, Some("253402300799"), None).ok();
}

#[test]
fn a_deeply_nested_yaml_list_is_refused_at_once() {
    let env = Env::new();
    env.keygen("ops");
    let text = format!("kind: Images\nspec: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    std::fs::write(env.path("deep.yaml"), text).unwrap();
    let start = Instant::now();
    env.run(&["create", "-k", "ops.key", "-o", "b.tar", "-f", "deep.yaml"])
        .fails(EXIT_BAD_INPUT, &["deep.yaml:2", "nested deeper than"]);
    assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());
}

#[test]
fn a_hauler_list_names_registry_images_only_unless_local_sources_are_allowed() {
    let env = Env::new();
    env.keygen("ops");
    let list = format!(
        "apiVersion: content.hauler.cattle.io/v1\nkind: Images\nspec:\n  images:\n    - name: \"oci-archive:{}\"\n",
        fixture_str("tools.oci.tar")
    );
    std::fs::write(env.path("hauler.yaml"), list).unwrap();
    env.run(&["create", "-k", "ops.key", "-o", "b.tar", "-f", "hauler.yaml"])
        .fails(EXIT_BAD_INPUT, &["hauler.yaml:5", "registry images only", "--file-allow-local"]);
    assert!(!env.path("b.tar").exists());
    env.run(&["create", "-k", "ops.key", "-o", "b.tar", "--file-allow-local", "hauler.yaml"]).ok();
}
