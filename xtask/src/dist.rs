//! `cargo xtask dist`: the Debian package and a tar.gz of the same, in
//! `target/dist/`. The package is built with Debian's own `dpkg-deb` from a
//! staged tree (the files and modes below, and `deploy/debian/`'s maintainer
//! scripts), so what the tests inspect with `dpkg-deb` is exactly what ships.

use std::path::{Path, PathBuf};

use crate::{build_ui, cmd, root, setup, status};

/// The package's version: the workspace's, Debian revision 1.
pub fn version() -> String {
    format!("{}-1", env!("CARGO_PKG_VERSION"))
}

fn arch() -> String {
    std::process::Command::new("dpkg")
        .arg("--print-architecture")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "amd64".into())
}

/// Writes a file of the staged tree with its mode, making its folder.
fn put(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let fail = |e: std::io::Error| format!("{}: {e}", path.display());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    std::fs::write(path, bytes).map_err(fail)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(fail)
}

fn write(path: &Path, text: &str, mode: u32) -> Result<(), String> {
    put(path, text.as_bytes(), mode)
}

fn copy(from: &Path, to: &Path, mode: u32) -> Result<(), String> {
    let bytes = std::fs::read(from).map_err(|e| format!("{}: {e}", from.display()))?;
    put(to, &bytes, mode)
}

fn control(arch: &str, installed_kib: u64) -> String {
    format!(
        "Package: mailroom
Version: {}
Architecture: {arch}
Maintainer: Mailroom developers <mailroom@example.org>
Installed-Size: {installed_kib}
Depends: adduser, libc6 (>= 2.31)
Section: mail
Priority: optional
Description: outgoing email gateway for Office 365 OAuth, SMTP and Microsoft Graph
 Mailroom lets an administrator configure, test and save the organisation's
 outgoing email server (Office 365 with OAuth 2.0 client credentials and
 certificates, Microsoft Graph, or any SMTP provider), then takes mail from
 apps, devices and scripts over an HTTP API, an SMTP relay and a sendmail
 drop-in, queues it durably and delivers it, explaining every failure with
 the exact fix. Alerts go to webhooks (Teams, Slack, any receiver) and
 Prometheus.
",
        version()
    )
}

/// The installed size: every file but the package's own `DEBIAN/`.
fn du_kib(dir: &Path) -> u64 {
    walk(dir)
        .iter()
        .filter(|p| !p.starts_with(dir.join("DEBIAN")))
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len().div_ceil(1024))
        .sum()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Builds the binary (release, or the dev build the tests already made),
/// then `target/dist/mailroom_<version>_<arch>.deb` and the tar.gz.
pub fn dist(debug: bool) -> Result<(PathBuf, PathBuf), String> {
    setup(false)?;
    build_ui()?;
    let root = root();
    let mut c = cmd("cargo");
    c.args(["build", "-p", "mailroom-backend", "--bin", "mailroom"]);
    if !debug {
        c.arg("--release");
    }
    status(c)?;
    let binary = root
        .join("target")
        .join(if debug { "debug" } else { "release" })
        .join("mailroom");
    let arch = arch();
    let out = root.join("target/dist");
    let stage = out.join("deb");
    let _ = std::fs::remove_dir_all(&stage);

    // The tree the package installs.
    copy(&binary, &stage.join("usr/bin/mailroom"), 0o755)?;
    let mut strip = cmd("strip");
    strip
        .args(["--strip-unneeded"])
        .arg(stage.join("usr/bin/mailroom"));
    status(strip)?;
    for (from, to, mode) in [
        (
            "deploy/debian/mailroom.service",
            "lib/systemd/system/mailroom.service",
            0o644,
        ),
        (
            "deploy/debian/mailroom.env",
            "etc/mailroom/mailroom.env",
            0o640,
        ),
        (
            "deploy/prometheus/mailroom-alerts.yml",
            "usr/share/mailroom/prometheus/mailroom-alerts.yml",
            0o644,
        ),
        ("README.md", "usr/share/doc/mailroom/README.md", 0o644),
        ("docs/API.md", "usr/share/doc/mailroom/API.md", 0o644),
        ("deploy/debian/postinst", "DEBIAN/postinst", 0o755),
        ("deploy/debian/prerm", "DEBIAN/prerm", 0o755),
        ("deploy/debian/postrm", "DEBIAN/postrm", 0o755),
    ] {
        copy(&root.join(from), &stage.join(to), mode)?;
    }
    write(
        &stage.join("usr/share/doc/mailroom/copyright"),
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: mailroom\n\nFiles: *\nLicense: MIT or Apache-2.0\n",
        0o644,
    )?;
    let installed = du_kib(&stage);
    write(
        &stage.join("DEBIAN/control"),
        &control(&arch, installed),
        0o644,
    )?;
    write(
        &stage.join("DEBIAN/conffiles"),
        "/etc/mailroom/mailroom.env\n",
        0o644,
    )?;
    // Every directory 0755, whatever the umask made them.
    for dir in [
        "usr",
        "usr/bin",
        "usr/share",
        "etc",
        "etc/mailroom",
        "lib",
        "DEBIAN",
    ] {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(stage.join(dir), std::fs::Permissions::from_mode(0o755));
    }
    let deb = out.join(format!("mailroom_{}_{arch}.deb", version()));
    let mut build = cmd("dpkg-deb");
    build
        .args(["--root-owner-group", "-Zxz"])
        .arg(if debug { "-z1" } else { "-z6" })
        .arg("--build")
        .arg(&stage)
        .arg(&deb);
    status(build)?;

    // The same for other systems, as a tar.gz.
    let name = format!("mailroom-{}-linux-{arch}", env!("CARGO_PKG_VERSION"));
    let tree = out.join(&name);
    let _ = std::fs::remove_dir_all(&tree);
    copy(
        &stage.join("usr/bin/mailroom"),
        &tree.join("mailroom"),
        0o755,
    )?;
    for (from, to, mode) in [
        ("deploy/mailroom.service", "mailroom.service", 0o644),
        ("deploy/debian/mailroom.env", "mailroom.env", 0o640),
        (
            "deploy/prometheus/mailroom-alerts.yml",
            "mailroom-alerts.yml",
            0o644,
        ),
        ("README.md", "README.md", 0o644),
    ] {
        copy(&root.join(from), &tree.join(to), mode)?;
    }
    let tarball = out.join(format!("{name}.tar.gz"));
    let mut tar = cmd("tar");
    tar.arg("-czf").arg(&tarball).arg("-C").arg(&out).arg(&name);
    status(tar)?;
    println!("{}\n{}", deb.display(), tarball.display());
    Ok((deb, tarball))
}
