//! The programs other than msgsplice that some sections measure against or
//! read with (iperf3, `nfs-cat`, nfs-ganesha), installed on demand.
//!
//! Each section names its [`Peer`]s ([`super::Section::peers`]); before the
//! timed parts, [`ensure`] looks once for every peer of the chosen
//! sections. A missing one is installed with apt-get when that can work
//! (root, on Debian, no `--no-install`), saying so in one line on stderr;
//! otherwise a line says exactly how to install it, and the sections run
//! either way (a section without its peer says so in its table).
//!
//! The choice ([`decide`]) depends only on [`Host`], so it is tested
//! without running apt; the apt-get calls go through [`Apt`].

use std::path::Path;
use std::process::{Command, Stdio};

/// A program a section uses, and the Debian package that has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The Debian package.
    pub package: &'static str,
    /// How to tell it is installed.
    pub probe: Probe,
    /// What it is for, as in "for the tcp section's reference peer".
    pub role: &'static str,
}

/// How to tell that a peer is installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// A program by this name on `PATH` (or in /usr/sbin, /sbin).
    Program(&'static str),
    /// A Debian package in state "install ok installed" (for packages
    /// without a program of their own, such as a plug-in).
    Package,
}

/// iperf3: the `tcp` section's throughput reference.
pub const IPERF3: Peer = Peer {
    package: "iperf3",
    probe: Probe::Program("iperf3"),
    role: "the tcp section's reference peer",
};
/// `nfs-cat`: the `nfs` section's client.
pub const LIBNFS_UTILS: Peer = Peer {
    package: "libnfs-utils",
    probe: Probe::Program("nfs-cat"),
    role: "the nfs section's client (nfs-cat)",
};
/// nfs-ganesha: a server the `nfs` section compares with.
pub const GANESHA: Peer = Peer {
    package: "nfs-ganesha",
    probe: Probe::Program("ganesha.nfsd"),
    role: "the nfs section's ganesha server",
};
/// The FSAL that lets ganesha export a local directory.
pub const GANESHA_VFS: Peer = Peer {
    package: "nfs-ganesha-vfs",
    probe: Probe::Package,
    role: "the nfs section's ganesha server (its VFS backend)",
};
/// rpcbind: ganesha will not start without a portmapper.
pub const RPCBIND: Peer = Peer {
    package: "rpcbind",
    probe: Probe::Program("rpcbind"),
    role: "the nfs section's ganesha server (its portmapper)",
};

/// What decides whether a missing peer can be installed here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Host {
    /// Running as root.
    pub root: bool,
    /// apt-get and dpkg are here (Debian or a derivative).
    pub apt: bool,
}

impl Host {
    /// This machine.
    pub fn current() -> Host {
        Host {
            root: rustix::process::geteuid().is_root(),
            apt: find_program("apt-get").is_some() && find_program("dpkg-query").is_some(),
        }
    }
}

/// What to do about one peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// It is installed: nothing.
    Ready,
    /// Install it with apt-get.
    Install,
    /// Leave it missing, and say this (how to install it, and why the
    /// bench did not).
    Advise(String),
}

/// The apt-get command that installs `packages`.
pub fn install_command(packages: &[&str]) -> String {
    format!(
        "apt-get install -y --no-install-recommends {}",
        packages.join(" ")
    )
}

/// What to do about `peer`, `present` or not, on `host`, with or without
/// `--no-install`.
pub fn decide(peer: &Peer, present: bool, host: Host, no_install: bool) -> Action {
    if present {
        return Action::Ready;
    }
    let cmd = install_command(&[peer.package]);
    let missing = format!(
        "{} (Debian package {}) is missing for {}",
        peer.probe_name(),
        peer.package,
        peer.role
    );
    match (host.apt, host.root, no_install) {
        (false, _, _) => Action::Advise(format!(
            "{missing}: install the package {} with this system's package manager \
             (on Debian: {cmd})",
            peer.package
        )),
        (true, false, _) => Action::Advise(format!(
            "{missing}: install it as root with `{cmd}`, or run the bench as root \
             to have it installed"
        )),
        (true, true, true) => Action::Advise(format!(
            "{missing}, and --no-install forbids installing it: install it with `{cmd}`"
        )),
        (true, true, false) => Action::Install,
    }
}

impl Peer {
    /// The name to speak of: its program, or its package.
    pub fn probe_name(&self) -> &'static str {
        match self.probe {
            Probe::Program(p) => p,
            Probe::Package => self.package,
        }
    }

    /// True if it is installed here.
    pub fn present(&self) -> bool {
        match self.probe {
            Probe::Program(p) => find_program(p).is_some(),
            Probe::Package => package_installed(self.package),
        }
    }

    /// Why it is missing and how to install it, for a section's skip line
    /// (the same text [`ensure`] printed).
    pub fn advice(&self, no_install: bool) -> String {
        match decide(self, false, Host::current(), no_install) {
            Action::Advise(why) => why,
            // Installing was tried and failed, or it was removed since.
            _ => format!(
                "{} (Debian package {}) is missing: install it with `{}`",
                self.probe_name(),
                self.package,
                install_command(&[self.package])
            ),
        }
    }
}

