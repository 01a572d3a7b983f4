//! Test hosts in Linux network namespaces, joined by a bridge, with real network partitions.
//!
//! A [`Testbed`] makes one namespace per host (`alb-<pid>n<k>-<host>`) and one "switch"
//! namespace (`alb-<pid>n<k>-sw`) holding a bridge. Each host has a veth pair: `eth0` inside the
//! host, its other end (`p<index>`) enslaved to the bridge in the switch. Nothing is created in
//! the root namespace, so the machine's real network is never touched, and the private subnet
//! 10.<x>.<y>.0/24 is only routable inside the testbed.
//!
//! Partitions are nftables rules in the switch's `bridge` family `forward` hook that DROP every
//! frame (IP and ARP alike) from one group's ports to another's: packets vanish, as on a real
//! partition, rather than being refused, so the programs under test must find out through their
//! own deadlines and keep-alives. Healing flushes the rules.
//!
//! Dropping the testbed deletes every namespace it made (the veths and nftables rules go with
//! them), also while unwinding from a panic. Namespaces left by a test process that was killed
//! (its pid no longer alive) are swept when the next testbed is made.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, bail};

/// The nftables table and chain a testbed's partitions live in (inside its switch namespace).
const TABLE: &str = "albatross";
const CHAIN: &str = "forward";

#[derive(Debug)]
struct Host {
    name: String,
    /// The host's namespace.
    ns: String,
    /// The bridge port (outer veth end) in the switch namespace.
    port: String,
    addr: Ipv4Addr,
}

/// Hosts in network namespaces on one private bridge; see the module documentation.
#[derive(Debug)]
pub struct Testbed {
    prefix: String,
    switch: String,
    hosts: Vec<Host>,
    /// Namespaces this testbed created, deleted (in reverse) on drop.
    created: Vec<String>,
}

impl Testbed {
    /// Makes a namespace for each of `hosts` (names of ASCII letters, digits, `-` and `_`) and
    /// the switch that connects them, all reachable from one another.
    ///
    /// # Errors
    /// When not root, when `ip` or `nft` is missing and cannot be installed, or when a command
    /// fails (the error names it and its stderr). What was made so far is deleted again.
    pub fn new(hosts: &[&str]) -> anyhow::Result<Self> {
        preflight()?;
        validate_names(hosts)?;
        sweep_stale();
        // Unique per process (pid) and per testbed within it (counter), so parallel test
        // processes and successive tests never share a namespace name.
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let prefix = format!("alb-{pid}n{k}");
        // The subnet only exists inside the testbed; varying it keeps addresses in logs of
        // different runs apart.
        let (x, y) = (200 + k % 50, pid % 256);
        let mut bed =
            Self { switch: format!("{prefix}-sw"), prefix, hosts: Vec::new(), created: Vec::new() };
        for (i, name) in hosts.iter().enumerate() {
            let n = u8::try_from(i + 1).context("too many hosts")?;
            bed.hosts.push(Host {
                name: (*name).to_owned(),
                ns: format!("{}-{name}", bed.prefix),
                port: format!("p{i}"),
                addr: Ipv4Addr::new(10, u8::try_from(x)?, u8::try_from(y)?, n),
            });
        }
        // On error `bed` is dropped, which deletes whatever was created.
        bed.build()?;
        tracing::info!(prefix = %bed.prefix, hosts = ?hosts, "testbed ready");
        Ok(bed)
    }

