#!/usr/bin/env python3
"""Hostile inputs for airlock's integration tests (tests/it/hostile.rs, tests/it/verify.rs).

    hostile.py CASE OUT [IN]      write the hostile file OUT; IN is the bundle to tamper with
                                  for the `bundle-*` cases. Prints one JSON object on stdout
                                  with what the test needs to know (entry names, digests).
    hostile.py maxrss CMD...      run CMD, print {"code", "maxrss_kib", "stderr"} as JSON.

Inputs are built from the committed fixtures (fixtures/README.md) with the standard library only.
Archives are written block by block (`Tar`) rather than with TarFile.addfile, so that every trick
(absolute names, PAX records that lie, GNU long names, links to directories, data after the end
marker) is written exactly as intended and nothing is normalised on the way.
"""

import copy
import hashlib
import io
import json
import os
import resource
import subprocess
import sys
import tarfile
import zlib

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")
BLOCK = 512
MIB = 1 << 20


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def pad(data):
    return data + b"\0" * (-len(data) % BLOCK)


def header(name, size=0, kind=tarfile.REGTYPE, linkname="", fmt=tarfile.USTAR_FORMAT, mode=0o644):
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.size = size
    ti.linkname = linkname
    ti.mode = mode
    ti.mtime = 1704067200
    return ti.tobuf(fmt, "utf-8", "surrogateescape")


def entry(name, data=b"", **kw):
    return header(name, len(data), **kw) + pad(data)


def pax_records(records):
    out = b""
    for key, value in records:
        body = f" {key}={value}\n".encode()
        n = len(body) + 1
        while len(str(n)) + len(body) != n:
            n = len(str(n)) + len(body)
        out += str(n).encode() + body
    return out


class Tar:
    """A fixture as a list of (TarInfo, data) members, rewritten block by block."""

    def __init__(self, fixture):
        self.members = []
        with tarfile.open(os.path.join(FIXTURES, fixture)) as t:
            for m in t.getmembers():
                data = t.extractfile(m).read() if m.isfile() else b""
                self.members.append((copy.copy(m), data))

    def names(self):
        return [m.name for m, _ in self.members]

    def index_of(self, name):
        return self.names().index(name)

    def get(self, name):
        return self.members[self.index_of(name)][1]

    def set(self, name, data):
        i = self.index_of(name)
        ti, _ = self.members[i]
        ti.size = len(data)
        self.members[i] = (ti, data)

    def remove(self, name):
        del self.members[self.index_of(name)]

    def add(self, name, data):
        ti = tarfile.TarInfo(name)
        ti.size = len(data)
        ti.mode = 0o644
        ti.mtime = 1704067200
        self.members.append((ti, data))

    def replace_with(self, name, kind, linkname=""):
        i = self.index_of(name)
        ti, _ = self.members[i]
        ti.type = kind
        ti.size = 0
        ti.linkname = linkname
        if kind == tarfile.DIRTYPE:
            ti.mode = 0o755
        self.members[i] = (ti, b"")

    def put_blob(self, data):
        hexd = sha256(data)
        path = f"blobs/sha256/{hexd}"
        if path not in self.names():
            self.add(path, data)
        return hexd

    def json(self, name):
        return json.loads(self.get(name))

    def blocks(self, before=None, extra=b""):
        """The members as tar blocks; `extra` raw blocks go before the member named `before`."""
        out = b""
        for ti, data in self.members:
            if ti.name == before:
                out += extra
            out += ti.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape") + pad(data)
        return out

    def bytes(self, **kw):
        return self.blocks(**kw) + b"\0" * (2 * BLOCK)


# ---- OCI helpers: tools.oci.tar holds one image: index.json -> manifest -> config + 1 layer ----

TOOLS_INDEX = "index.json"


def tools():
    return Tar("tools.oci.tar")


def tools_manifest(t):
    desc = t.json(TOOLS_INDEX)["manifests"][0]
    return desc, t.get("blobs/sha256/" + desc["digest"][7:])


