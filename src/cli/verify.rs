//! `airlock verify`: flags → [`airlock::ops::verify::VerifyOptions`]; the result as a line per
//! image or as a JSON report for auditors.

use std::path::PathBuf;

use airlock::bundle::bases::StateChecked;
use airlock::bundle::format::BlobEntry;
use airlock::bundle::reader::Report;
use airlock::error::Error;
use airlock::ops::verify::{self, Verified, VerifyOptions};
use airlock::volume::Names;
use airlock::volume::list::{self, Which};
use airlock::volume::repair;
use anyhow::Result;
use serde_json::json;

/// `--help` ends with these (the README's examples).
const EXAMPLES: &str = "\
Examples:
  airlock verify -p ops.pub bundle.tar   # signature + every blob; exit 0 only if all holds
  airlock verify -p ops.pub --json bundle.tar > audit.json
  airlock verify -p ops.pub bundle.tar.001          # a split bundle, read across its parts
  airlock verify -p ops.pub --part bundle.tar.003   # one part alone, against the signed part list
  airlock verify -p ops.pub delta.tar --base full.tar   # a delta, and the whole state with its base";

#[derive(clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct VerifyArgs {
    #[arg(value_name = "BUNDLE", required_unless_present = "part", help = super::BUNDLE_HELP)]
    bundle: Vec<PathBuf>,
    #[command(flatten)]
    trust: super::trust::TrustArgs,
    /// Print a machine-readable report on stdout
    #[arg(long)]
    json: bool,
    /// Also decompress every layer and check it against its image config's diff_id (a full
    /// decompression, in parallel; worth it before a long trip). Needs a file, not stdin
    #[arg(long)]
    check_layers: bool,
    /// For a delta: a base bundle holding blobs it leaves out (repeatable); then the whole state
    /// must be at hand, each base's signature and every blob the delta relies on are checked
    #[arg(long = "base", value_name = "BUNDLE")]
    bases: Vec<PathBuf>,
    /// Also require every image to carry a cosign signature over its digest by this key (PEM
    /// public key, as `cosign generate-key-pair` writes it; repeatable: any one of them), checked
    /// offline inside the bundle. Needs a file, not stdin
    #[arg(long = "cosign-key", value_name = "KEY.pub")]
    cosign_keys: Vec<PathBuf>,
    /// Check one part of a split bundle alone (OUT.003, OUT.p01) against its signed part list
    #[arg(long, value_name = "PART", conflicts_with_all = ["bundle", "check_layers", "bases"])]
    part: Option<PathBuf>,
}

pub fn run(args: VerifyArgs) -> Result<()> {
    if let Some(part) = &args.part {
        return verify_part(part, &args);
    }
    let opts = VerifyOptions {
        bundle: args.bundle.clone(),
        public_key: args.trust.public_key().map(Into::into),
        check_layers: args.check_layers,
        bases: args.bases.clone(),
        cosign_keys: args.cosign_keys.clone(),
    };
    let result = verify::verify(&opts, &(super::progress::observer() as _));
    if args.json {
        let doc = match &result {
            Ok(v) => report_json(v, &args),
            Err(e) => json!({"bundle": args.bundle[0], "result": "failed", "error": e.to_string()}),
        };
        say!("{}", serde_json::to_string_pretty(&doc)?);
    }
    let Verified { report: r, layers, bases, signers } = result?;
    if !args.json {
        let sig = match &r.key_id {
            Some(k) => format!("signature by key {k} verified"),
            None => "SIGNATURE NOT CHECKED (--insecure-no-signature)".into(),
        };
        say!(
            "{}: OK: {sig}; {} images, {} blobs, {} files, {} checked",
            args.bundle[0].display(),
            r.index.images.len(),
            r.blobs_checked,
            r.files_checked,
            super::bytes(r.bytes_checked)
        );
        say!("  {}", super::position_line(&r.index));
        if let Some(l) = &layers {
            say!("  {} layers decompressed ({}), each matches its diff_id", l.layers, super::bytes(l.bytes));
        }
        print_bases(&r, bases.as_ref());
        for (i, img) in r.index.images.iter().enumerate() {
            let signed = signers.get(i).map(|k| format!("  cosign signature by {k}")).unwrap_or_default();
            say!("  {}  {}  {}{signed}", img.name, img.digest, img.platforms.join(","));
        }
    }
    Ok(())
}