    fn build(&mut self) -> anyhow::Result<()> {
        let sw = self.switch.clone();
        self.add_namespace(&sw)?;
        ip(&["-n", &sw, "link", "set", "lo", "up"])?;
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &sw, "link", "set", "br0", "up"])?;
        let hosts: Vec<(String, String, Ipv4Addr)> =
            self.hosts.iter().map(|h| (h.ns.clone(), h.port.clone(), h.addr)).collect();
        for (ns, port, addr) in hosts {
            self.add_namespace(&ns)?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            // Created inside the switch with the peer moved straight into the host: neither end
            // ever exists in the root namespace.
            ip(&[
                "-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ])?;
            ip(&["-n", &sw, "link", "set", &port, "master", "br0"])?;
            ip(&["-n", &sw, "link", "set", &port, "up"])?;
            ip(&["-n", &ns, "addr", "add", &format!("{addr}/24"), "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        }
        // Policy accept: with no rules the switch forwards everything (healed).
        let table = format!(
            "table bridge {TABLE} {{\n  chain {CHAIN} {{\n    type filter hook forward priority 0; policy accept;\n  }}\n}}\n"
        );
        nft(&sw, &table)?;
        Ok(())
    }

    fn add_namespace(&mut self, ns: &str) -> anyhow::Result<()> {
        ip(&["netns", "add", ns]).map_err(|e| {
            e.context(format!(
                "cannot create network namespace {ns}: the partition tests need root \
                 (CAP_SYS_ADMIN and CAP_NET_ADMIN) and a kernel with network namespaces"
            ))
        })?;
        self.created.push(ns.to_owned());
        Ok(())
    }

    fn host(&self, name: &str) -> anyhow::Result<&Host> {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .with_context(|| format!("no host {name:?} in the testbed {}", self.prefix))
    }

    /// The address of `host` (on its `eth0`).
    ///
    /// # Panics
    /// When the testbed has no such host (a bug in the test).
    pub fn addr(&self, host: &str) -> Ipv4Addr {
        match self.host(host) {
            Ok(h) => h.addr,
            Err(e) => panic!("{e:#}"),
        }
    }

    /// The namespace of `host`.
    ///
    /// # Panics
    /// When the testbed has no such host (a bug in the test).
    pub fn namespace(&self, host: &str) -> &str {
        match self.host(host) {
            Ok(h) => &h.ns,
            Err(e) => panic!("{e:#}"),
        }
    }

    /// A command running `program` inside `host`'s namespace (`ip netns exec NS program`;
    /// `ip` execs the program, so the child's pid is the program's and signals reach it).
    pub fn command(&self, host: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.namespace(host)]).arg(program);
        cmd
    }

    /// `command` moved into `host`'s namespace: same program, arguments, environment and
    /// working directory. Stdio is not copied (`Command` does not expose it): set it after.
    pub fn wrap(&self, host: &str, command: &Command) -> Command {
        let mut cmd = self.command(host, command.get_program());
        cmd.args(command.get_args());
        for (key, value) in command.get_envs() {
            match value {
                Some(v) => cmd.env(key, v),
                None => cmd.env_remove(key),
            };
        }
        if let Some(dir) = command.get_current_dir() {
            cmd.current_dir(dir);
        }
        cmd
    }

    /// Cuts the network between groups: every frame from a host in one group to a host in
    /// another is dropped by the switch. Every host must be in exactly one group. Replaces any
    /// earlier partition.
    ///
    /// # Errors
    /// When a host is unknown, missing or named twice, or `nft` fails.
    pub fn partition(&self, groups: &[&[&str]]) -> anyhow::Result<()> {
        let mut group_of = vec![None; self.hosts.len()];
        for (g, members) in groups.iter().enumerate() {
            for name in *members {
                let i = self
                    .hosts
                    .iter()
                    .position(|h| h.name == *name)
                    .with_context(|| format!("partition names an unknown host {name:?}"))?;
                if group_of[i].replace(g).is_some() {
                    bail!("partition names host {name:?} twice");
                }
            }
        }
        if let Some(i) = group_of.iter().position(Option::is_none) {
            bail!("partition leaves host {:?} out of every group", self.hosts[i].name);
        }
        // One atomic nft transaction: flush, then one drop rule per ordered pair of ports in
        // different groups (the switch never sees a frame between two hosts it should pass).
        let mut script = format!("flush chain bridge {TABLE} {CHAIN}\n");
        for (a, ga) in self.hosts.iter().zip(&group_of) {
            for (b, gb) in self.hosts.iter().zip(&group_of) {
                if ga != gb {
                    script.push_str(&format!(
                        "add rule bridge {TABLE} {CHAIN} iifname \"{}\" oifname \"{}\" drop\n",
                        a.port, b.port
                    ));
                }
            }
        }
        nft(&self.switch, &script)?;
        tracing::info!(prefix = %self.prefix, groups = ?groups, "partitioned");
        Ok(())
    }

    /// Cuts `host` off from every other host.
    ///
    /// # Errors
    /// As [`Testbed::partition`].
    pub fn isolate(&self, host: &str) -> anyhow::Result<()> {
        self.host(host)?;
        let rest: Vec<&str> =
            self.hosts.iter().map(|h| h.name.as_str()).filter(|n| *n != host).collect();
        self.partition(&[&[host], &rest])
    }

    /// Removes every partition: all hosts reach one another again.
    ///
    /// # Errors
    /// When `nft` fails.
    pub fn heal(&self) -> anyhow::Result<()> {
        nft(&self.switch, &format!("flush chain bridge {TABLE} {CHAIN}\n"))?;
        tracing::info!(prefix = %self.prefix, "healed");
        Ok(())
    }

    /// The switch's current nftables rules (for diagnostics).
    ///
    /// # Errors
    /// When `nft` fails.
    pub fn rules(&self) -> anyhow::Result<String> {
        run(
            Command::new("ip").args(["netns", "exec", &self.switch, "nft", "list", "ruleset"]),
            None,
        )
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        // Deleting a namespace destroys its veth ends and nftables rules with it. A process
        // still inside keeps the namespace alive until it exits, but the name is gone at once.
        for ns in self.created.iter().rev() {
            if let Err(e) = ip(&["netns", "delete", ns]) {
                tracing::warn!(%ns, error = %format!("{e:#}"), "cannot delete a test namespace");
            }
        }
    }
}

fn validate_names(hosts: &[&str]) -> anyhow::Result<()> {
    if hosts.is_empty() || hosts.len() > 250 {
        bail!("a testbed has 1 to 250 hosts, not {}", hosts.len());
    }
    for (i, h) in hosts.iter().enumerate() {
        let ok = !h.is_empty()
            && h.len() <= 32
            && *h != "sw"
            && h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            bail!("bad host name {h:?}: 1 to 32 of [A-Za-z0-9_-], not \"sw\"");
        }
        if hosts[..i].contains(h) {
            bail!("host {h:?} named twice");
        }
    }
    Ok(())
}