def with_manifest(t, manifest_bytes, desc_patch=None):
    """Stores `manifest_bytes` as a blob and points index.json's only descriptor at it."""
    hexd = t.put_blob(manifest_bytes)
    index = t.json(TOOLS_INDEX)
    index["manifests"][0]["digest"] = "sha256:" + hexd
    index["manifests"][0]["size"] = len(manifest_bytes)
    if desc_patch:
        desc_patch(index["manifests"][0])
    t.set(TOOLS_INDEX, json.dumps(index).encode())
    return hexd


def edit_manifest(t, edit):
    _, raw = tools_manifest(t)
    m = json.loads(raw)
    edit(m)
    return with_manifest(t, json.dumps(m).encode())


# ---- create cases: each returns (bytes of the hostile archive, info dict) ----


def c_absolute_path():
    t = tools()
    return t.blocks() + entry("/etc/passwd", b"root:x:0:0::/root:/bin/sh\n") + b"\0" * 1024, {
        "entry": "/etc/passwd"
    }


def c_dotdot_path():
    name = "blobs/../../../etc/cron.d/evil"
    t = tools()
    return t.blocks() + entry(name, b"* * * * * root sh\n") + b"\0" * 1024, {"entry": name}


def c_symlink_outside():
    t = tools()
    _, raw = tools_manifest(t)
    config = json.loads(raw)["config"]["digest"][7:]
    t.replace_with(f"blobs/sha256/{config}", tarfile.SYMTYPE, "../../../../etc/passwd")
    return t.bytes(), {"entry": f"blobs/sha256/{config}", "target": "../../../../etc/passwd"}


def c_symlink_absolute():
    t = tools()
    _, raw = tools_manifest(t)
    config = json.loads(raw)["config"]["digest"][7:]
    t.replace_with(f"blobs/sha256/{config}", tarfile.SYMTYPE, "/etc/passwd")
    return t.bytes(), {"entry": f"blobs/sha256/{config}", "target": "/etc/passwd"}


def c_manifest_json_links_to_dir():
    t = Tar("legacy-save.tar")
    target = next(m.name for m, _ in t.members if m.isdir())
    t.replace_with("manifest.json", tarfile.SYMTYPE, target)
    return t.bytes(), {"entry": "manifest.json", "target": target}


def c_layer_is_dir():
    t = tools()
    _, raw = tools_manifest(t)
    layer = json.loads(raw)["layers"][0]["digest"][7:]
    t.replace_with(f"blobs/sha256/{layer}", tarfile.DIRTYPE)
    return t.bytes(), {"entry": f"blobs/sha256/{layer}"}


def c_duplicate_entry():
    t = tools()
    other = json.dumps({"schemaVersion": 2, "manifests": []}).encode()
    return t.blocks() + entry("index.json", other) + b"\0" * 1024, {"entry": "index.json"}


def c_duplicate_dot_entry():
    t = tools()
    return t.blocks() + entry("./index.json", t.get("index.json")) + b"\0" * 1024, {"entry": "./index.json"}


def c_pax_size_conflict():
    t = tools()
    records = pax_records([("size", "10")])
    pax = entry("PaxHeaders/index.json", records, kind=tarfile.XHDTYPE)
    return t.bytes(before="index.json", extra=pax), {"entry": "index.json", "header": len(t.get("index.json"))}


def c_pax_global_header():
    t = tools()
    glob = entry("pax_global_header", pax_records([("comment", "hostile")]), kind=tarfile.XGLTYPE)
    return glob + t.bytes(), {"entry": "pax_global_header"}


def gnu_longname(name):
    data = name.encode() + b"\0"
    return header("././@LongLink", len(data), kind=tarfile.GNUTYPE_LONGNAME, fmt=tarfile.GNU_FORMAT) + pad(data)


def c_gnu_longname_dotdot():
    t = tools()
    hidden = "../../../etc/cron.d/evil"
    trick = gnu_longname(hidden) + entry("innocent.txt", b"* * * * * root sh\n", fmt=tarfile.GNU_FORMAT)
    return t.blocks() + trick + b"\0" * 1024, {"entry": hidden}


