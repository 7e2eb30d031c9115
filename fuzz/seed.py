#!/usr/bin/env python3
"""Seed inputs for the fuzz targets, made from fixtures/ (see docs/fuzzing.md).

    fuzz/seed.py OUT AIRLOCK    # writes OUT/<target>/<seed>; AIRLOCK: the built binary

The fixtures' layers are megabytes, far past what a fuzzer mutates usefully, so the seeds are:
- every JSON document of the fixtures, verbatim (json, image);
- each fixture archive with its entries' headers intact and every file cut to 256 bytes
  (tar_store: the real entry layouts of docker save 20.10 / 25+ and OCI archives);
- small but valid archives built here from the fixtures' configs, with one tiny layer each:
  an OCI archive holding a two-platform index and a legacy `docker save` (tar_store), and the
  bundles `airlock create` makes of them, signed with fuzz/keys/fuzz.key (bundle_reader);
- the names, platforms and source specs the fixtures and README use (reference);
- fuzz/keys (minisign -G -W) and its signature over `{}` (minisign);
- image lists in the three forms (image_list);
- Docker Engine answers to `docker load` and `docker save`, plain and chunked (daemon_http);
- the `WWW-Authenticate`, `Link` and `Location` values registries send (registry_header).
"""
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "fixtures")
KEYS = os.path.join(ROOT, "fuzz", "keys")
CUT = 256


