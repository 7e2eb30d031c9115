//! The client side of `airlock serve`: what docker, containerd, podman (and CRI-O) and a
//! Kubernetes node need in their configuration to pull from this server, printed by
//! `--print-config`. Images keep their names: containerd's `hosts.toml` and podman's
//! `registries.conf` send pulls of `registry.example/team/app` here, under the registry host as
//! the first path component (or without it, `--drop-registry-host`).
//!
//! Each file is printed after a line `# file: PATH`, so the output can be split into files as is.

use std::fmt::Write;

use crate::reference::DOCKER_HUB;
use crate::serve::content::{Naming, host_component};

/// A client whose configuration can be printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    Docker,
    Containerd,
    Podman,
    K8s,
}

impl Client {
    pub fn parse(name: &str) -> Option<Client> {
        Some(match name {
            "docker" => Client::Docker,
            "containerd" => Client::Containerd,
            "podman" => Client::Podman,
            "k8s" => Client::K8s,
            _ => return None,
        })
    }
}

/// This server as clients reach it.
pub struct Server {
    /// `host:port` clients connect to.
    pub address: String,
    pub https: bool,
    /// Whether clients need a CA (a `--self-signed` one, or one behind `--tls-cert`).
    pub private_ca: bool,
    pub naming: Naming,
    /// The original registry hosts of the served images (`docker.io`, `registry.example`).
    pub registries: Vec<String>,
}

/// The configuration `client` needs for `server`.
pub fn snippet(client: Client, server: &Server) -> String {
    match client {
        Client::Docker => docker(server),
        Client::Containerd => containerd(server),
        Client::Podman => podman(server),
        Client::K8s => format!(
            "# Kubernetes pulls through each node's container runtime; image names stay as they are.\n\
             # containerd nodes: in /etc/containerd/config.toml,\n\
             #   [plugins.\"io.containerd.grpc.v1.cri\".registry] config_path = \"/etc/containerd/certs.d\"\n\
             # and these files on every node:\n{}\n# CRI-O nodes: these files on every node:\n{}",
            containerd(server),
            podman(server)
        ),
    }
}

fn scheme(server: &Server) -> &'static str {
    if server.https { "https" } else { "http" }
}

/// Where a registry's pulls go on this server: its repositories live under the host, or at the root.
fn mirror_path(server: &Server, registry: &str) -> String {
    match server.naming {
        Naming::KeepHost => format!("{}/{}", server.address, host_component(registry)),
        Naming::DropHost => server.address.clone(),
    }
}

fn containerd(server: &Server) -> String {
    let mut out = String::new();
    for r in &server.registries {
        let upstream = if r == DOCKER_HUB { "registry-1.docker.io" } else { r.as_str() };
        let dir = format!("/etc/containerd/certs.d/{r}");
        let _ = writeln!(out, "# file: {dir}/hosts.toml\nserver = \"https://{upstream}\"\n");
        let url = match server.naming {
            Naming::KeepHost => format!("{}://{}/v2/{}", scheme(server), server.address, host_component(r)),
            Naming::DropHost => format!("{}://{}", scheme(server), server.address),
        };
        let _ = writeln!(out, "[host.\"{url}\"]\n  capabilities = [\"pull\", \"resolve\"]");
        if server.naming == Naming::KeepHost {
            out.push_str("  override_path = true\n");
        }
        if server.private_ca {
            let _ = writeln!(out, "  ca = \"{dir}/ca.crt\"   # the CA of this server's certificate");
        }
        out.push('\n');
    }
    out
}

fn podman(server: &Server) -> String {
    let mut out = String::from("# file: /etc/containers/registries.conf.d/airlock.conf\n");
    for r in &server.registries {
        let _ = writeln!(out, "[[registry]]\nprefix = \"{r}\"\nlocation = \"{r}\"\n");
        let _ = writeln!(out, "[[registry.mirror]]\nlocation = \"{}\"", mirror_path(server, r));
        if !server.https {
            out.push_str("insecure = true\n");
        }
        out.push('\n');
    }
    if server.private_ca {
        let _ = writeln!(
            out,
            "# and the CA of this server's certificate in /etc/containers/certs.d/{}/ca.crt",
            server.address
        );
    }
    out
}

fn docker(server: &Server) -> String {
    let mut out = String::new();
    let mut fields = Vec::new();
    if !server.https {
        fields.push(format!("  \"insecure-registries\": [\"{}\"]", server.address));
    }
    let hub = server.registries.iter().any(|r| r == DOCKER_HUB);
    if hub && server.naming == Naming::DropHost {
        fields.push(format!("  \"registry-mirrors\": [\"{}://{}\"]", scheme(server), server.address));
    }
    if !fields.is_empty() {
        out.push_str("# file: /etc/docker/daemon.json (merge with what is there; then restart dockerd)\n");
        let _ = writeln!(out, "{{\n{}\n}}", fields.join(",\n"));
    }
    if server.private_ca {
        let _ =
            writeln!(out, "# and the CA of this server's certificate in /etc/docker/certs.d/{}/ca.crt", server.address);
    }
    let _ = writeln!(out, "# docker mirrors Docker Hub only; pull other images by this server's name:");
    for r in server.registries.iter().filter(|r| !(hub && server.naming == Naming::DropHost && *r == DOCKER_HUB)) {
        let _ = writeln!(out, "#   docker pull {}/<repository>:<tag>   (images of {r})", mirror_path(server, r));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(naming: Naming, https: bool) -> Server {
        Server {
            address: "mirror.lan:5000".into(),
            https,
            private_ca: https,
            naming,
            registries: vec!["docker.io".into(), "registry.example".into()],
        }
    }

    #[test]
    fn containerd_hosts_keep_the_registry_as_a_path_unless_it_is_dropped() {
        let kept = snippet(Client::Containerd, &server(Naming::KeepHost, true));
        assert!(kept.contains(
            "# file: /etc/containerd/certs.d/docker.io/hosts.toml\nserver = \"https://registry-1.docker.io\""
        ));
        assert!(kept.contains("[host.\"https://mirror.lan:5000/v2/registry.example\"]\n  capabilities = [\"pull\", \"resolve\"]\n  override_path = true\n  ca = "));
        let dropped = snippet(Client::Containerd, &server(Naming::DropHost, false));
        assert!(
            dropped.contains("[host.\"http://mirror.lan:5000\"]\n  capabilities = [\"pull\", \"resolve\"]\n\n"),
            "{dropped}"
        );
    }

    #[test]
    fn podman_and_docker_snippets_name_the_mirror() {
        let p = snippet(Client::Podman, &server(Naming::KeepHost, false));
        assert!(
            p.contains("[[registry.mirror]]\nlocation = \"mirror.lan:5000/registry.example\"\ninsecure = true"),
            "{p}"
        );
        let d = snippet(Client::Docker, &server(Naming::DropHost, false));
        assert!(
            d.contains(
                "\"insecure-registries\": [\"mirror.lan:5000\"],\n  \"registry-mirrors\": [\"http://mirror.lan:5000\"]"
            ),
            "{d}"
        );
        let json: String = d.lines().filter(|l| !l.starts_with('#')).collect();
        serde_json::from_str::<serde_json::Value>(&json).expect("daemon.json is JSON");
    }
}