def c_gnu_longname_vs_pax_path():
    # tar-rs and Go take the GNU long name, Python's tarfile takes whichever record comes last:
    # one entry, two names, depending on who reads it.
    t = tools()
    pax = entry("PaxHeaders/notes", pax_records([("path", "notes-pax.txt")]), kind=tarfile.XHDTYPE)
    trick = pax + gnu_longname("notes-gnu.txt") + entry("notes.txt", b"which name am I?\n", fmt=tarfile.GNU_FORMAT)
    return t.blocks() + trick + b"\0" * 1024, {"pax": "notes-pax.txt", "gnu": "notes-gnu.txt"}


def nonregular_with_data(kind, linkname=""):
    # A second index.json hidden in the data of a directory or link entry: readers that skip
    # the data by the header's size never see it, readers that take the size as zero do.
    t = tools()
    other = json.dumps({"schemaVersion": 2, "manifests": []}).encode()
    hidden = entry("index.json", other)
    name = "extra/" if kind == tarfile.DIRTYPE else "extra"
    trick = header(name, len(hidden), kind=kind, linkname=linkname) + hidden
    return t.blocks() + trick + b"\0" * 1024, {"entry": name, "size": len(hidden)}


def c_dir_with_data():
    return nonregular_with_data(tarfile.DIRTYPE)


def c_symlink_with_data():
    return nonregular_with_data(tarfile.SYMTYPE, "index.json")


def c_hardlink_with_data():
    return nonregular_with_data(tarfile.LNKTYPE, "index.json")


def c_regular_named_like_a_dir():
    t = tools()
    return t.blocks() + entry("notes/", b"a file or a directory?\n") + b"\0" * 1024, {"entry": "notes/"}


def with_pax(records, name="notes.txt", data=b"which size am I?\n"):
    t = tools()
    pax = entry("PaxHeaders/" + name, pax_records(records), kind=tarfile.XHDTYPE)
    return t.blocks() + pax + entry(name, data) + b"\0" * 1024


def c_pax_repeated_key():
    data = b"which size am I?\n"
    return with_pax([("size", str(len(data))), ("size", "10")], data=data), {"entry": "PaxHeaders/notes.txt"}


def c_pax_sparse():
    records = [("GNU.sparse.major", "1"), ("GNU.sparse.minor", "0"), ("GNU.sparse.name", "notes.txt")]
    return with_pax(records), {"entry": "PaxHeaders/notes.txt"}


def c_non_utf8_name():
    t = tools()
    return t.blocks() + entry("notes-\udcff.txt", b"latin-1?\n") + b"\0" * 1024, {"entry": "notes-\\xff.txt"}


def huge_extension(kind, name):
    # The header claims 512 MiB; only a little follows. The claim alone must be refused.
    t = tools()
    claim = header(name, 512 * MIB, kind=kind, fmt=tarfile.GNU_FORMAT)
    return t.blocks() + claim + b"x" * (4 * BLOCK), {"entry": name, "size": 512 * MIB}


def c_huge_pax_header():
    return huge_extension(tarfile.XHDTYPE, "PaxHeaders/huge")


def c_huge_gnu_longname():
    return huge_extension(tarfile.GNUTYPE_LONGNAME, "././@LongLink")


def c_long_hostile_name():
    # 3,000 characters with terminal escapes, ending in `..`: the message must show at most
    # about 200 characters of it, escaped.
    t = tools()
    name = "\x1b[2J\x1b[31mPWNED\x1b[0m" + "a" * 3000 + "/../x"
    trick = gnu_longname(name) + entry("innocent.txt", b"x\n", fmt=tarfile.GNU_FORMAT)
    return t.blocks() + trick + b"\0" * 1024, {"entry": name}