/// The program `name` on `PATH`, or in the system directories that a
/// non-login shell's `PATH` may lack (daemons such as rpcbind live there).
pub fn find_program(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(Into::into))
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// True if dpkg says `package` is installed.
fn package_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("ok installed"))
}

/// The apt-get calls, behind a trait so that the order of calls is tested
/// without running apt.
pub trait Apt {
    /// True if the package lists were never downloaded.
    fn lists_empty(&self) -> bool;
    /// `apt-get update`.
    fn update(&mut self) -> Result<(), String>;
    /// `apt-get install -y --no-install-recommends PACKAGES`.
    fn install(&mut self, packages: &[&str]) -> Result<(), String>;
}

/// Installs `packages`: `apt-get update` first if the lists were never
/// downloaded, or once after a failed install (stale lists), then install.
pub fn install_with(apt: &mut dyn Apt, packages: &[&str]) -> Result<(), String> {
    let mut updated = false;
    if apt.lists_empty() {
        apt.update()?;
        updated = true;
    }
    match apt.install(packages) {
        Ok(()) => Ok(()),
        Err(_) if !updated => {
            apt.update()?;
            apt.install(packages)
        }
        Err(e) => Err(e),
    }
}

/// The system's apt-get, run non-interactively, with a `policy-rc.d` that
/// forbids starting services while it runs (a system rpcbind left running
/// would hold port 111 that the nfs section's own portmapper wants).
pub struct SystemApt;

/// Where Debian's maintainer scripts look for the service policy.
const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

impl SystemApt {
    fn run(&self, args: &[&str]) -> Result<(), String> {
        let out = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run apt-get: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().rev().find(|l| !l.trim().is_empty());
        Err(format!(
            "apt-get {} failed ({}): {}",
            args.join(" "),
            out.status,
            last.unwrap_or("").trim()
        ))
    }
}

impl Apt for SystemApt {
    fn lists_empty(&self) -> bool {
        std::fs::read_dir("/var/lib/apt/lists").map_or(true, |d| {
            !d.flatten()
                .any(|e| e.file_name().to_string_lossy().contains("_Packages"))
        })
    }

    fn update(&mut self) -> Result<(), String> {
        self.run(&["update", "-qq"])
    }

    fn install(&mut self, packages: &[&str]) -> Result<(), String> {
        let _policy = NoServiceStarts::install();
        let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
        args.extend_from_slice(packages);
        self.run(&args)
    }
}

/// A `policy-rc.d` that answers "not allowed" (101) to every service
/// start, removed on drop; none is written if one is there already.
struct NoServiceStarts(bool);

impl NoServiceStarts {
    fn install() -> NoServiceStarts {
        use std::os::unix::fs::PermissionsExt;
        if Path::new(POLICY_RC_D).exists() {
            return NoServiceStarts(false);
        }
        let ours = std::fs::write(POLICY_RC_D, "#!/bin/sh\nexit 101\n").is_ok()
            && std::fs::set_permissions(POLICY_RC_D, std::fs::Permissions::from_mode(0o755))
                .is_ok();
        NoServiceStarts(ours)
    }
}

impl Drop for NoServiceStarts {
    fn drop(&mut self) {
        if self.0 {
            let _ = std::fs::remove_file(POLICY_RC_D);
        }
    }
}

/// Looks for every peer in `peers` once (duplicates are looked for once),
/// installs the missing ones when it may, and prints one line per peer it
/// installs or leaves missing through `say`. Returns the peers still
/// missing.
pub fn ensure(peers: &[Peer], no_install: bool, say: &mut dyn FnMut(String)) -> Vec<Peer> {
    let mut unique: Vec<Peer> = Vec::new();
    for p in peers {
        if !unique.iter().any(|u| u.package == p.package) {
            unique.push(*p);
        }
    }
    let host = Host::current();
    let present: Vec<bool> = unique.iter().map(Peer::present).collect();
    ensure_with(&unique, &present, host, no_install, &mut SystemApt, say)
}

