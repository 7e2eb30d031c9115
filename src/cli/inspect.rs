//! `airlock inspect`: the bundle's images ([`airlock::ops::inspect`]) as a table or JSON.

use std::path::PathBuf;

use airlock::attachments::Attachment;
use airlock::ops::inspect::{self, Inspected};
use anyhow::Result;
use serde_json::json;

/// `--help` ends with these (the README's examples).
const EXAMPLES: &str = "\
Examples:
  airlock inspect bundle.tar             # image, platforms, digest, size, shared blobs
  airlock inspect --json bundle.tar";

#[derive(clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct InspectArgs {
    #[arg(value_name = "BUNDLE", required = true, help = super::BUNDLE_HELP)]
    bundle: Vec<PathBuf>,
    /// Print a machine-readable report
    #[arg(long)]
    json: bool,
}

pub fn run(args: InspectArgs) -> Result<()> {
    let Inspected { place, index, rows } = inspect::inspect(&args.bundle)?;
    if args.json {
        let images: Vec<_> = rows
            .iter()
            .zip(&index.images)
            .map(|(r, img)| {
                let mut row = json!({"name": r.name, "digest": r.digest, "platforms": r.platforms, "size": r.size, "sharedBlobs": r.shared});
                if !img.attachments.is_empty() {
                    row["attachments"] = attachments_json(&img.attachments);
                }
                row
            })
            .collect();
        let doc = json!({
            "bundle": place, "bundleId": index.bundle_id, "created": index.created, "tool": index.tool,
            "schemaVersion": index.schema_version, "series": index.series, "sequence": index.sequence,
            "expires": index.expires, "expired": super::expired(&index),
            "verified": false, "images": images, "blobs": index.blobs.len(), "blobBytes": index.total_blob_bytes(),
            "bases": index.bases, "absentBlobs": index.absent_blobs().count(), "carriedBlobBytes": index.carried_blob_bytes(),
        });
        say!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    say!("bundle {} created {} by {} (not verified: use `airlock verify`)", index.bundle_id, index.created, index.tool);
    say!("{}", super::position_line(&index));
    if !index.bases.is_empty() {
        say!(
            "a delta: it carries {} of its blobs' {}; its bases carry the rest:",
            super::bytes(index.carried_blob_bytes()),
            super::bytes(index.total_blob_bytes())
        );
        super::print_bases(&index);
    }
    let w = rows.iter().map(|r| r.name.len()).max().unwrap_or(5).max(5);
    let pw = rows.iter().map(|r| r.platforms.join(",").len()).max().unwrap_or(8).max(9);
    say!("{:w$}  {:pw$}  {:19}  {:>10}  SHARED", "IMAGE", "PLATFORMS", "DIGEST", "SIZE");
    for (r, img) in rows.iter().zip(&index.images) {
        let digest = format!("sha256:{}", r.digest.short());
        say!("{:w$}  {:pw$}  {:19}  {:>10}  {}", r.name, r.platforms.join(","), digest, super::bytes(r.size), r.shared);
        for a in &img.attachments {
            let on = if a.subject == img.digest { String::new() } else { format!(" on sha256:{}", a.subject.short()) };
            let what = a.artifact_type.as_deref().map(|t| format!(" ({t})")).unwrap_or_default();
            say!("  + {} sha256:{}{what}{on}", a.kind, a.digest.short());
        }
    }
    say!("{} images, {} blobs, {}", index.images.len(), index.blobs.len(), super::bytes(index.total_blob_bytes()));
    Ok(())
}

/// What `inspect --json` shows of each attachment (the signed index's entry, without its blobs).
fn attachments_json(attachments: &[Attachment]) -> serde_json::Value {
    attachments
        .iter()
        .map(|a| json!({"kind": a.kind, "subject": a.subject, "digest": a.digest, "artifactType": a.artifact_type}))
        .collect()
}