def c_truncated_mid_blob():
    t = tools()
    data = t.bytes()
    _, raw = tools_manifest(t)
    layer = json.loads(raw)["layers"][0]["digest"][7:]
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        m = tf.getmember(f"blobs/sha256/{layer}")
        cut = m.offset_data + m.size // 2
    return data[:cut], {"entry": f"blobs/sha256/{layer}", "cut": cut}


def c_truncated_at_boundary():
    t = tools()
    data = t.bytes()
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        cut = tf.getmember("index.json").offset
    return data[:cut], {"cut": cut}


def c_trailing_garbage():
    data = open(os.path.join(FIXTURES, "tools.oci.tar"), "rb").read()
    return data + b"GARBAGE\n", {"at": len(data)}


def c_entry_after_end_marker():
    # One zero block ends the archive for most readers; an entry hidden after it is only seen by
    # readers that skip zero blocks (GNU tar -i, tar-rs with ignore_zeros).
    t = tools()
    body = t.blocks()
    hidden = entry("blobs/sha256/" + "0" * 64, b"hidden\n")
    return body + b"\0" * BLOCK + hidden + b"\0" * 1024, {"at": len(body) + BLOCK}


def set_index_digest(value):
    t = tools()
    index = t.json(TOOLS_INDEX)
    index["manifests"][0]["digest"] = value
    t.set(TOOLS_INDEX, json.dumps(index).encode())
    return t.bytes(), {"digest": value}


def c_digest_dotdot():
    return set_index_digest("sha256:../../../../etc/passwd")


def c_digest_uppercase():
    t = tools()
    desc, _ = tools_manifest(t)
    return set_index_digest("sha256:" + desc["digest"][7:].upper())


def c_digest_sha512_in_manifest():
    t = tools()
    _, raw = tools_manifest(t)
    config = t.get("blobs/sha256/" + json.loads(raw)["config"]["digest"][7:])
    value = "sha512:" + hashlib.sha512(config).hexdigest()

    def edit(m):
        m["config"]["digest"] = value

    hexd = edit_manifest(t, edit)
    return t.bytes(), {"digest": value, "manifest": "sha256:" + hexd}


def c_digest_uppercase_in_manifest():
    t = tools()
    holder = {}

    def edit(m):
        holder["v"] = "sha256:" + m["layers"][0]["digest"][7:].upper()
        m["layers"][0]["digest"] = holder["v"]

    hexd = edit_manifest(t, edit)
    return t.bytes(), {"digest": holder["v"], "manifest": "sha256:" + hexd}


def c_size_mismatch_index():
    t = tools()
    index = t.json(TOOLS_INDEX)
    desc = index["manifests"][0]
    desc["size"] -= 1
    t.set(TOOLS_INDEX, json.dumps(index).encode())
    return t.bytes(), {"digest": desc["digest"], "size": desc["size"]}


def c_size_mismatch_layer():
    t = tools()
    holder = {}

    def edit(m):
        m["layers"][0]["size"] -= 1
        holder["d"] = m["layers"][0]["digest"]
        holder["s"] = m["layers"][0]["size"]

    edit_manifest(t, edit)
    return t.bytes(), {"digest": holder["d"], "size": holder["s"]}


def c_manifest_with_manifests():
    t = tools()

    def edit(m):
        m["manifests"] = []

    hexd = edit_manifest(t, edit)
    return t.bytes(), {"manifest": "sha256:" + hexd}