/// [`ensure`] on an injected host and apt.
pub fn ensure_with(
    peers: &[Peer],
    present: &[bool],
    host: Host,
    no_install: bool,
    apt: &mut dyn Apt,
    say: &mut dyn FnMut(String),
) -> Vec<Peer> {
    let mut missing = Vec::new();
    let mut install = Vec::new();
    for (p, &here) in peers.iter().zip(present) {
        match decide(p, here, host, no_install) {
            Action::Ready => {}
            Action::Install => install.push(*p),
            Action::Advise(line) => {
                say(line);
                missing.push(*p);
            }
        }
    }
    if install.is_empty() {
        return missing;
    }
    for p in &install {
        say(format!(
            "installing {} (Debian package {}) for {}",
            p.probe_name(),
            p.package,
            p.role
        ));
    }
    let packages: Vec<&str> = install.iter().map(|p| p.package).collect();
    if let Err(e) = install_with(apt, &packages) {
        say(format!(
            "{e}; the sections that need {} run without them",
            packages.join(", ")
        ));
        missing.extend(install);
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT_DEBIAN: Host = Host {
        root: true,
        apt: true,
    };

    #[test]
    fn present_peers_need_nothing() {
        for host in [
            ROOT_DEBIAN,
            Host {
                root: false,
                apt: false,
            },
        ] {
            assert_eq!(decide(&IPERF3, true, host, false), Action::Ready);
            assert_eq!(decide(&IPERF3, true, host, true), Action::Ready);
        }
    }

    #[test]
    fn root_on_debian_installs() {
        assert_eq!(decide(&IPERF3, false, ROOT_DEBIAN, false), Action::Install);
    }

    #[test]
    fn no_install_says_the_command() {
        let Action::Advise(line) = decide(&LIBNFS_UTILS, false, ROOT_DEBIAN, true) else {
            panic!("--no-install must not install");
        };
        assert!(line.contains("--no-install"), "{line}");
        assert!(
            line.contains("apt-get install -y --no-install-recommends libnfs-utils"),
            "{line}"
        );
        assert!(line.contains("nfs-cat"), "{line}");
    }

    #[test]
    fn not_root_says_the_command() {
        let host = Host {
            root: false,
            apt: true,
        };
        for no_install in [false, true] {
            let Action::Advise(line) = decide(&IPERF3, false, host, no_install) else {
                panic!("not root: cannot install");
            };
            assert!(line.contains("as root"), "{line}");
            assert!(
                line.contains("apt-get install -y --no-install-recommends iperf3"),
                "{line}"
            );
        }
    }

    #[test]
    fn not_debian_names_the_package() {
        let host = Host {
            root: true,
            apt: false,
        };
        let Action::Advise(line) = decide(&GANESHA_VFS, false, host, false) else {
            panic!("no apt: cannot install");
        };
        assert!(line.contains("package manager"), "{line}");
        assert!(line.contains("nfs-ganesha-vfs"), "{line}");
    }

    /// Records the calls; `fail_first_install` makes the first install
    /// fail, as with stale lists.
    #[derive(Default)]
    struct FakeApt {
        empty: bool,
        fail_first_install: bool,
        calls: Vec<String>,
    }

    impl Apt for FakeApt {
        fn lists_empty(&self) -> bool {
            self.empty
        }
        fn update(&mut self) -> Result<(), String> {
            self.calls.push("update".into());
            Ok(())
        }
        fn install(&mut self, packages: &[&str]) -> Result<(), String> {
            self.calls.push(format!("install {}", packages.join(" ")));
            if self.fail_first_install && self.calls.len() == 1 {
                return Err("404".into());
            }
            Ok(())
        }
    }

    #[test]
    fn update_only_when_needed() {
        let mut apt = FakeApt::default();
        install_with(&mut apt, &["iperf3"]).unwrap();
        assert_eq!(apt.calls, ["install iperf3"]);
        let mut apt = FakeApt {
            empty: true,
            ..FakeApt::default()
        };
        install_with(&mut apt, &["iperf3"]).unwrap();
        assert_eq!(apt.calls, ["update", "install iperf3"]);
        let mut apt = FakeApt {
            fail_first_install: true,
            ..FakeApt::default()
        };
        install_with(&mut apt, &["iperf3"]).unwrap();
        assert_eq!(apt.calls, ["install iperf3", "update", "install iperf3"]);
    }

    #[test]
    fn ensure_installs_the_missing_in_one_call_and_says_so() {
        let mut apt = FakeApt::default();
        let mut lines = Vec::new();
        let missing = ensure_with(
            &[IPERF3, LIBNFS_UTILS, GANESHA],
            &[false, true, false],
            ROOT_DEBIAN,
            false,
            &mut apt,
            &mut |l| lines.push(l),
        );
        assert!(missing.is_empty());
        assert_eq!(apt.calls, ["install iperf3 nfs-ganesha"]);
        assert_eq!(
            lines[0],
            "installing iperf3 (Debian package iperf3) for the tcp section's reference peer"
        );
        assert_eq!(lines.len(), 2);
    }

    #[test]
    fn ensure_with_no_install_runs_no_apt() {
        let mut apt = FakeApt::default();
        let mut lines = Vec::new();
        let missing = ensure_with(
            &[IPERF3, LIBNFS_UTILS],
            &[false, false],
            ROOT_DEBIAN,
            true,
            &mut apt,
            &mut |l| lines.push(l),
        );
        assert_eq!(missing, [IPERF3, LIBNFS_UTILS]);
        assert!(apt.calls.is_empty());
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|l| l.contains("apt-get install")));
    }
}