/// `--part`: one part's size and sha256 against the signed part list.
fn verify_part(part: &std::path::Path, args: &VerifyArgs) -> Result<()> {
    let key = airlock::ops::load_public_key(args.trust.public_key())?;
    let names = Names::of_member(part).ok_or_else(|| {
        Error::bad(part.display().to_string(), "is not named as a part of a split bundle (OUT.001, OUT.p01)")
    })?;
    let list = list::load(&names, &airlock::ops::trust(&key))?;
    let (which, size) = repair::check_part(&names, &list, part)?;
    let what = match which {
        Which::Data(i) => format!("data part {} of {}", i + 1, list.parts.len()),
        Which::Parity(j) => format!("parity part {} of {}", j + 1, list.parity_parts().len()),
    };
    let sig = match &key {
        Some(k) => format!("part list signed by key {}", k.key_id()),
        None => "PART LIST SIGNATURE NOT CHECKED (--insecure-no-signature)".into(),
    };
    if args.json {
        let doc = json!({"part": part, "result": "ok", "bundleId": list.bundle_id, "size": size, "which": what, "signatureChecked": key.is_some()});
        say!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    say!(
        "{}: OK: {what} of bundle {}, {}, size and sha256 match the signed part list; {sig}",
        part.display(),
        list.bundle_id,
        super::bytes(size)
    );
    Ok(())
}

fn print_bases(r: &Report, checked: Option<&StateChecked>) {
    if r.index.bases.is_empty() {
        return;
    }
    let absent = r.index.absent_blobs().count();
    say!("  a delta: {absent} blobs are left to the base bundles it relies on:");
    super::print_bases(&r.index);
    match checked {
        Some(c) => say!(
            "  the whole state is at hand: {} blobs ({}) checked in the given bases",
            c.blobs,
            super::bytes(c.bytes)
        ),
        None => say!("  (not checked: give the bases with --base to check the whole state)"),
    }
}

fn report_json(v: &Verified, args: &VerifyArgs) -> serde_json::Value {
    let (r, layers, bases) = (&v.report, v.layers.as_ref(), v.bases.as_ref());
    let checked = |b: &BlobEntry| match (&b.carried_by, bases) {
        (None, _) => json!(["present", "size", "sha256"]),
        (Some(_), Some(_)) => json!(["in a given base", "size", "sha256"]),
        (Some(_), None) => json!([]),
    };
    let blobs: Vec<_> = r
        .index
        .blobs
        .iter()
        .map(|b| json!({"digest": b.digest, "size": b.size, "mediaType": b.media_type, "carriedBy": b.carried_by, "checked": checked(b)}))
        .collect();
    let files: Vec<_> =
        r.index.files.iter().map(|f| json!({"path": f.path, "digest": f.digest, "size": f.size})).collect();
    json!({
        "bundle": args.bundle[0],
        "result": "ok",
        "bundleId": r.index.bundle_id,
        "created": r.index.created,
        "tool": r.index.tool,
        "schemaVersion": r.index.schema_version,
        "series": r.index.series,
        "sequence": r.index.sequence,
        "expires": r.index.expires,
        "expired": super::expired(&r.index),
        "signature": {
            "checked": r.key_id.is_some(),
            "keyId": r.key_id,
            "trustedComment": r.trusted_comment,
            "algorithm": "minisign Ed25519 (prehashed, BLAKE2b-512)",
        },
        "bases": r.index.bases,
        "basesChecked": bases.map(|c| json!({"blobs": c.blobs, "bytes": c.bytes})),
        "images": r.index.images,
        "blobs": blobs,
        "files": files,
        "checks": [
            "signature over airlock.json verified before any blob was read",
            "every entry is a plain ustar regular file listed in the signed index, once",
            "every blob and file has the signed size and sha256",
            "nothing listed is missing; nothing follows the end of the archive",
            "every image's manifests reference exactly the blobs listed for it",
        ],
        "counts": {"blobs": r.blobs_checked, "files": r.files_checked, "bytes": r.bytes_checked},
        "layerContent": layers.map(|l| json!({
            "checked": "every image layer decompressed; its sha256 equals its config's diff_id",
            "layers": l.layers,
            "uncompressedBytes": l.bytes,
        })),
        "cosignSignatures": (!v.signers.is_empty()).then(|| json!({
            "checked": "every image carries a cosign simple-signing signature over its digest by one of the --cosign-key keys",
            "signedBy": v.signers,
        })),
    })
}