/// Root, `ip` and `nft` are there (installing nftables when missing, once per process).
fn preflight() -> anyhow::Result<()> {
    if !nix::unistd::Uid::effective().is_root() {
        bail!(
            "network-partition tests need root (CAP_SYS_ADMIN and CAP_NET_ADMIN to create network \
             namespaces and nftables rules); this process runs as uid {}",
            nix::unistd::Uid::effective()
        );
    }
    run(Command::new("ip").arg("-V"), None)
        .context("iproute2's `ip` is needed to create network namespaces")?;
    static NFT: OnceLock<Result<(), String>> = OnceLock::new();
    NFT.get_or_init(|| ensure_nft().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn ensure_nft() -> anyhow::Result<()> {
    if run(Command::new("nft").arg("--version"), None).is_ok() {
        return Ok(());
    }
    tracing::info!("nft is missing; installing nftables");
    let install = || {
        run(
            Command::new("apt-get")
                .args(["install", "-y", "--no-install-recommends", "nftables"])
                .env("DEBIAN_FRONTEND", "noninteractive"),
            None,
        )
    };
    if install().is_err() {
        // A fresh machine may not have package lists yet.
        run(Command::new("apt-get").arg("update").env("DEBIAN_FRONTEND", "noninteractive"), None)
            .context("nft is missing and `apt-get update` failed")?;
        install().context("nft is missing and `apt-get install nftables` failed")?;
    }
    run(Command::new("nft").arg("--version"), None)
        .context("nftables was installed but `nft` does not run")?;
    Ok(())
}

/// Deletes `alb-<pid>n…` namespaces whose creating process is gone (a test that was killed
/// before its testbed's `Drop` could run).
fn sweep_stale() {
    let Ok(list) = run(Command::new("ip").args(["netns", "list"]), None) else { return };
    for line in list.lines() {
        let Some(name) = line.split_whitespace().next() else { continue };
        let Some(rest) = name.strip_prefix("alb-") else { continue };
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if digits.is_empty() || !rest[digits.len()..].starts_with('n') {
            continue;
        }
        if std::path::Path::new("/proc").join(&digits).exists() {
            continue;
        }
        match ip(&["netns", "delete", name]) {
            Ok(_) => tracing::info!(ns = name, "deleted a stale test namespace"),
            Err(e) => tracing::warn!(ns = name, error = %format!("{e:#}"), "stale namespace"),
        }
    }
}

fn ip(args: &[&str]) -> anyhow::Result<String> {
    run(Command::new("ip").args(args), None)
}

/// Runs the nftables `script` inside namespace `ns` as one transaction.
fn nft(ns: &str, script: &str) -> anyhow::Result<String> {
    run(Command::new("ip").args(["netns", "exec", ns, "nft", "-f", "-"]), Some(script))
        .with_context(|| format!("nft script:\n{script}"))
}

/// Runs `cmd` to completion; an error names the command, its exit status and its stderr.
fn run(cmd: &mut Command, stdin: Option<&str>) -> anyhow::Result<String> {
    let shown = format!("{cmd:?}");
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("cannot run {shown}"))?;
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().context("invariant: stdin is piped")?;
        pipe.write_all(text.as_bytes()).with_context(|| format!("cannot feed {shown}"))?;
    }
    let out = child.wait_with_output().with_context(|| format!("cannot wait for {shown}"))?;
    if !out.status.success() {
        bail!("{shown} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