def c_index_called_manifest():
    t = Tar("multiarch.oci.tar")
    index = t.json("index.json")
    desc = index["manifests"][0]
    desc["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
    t.set("index.json", json.dumps(index).encode())
    return t.bytes(), {"digest": desc["digest"]}


OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def index_of_children(t, children):
    """Points index.json at an image index listing `children` (descriptors) and stores it."""
    doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}
    body = json.dumps(doc, separators=(",", ":")).encode()
    hexd = t.put_blob(body)
    t.set(TOOLS_INDEX, json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": OCI_INDEX, "digest": "sha256:" + hexd, "size": len(body)}]}).encode())
    return hexd


def c_index_same_child_20000():
    # One child named 20,000 times: read once, its platform listed once.
    t = tools()
    desc, _ = tools_manifest(t)
    child = {"mediaType": desc["mediaType"], "digest": desc["digest"], "size": desc["size"],
             "platform": {"os": "linux", "architecture": "amd64"}}
    hexd = index_of_children(t, [child] * 20000)
    return t.bytes(), {"index": "sha256:" + hexd}


def c_index_too_many_manifests():
    t = tools()
    desc, raw = tools_manifest(t)
    children = []
    for i in range(1100):
        m = json.loads(raw)
        m["annotations"] = {"n": str(i)}
        body = json.dumps(m).encode()
        hexd = t.put_blob(body)
        children.append({"mediaType": desc["mediaType"], "digest": "sha256:" + hexd, "size": len(body),
                         "platform": {"os": "linux", "architecture": "amd64"}})
    hexd = index_of_children(t, children)
    return t.bytes(), {"index": "sha256:" + hexd}


def c_duplicate_keys():
    t = tools()
    _, raw = tools_manifest(t)
    m = json.loads(raw)
    # Two `layers` keys: serde_json keeps the last, other parsers the first.
    text = json.dumps(m)
    text = text[:-1] + ', "layers": []}'
    hexd = with_manifest(t, text.encode())
    return t.bytes(), {"manifest": "sha256:" + hexd, "key": "layers"}


def c_deep_json():
    t = tools()
    depth = 100000
    doc = '{"schemaVersion":2,"manifests":' + "[" * depth + "]" * depth + "}"
    t.set(TOOLS_INDEX, doc.encode())
    return t.bytes(), {"entry": "index.json"}


def c_oversized_index():
    t = tools()
    raw = t.get(TOOLS_INDEX)
    t.set(TOOLS_INDEX, raw[:-1] + b" " * (5 * MIB) + raw[-1:])
    return t.bytes(), {"entry": "index.json"}


def c_oversized_manifest():
    t = tools()
    _, raw = tools_manifest(t)
    big = raw.rstrip()[:-1] + b" " * (5 * MIB) + b"}"
    hexd = with_manifest(t, big)
    return t.bytes(), {"manifest": "sha256:" + hexd, "size": len(big)}


def legacy_real_layer(t):
    """The base layer.tar that is a regular file (the other v1 dir holds a symlink to it)."""
    return next(m.name for m, d in t.members if m.name.endswith("/layer.tar") and m.isfile() and m.size > MIB)


def c_diff_id_mismatch():
    t = Tar("legacy-save.tar")
    name = legacy_real_layer(t)
    layer = bytearray(t.get(name))
    with tarfile.open(fileobj=io.BytesIO(bytes(layer))) as inner:
        busybox = inner.getmember("bin/busybox")
        at = busybox.offset_data + busybox.size // 2
    layer[at] ^= 0x01
    t.set(name, bytes(layer))
    # The inner tar is still a valid tar: only file content changed, no header.
    with tarfile.open(fileobj=io.BytesIO(bytes(layer))) as inner:
        assert inner.getmember("bin/busybox").size == busybox.size
    return t.bytes(), {"entry": name}


def c_layer_count_legacy():
    t = Tar("legacy-save.tar")
    entries = t.json("manifest.json")
    web = next(e for e in entries if len(e["Layers"]) == 2)
    web["Layers"] = web["Layers"][:1]
    t.set("manifest.json", json.dumps(entries).encode())
    return t.bytes(), {"config": web["Config"]}


def c_layer_count_oci():
    t = tools()

    def edit(m):
        m["layers"] = m["layers"] * 2

    hexd = edit_manifest(t, edit)
    return t.bytes(), {"manifest": "sha256:" + hexd}


def c_docker25_layers_disagree():
    t = Tar("docker25-save.tar")
    entries = t.json("manifest.json")
    web = next(e for e in entries if len(e["Layers"]) == 2)
    web["Layers"] = list(reversed(web["Layers"]))
    t.set("manifest.json", json.dumps(entries).encode())
    return t.bytes(), {"config": web["Config"]}


def c_docker25_names_disagree():
    # docker load reads RepoTags, containerd reads index.json: one archive, two names.
    t = Tar("docker25-save.tar")
    entries = t.json("manifest.json")
    entries[0]["RepoTags"] = ["example.com/team/evil:1.0"]
    t.set("manifest.json", json.dumps(entries).encode())
    return t.bytes(), {"config": entries[0]["Config"], "tag": "example.com/team/evil:1.0"}


def c_repotags_wrong_digest_pin():
    t = Tar("legacy-save.tar")
    entries = t.json("manifest.json")
    pin = "example.com/team/base@sha256:" + "0" * 64
    entries[0]["RepoTags"] = [pin]
    t.set("manifest.json", json.dumps(entries).encode())
    return t.bytes(), {"pin": "sha256:" + "0" * 64}


def c_ref_name_with_escapes():
    t = tools()
    index = t.json(TOOLS_INDEX)
    index["manifests"][0]["annotations"] = {"org.opencontainers.image.ref.name": "registry.example/x:1\x1b[2J\x1b[31m"}
    t.set(TOOLS_INDEX, json.dumps(index).encode())
    return t.bytes(), {}


def c_docker25_config_disagrees():
    t = Tar("docker25-save.tar")
    entries = t.json("manifest.json")
    # Point the base image at a blob that is in the archive but that no manifest uses as config.
    legacy_json = "blobs/sha256/8145702b5e74e9e86172c22c03ba821be3357c1f4cc955df6c523c3b1fb7d973"
    assert legacy_json in t.names()
    entries[0]["Config"] = legacy_json
    t.set("manifest.json", json.dumps(entries).encode())
    return t.bytes(), {"config": legacy_json}


def c_nameless_docker_archive():
    t = Tar("legacy-save.tar")
    entries = t.json("manifest.json")
    base = next(e for e in entries if len(e["Layers"]) == 1)
    del base["RepoTags"]
    t.set("manifest.json", json.dumps([base]).encode())
    return t.bytes(), {"config": base["Config"]}


def c_nameless_oci_archive():
    t = tools()
    index = t.json(TOOLS_INDEX)
    index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] = "1.36"
    t.set(TOOLS_INDEX, json.dumps(index).encode())
    return t.bytes(), {"ref": "1.36"}