def put(out, target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def sha(b):
    return hashlib.sha256(b).hexdigest()


def tar_bytes(files):
    """files: [(name, bytes or None for a directory)], deterministic."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.mtime = 0
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                t.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def fixture_archives():
    return [f for f in sorted(os.listdir(FIX)) if f.endswith(".tar")]


def json_docs():
    """(label, bytes) of every JSON document in the fixtures."""
    docs = []
    for f in fixture_archives():
        with tarfile.open(os.path.join(FIX, f)) as t:
            for m in t.getmembers():
                if m.isfile() and m.size < 64 << 10:
                    b = t.extractfile(m).read()
                    if b[:1] in (b"{", b"["):
                        docs.append((f"{f}-{m.name}", b))
    for dirpath, _, names in os.walk(os.path.join(FIX, "oci-layout")):
        for n in names:
            b = open(os.path.join(dirpath, n), "rb").read()
            if b[:1] == b"{":
                docs.append((f"oci-layout-{n}", b))
    return [(label.replace("/", "_")[:100], b) for label, b in docs]


def skeleton(path):
    """The archive with every header kept and every file cut to CUT bytes."""
    buf = io.BytesIO()
    with tarfile.open(path) as src, tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as dst:
        for m in src.getmembers():
            data = src.extractfile(m).read()[:CUT] if m.isfile() else None
            if data is not None:
                m.size = len(data)
            dst.addfile(m, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def fixture_config():
    with tarfile.open(os.path.join(FIX, "tools.oci.tar")) as t:
        index = json.load(t.extractfile("index.json"))
        manifest = json.load(t.extractfile("blobs/sha256/" + index["manifests"][0]["digest"][7:]))
        return json.load(t.extractfile("blobs/sha256/" + manifest["config"]["digest"][7:]))


def tiny_layer():
    layer = tar_bytes([("hello.txt", b"hello from the fuzz seeds\n")])
    gz = gzip.compress(layer, mtime=0)
    return layer, gz


def tiny_oci_archive():
    """An OCI archive: a two-platform index named example.com/fuzz/multi:1 and a single image."""
    layer, gz = tiny_layer()
    blobs = {sha(gz): gz}

    def blob(doc):
        b = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
        blobs[sha(b)] = b
        return {"digest": "sha256:" + sha(b), "size": len(b)}

    base = fixture_config()
    manifests = []
    for arch, variant in (("amd64", None), ("arm64", "v8")):
        cfg = dict(base, architecture=arch, rootfs={"type": "layers", "diff_ids": ["sha256:" + sha(layer)]})
        if variant:
            cfg["variant"] = variant
        c = blob(cfg)
        m = blob({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                  "config": dict(c, mediaType="application/vnd.oci.image.config.v1+json"),
                  "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                              "digest": "sha256:" + sha(gz), "size": len(gz)}]})
        plat = {"os": "linux", "architecture": arch}
        if variant:
            plat["variant"] = variant
        manifests.append(dict(m, mediaType="application/vnd.oci.image.manifest.v1+json", platform=plat))
    idx = blob({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests})
    ref = "org.opencontainers.image.ref.name"
    top = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        dict(idx, mediaType="application/vnd.oci.image.index.v1+json", annotations={ref: "example.com/fuzz/multi:1"}),
        dict(manifests[0], annotations={ref: "example.com/fuzz/single:1"}),
    ]}
    files = [("blobs/", None), ("blobs/sha256/", None)]
    files += [("blobs/sha256/" + d, b) for d, b in sorted(blobs.items())]
    files += [("index.json", json.dumps(top).encode()), ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')]
    return tar_bytes(files)


def tiny_docker_save():
    """A legacy (dockerd 20.10) `docker save` of one image, example.com/fuzz/legacy:1."""
    layer, _ = tiny_layer()
    cfg = dict(fixture_config(), rootfs={"type": "layers", "diff_ids": ["sha256:" + sha(layer)]})
    cfg_bytes = json.dumps(cfg).encode()
    layer_id = sha(b"layer" + layer)
    manifest = [{"Config": sha(cfg_bytes) + ".json", "RepoTags": ["example.com/fuzz/legacy:1"],
                 "Layers": [layer_id + "/layer.tar"]}]
    return tar_bytes([
        (sha(cfg_bytes) + ".json", cfg_bytes),
        (layer_id + "/", None),
        (layer_id + "/VERSION", b"1.0"),
        (layer_id + "/json", json.dumps({"id": layer_id}).encode()),
        (layer_id + "/layer.tar", layer),
        ("manifest.json", json.dumps(manifest).encode()),
        ("repositories", json.dumps({"example.com/fuzz/legacy": {"1": layer_id}}).encode()),
    ])


def bundles(out, airlock, sources):
    tmp = os.path.join(out, "tmp")
    os.makedirs(tmp, exist_ok=True)
    paths = {}
    for name, data in sources.items():
        paths[name] = os.path.join(tmp, name)
        open(paths[name], "wb").write(data)
    key = os.path.join(KEYS, "fuzz.key")
    made = {
        "oci.bundle": [f"oci-archive:{paths['oci.tar']}"],
        "legacy.bundle": [f"docker-archive:{paths['save.tar']}"],
        "both-arm64.bundle": ["--platform", "linux/arm64", f"oci-archive:{paths['oci.tar']}:example.com/fuzz/multi:1"],
    }
    for name, args in made.items():
        dest = os.path.join(tmp, name)
        subprocess.run([airlock, "create", "-k", key, "-o", dest, "--created", "2026-01-01T00:00:00Z", *args],
                       check=True, stdout=subprocess.DEVNULL)
        put(out, "bundle_reader", name, open(dest, "rb").read())
        with tarfile.open(dest) as t:
            put(out, "image", name + "-airlock.json", t.extractfile("airlock.json").read())
            put(out, "minisign", name + "-airlock.json.minisig", t.extractfile("airlock.json.minisig").read())


def main():
    out, airlock = sys.argv[1], sys.argv[2]
    for label, b in json_docs():
        put(out, "json", label, b)
        put(out, "image", label, b)
    for f in fixture_archives():
        put(out, "tar_store", "skeleton-" + f, skeleton(os.path.join(FIX, f)))
    oci, save = tiny_oci_archive(), tiny_docker_save()
    put(out, "tar_store", "tiny.oci.tar", oci)
    put(out, "tar_store", "tiny-save.tar", save)
    bundles(out, airlock, {"oci.tar": oci, "save.tar": save})
    for i, text in enumerate([
        "nginx", "nginx:1.27", "docker.io/library/nginx:1.27", "registry.example:5000/team/app:1.4",
        "example.com/team/web:1.4@sha256:" + "ab" * 32, "localhost/a/b_c__d-e.f:tag_1",
        "[::1]:5000/x/y:z", "linux/amd64", "linux/arm64/v8", "windows/amd64",
        "oci:./layout:web-1.4=registry.example/team/web:1.4", "docker-daemon:busybox:1.36",
        "docker://ghcr.io/org/app@sha256:" + "0f" * 32, "oci-archive:t.tar:registry.example:5000/a/b:1=reg.io/x:2",
    ]):
        put(out, "reference", f"name-{i}", text)
    for f in sorted(os.listdir(KEYS)):
        put(out, "minisign", f, open(os.path.join(KEYS, f), "rb").read())
    put(out, "image_list", "plain.txt", "# images\nnginx:1.27\ndocker://ghcr.io/org/app:2.0  # app\n\n"
        "oci-archive:tools.tar\n")
    put(out, "image_list", "hauler.yaml", "apiVersion: content.hauler.cattle.io/v1\nkind: Images\nmetadata:\n"
        "  name: airgap\nspec:\n  images:\n    - name: example.com/src/multi:2.0\n      platform: linux/arm64\n"
        "    - name: example.com/src/busybox:1.36\n      platforms: [linux/amd64, linux/arm64]\n")
    put(out, "image_list", "mindthegap.yaml", "docker.io:\n  images:\n    library/nginx:\n      - 1.27\n"
        "      - \"1.20\"\nghcr.io:\n  images:\n    org/app: [\"2.0\"]\n")
    for name, data in daemon_answers():
        put(out, "daemon_http", name, data)
    for i, value in enumerate([
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/busybox:pull"',
        'Basic realm="airlock \\"test\\"", BEARER Realm=https://a.example/t , error="insufficient_scope"',
        '</v2/app/tags/list?n=2&last=b>; rel="next"', "</v2/_catalog?n=100&last=x>; REL=next",
        "/v2/team/app/blobs/uploads/3f2a?_state=abc", "http://127.0.0.1:5000/v2/x/blobs/uploads/u",
        "https://storage.example/b?X-Amz-Signature=1", "//evil.example/x", "bytes=0-1023",
    ]):
        put(out, "registry_header", f"value-{i}", value)


def daemon_answers():
    """`docker load` and `docker save` answers as the engine sends them."""
    load = b'{"stream":"Loaded image: example.com/team/web:1.4\\n"}\r\n'
    chunk = b"%x\r\n%s\r\n0\r\n\r\n" % (len(load), load)
    refusal = b'{"message":"unexpected EOF"}'
    return [
        ("load-plain", b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n" + load),
        ("load-chunked", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk),
        ("load-error", b"HTTP/1.1 200 OK\r\n\r\n" + b'{"errorDetail":{"message":"x"},"error":"x"}\n'),
        ("refused", b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: %d\r\n\r\n%s" % (len(refusal), refusal)),
        ("save-chunked", b"HTTP/1.1 200 OK\r\nContent-Type: application/x-tar\r\nTransfer-Encoding: chunked\r\n\r\n"
         b"5\r\nhello\r\n3;ext=1\r\nabc\r\n0\r\n\r\n"),
    ]


if __name__ == "__main__":
    main()