def c_gzip_bomb():
    """An OCI archive whose only layer is gzip of 1 GiB of zeros (about 1 MiB compressed)."""
    total = 1 << 30
    chunk = b"\0" * (4 * MIB)
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    diff = hashlib.sha256()
    out = []
    for _ in range(total // len(chunk)):
        diff.update(chunk)
        out.append(comp.compress(chunk))
    out.append(comp.flush())
    layer = b"".join(out)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + diff.hexdigest()]},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": "sha256:" + sha256(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": "sha256:" + sha256(layer),
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    index = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": "sha256:" + sha256(manifest),
                    "size": len(manifest),
                    "annotations": {"org.opencontainers.image.ref.name": "registry.example/bomb:1"},
                }
            ],
        }
    ).encode()
    body = b""
    for blob in (layer, config, manifest):
        body += entry("blobs/sha256/" + sha256(blob), blob)
    body += entry("index.json", index) + entry("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    return body + b"\0" * 1024, {"compressed": len(layer), "uncompressed": total, "layer": "sha256:" + sha256(layer)}


# ---- bundle cases: tamper with an existing bundle ----


def members_of(data):
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        members = tf.getmembers()
    end = max(m.offset_data + -(-m.size // BLOCK) * BLOCK for m in members)
    return members, end


def largest_blob(members):
    return max((m for m in members if m.name.startswith("blobs/")), key=lambda m: m.size)


def b_flip_blob(data):
    members, _ = members_of(data)
    m = largest_blob(members)
    out = bytearray(data)
    out[m.offset_data + m.size // 2] ^= 0x01
    return bytes(out), {"entry": m.name, "digest": "sha256:" + m.name.rsplit("/", 1)[1]}


def b_flip_index(data):
    members, _ = members_of(data)
    m = members[0]
    assert m.name == "airlock.json"
    text = data[m.offset_data : m.offset_data + m.size]
    at = m.offset_data + text.index(b'"created"') + len(b'"created": "2')
    out = bytearray(data)
    out[at] = ord("1") if out[at] != ord("1") else ord("2")
    return bytes(out), {"entry": m.name}


def b_truncated_mid_blob(data):
    members, _ = members_of(data)
    m = largest_blob(members)
    return data[: m.offset_data + m.size // 2], {"entry": m.name, "digest": "sha256:" + m.name.rsplit("/", 1)[1]}


def last_blob_boundary(data):
    members, _ = members_of(data)
    m = members[-1]
    return m.offset, m


def b_truncated_at_boundary(data):
    cut, m = last_blob_boundary(data)
    return data[:cut], {"missing": m.name, "digest": "sha256:" + m.name.rsplit("/", 1)[1]}


def b_truncated_at_boundary_with_end_marker(data):
    cut, m = last_blob_boundary(data)
    return data[:cut] + b"\0" * 1024, {"missing": m.name, "digest": "sha256:" + m.name.rsplit("/", 1)[1]}


def b_trailing_garbage(data):
    return data + b"GARBAGE\n", {"at": len(data)}


def insert_before_end(data, raw):
    _, end = members_of(data)
    return data[:end] + raw + b"\0" * 1024


def b_extra_entry(data):
    blob = b"not in the signed index\n"
    name = "blobs/sha256/" + sha256(blob)
    return insert_before_end(data, entry(name, blob)), {"entry": name}


def b_duplicate_entry(data):
    members, _ = members_of(data)
    m = members[-1]
    copy_of = data[m.offset : m.offset_data + -(-m.size // BLOCK) * BLOCK]
    return insert_before_end(data, copy_of), {"entry": m.name}


def b_symlink_entry(data):
    name = "blobs/sha256/" + "0" * 64
    return insert_before_end(data, entry(name, b"", kind=tarfile.SYMTYPE, linkname="../../../etc/passwd")), {
        "entry": name
    }


def b_pax_header_entry(data):
    members, _ = members_of(data)
    m = members[-1]
    pax = entry("PaxHeaders/" + m.name.rsplit("/", 1)[1], pax_records([("path", m.name)]), kind=tarfile.XHDTYPE)
    out = data[: m.offset] + pax + data[m.offset :]
    return out, {"entry": "PaxHeaders/" + m.name.rsplit("/", 1)[1], "blob": m.name}


CREATE_CASES = {name[2:].replace("_", "-"): f for name, f in globals().items() if name.startswith("c_")}
BUNDLE_CASES = {"bundle-" + name[2:].replace("_", "-"): f for name, f in globals().items() if name.startswith("b_")}


def maxrss(cmd):
    p = subprocess.run(cmd, capture_output=True)
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    json.dump({"code": p.returncode, "maxrss_kib": rss, "stderr": p.stderr.decode(errors="replace")}, sys.stdout)


def main(argv):
    if len(argv) >= 2 and argv[0] == "maxrss":
        return maxrss(argv[1:])
    if len(argv) == 2 and argv[0] in CREATE_CASES:
        data, info = CREATE_CASES[argv[0]]()
    elif len(argv) == 3 and argv[0] in BUNDLE_CASES:
        with open(argv[2], "rb") as f:
            data, info = BUNDLE_CASES[argv[0]](f.read())
    else:
        cases = " ".join(sorted(CREATE_CASES) + sorted(BUNDLE_CASES))
        sys.exit(f"usage: hostile.py CASE OUT [IN] | maxrss CMD...\ncases: {cases}")
    with open(argv[1], "wb") as f:
        f.write(data)
    json.dump(info, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1:])
