//! The Debian package `cargo xtask dist` builds (the test command builds it
//! before the suites, with the dev binary), checked with Debian's own tools:
//! `dpkg-deb` for its files, modes, unit and maintainer scripts, and, when
//! the tests run as root as CI does, `dpkg -i`, the `mailroom` user, the
//! binary started as that user with the env file, and `dpkg --purge`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The built package; missing is a failure, never a skip.
fn deb() -> PathBuf {
    let dir = workspace().join("target/dist");
    std::fs::read_dir(&dir)
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .unwrap_or_else(|| {
            panic!(
                "no .deb in {}: run `cargo xtask test` (or `cargo xtask dist --debug`) first",
                dir.display()
            )
        })
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn the_package_holds_the_binary_the_unit_the_env_file_and_its_scripts() {
    let deb = deb();
    let listing = run("dpkg-deb", &["-c", path(&deb)]);
    let entry = |name: &str| -> (String, String) {
        let line = listing
            .lines()
            .find(|l| l.ends_with(name))
            .unwrap_or_else(|| panic!("{name} is not in the package:\n{listing}"));
        let mut parts = line.split_whitespace();
        (parts.next().unwrap().into(), parts.next().unwrap().into())
    };
    assert_eq!(
        entry("./usr/bin/mailroom"),
        ("-rwxr-xr-x".into(), "root/root".into())
    );
    assert_eq!(
        entry("./lib/systemd/system/mailroom.service").0,
        "-rw-r--r--"
    );
    assert_eq!(
        entry("./etc/mailroom/mailroom.env").0,
        "-rw-r-----",
        "the env file may hold secrets"
    );
    entry("./usr/share/mailroom/prometheus/mailroom-alerts.yml");
    entry("./usr/share/doc/mailroom/copyright");
    assert_eq!(
        run("dpkg-deb", &["-f", path(&deb), "Package"]).trim(),
        "mailroom"
    );
    assert!(run("dpkg-deb", &["-f", path(&deb), "Depends"]).contains("adduser"));

    let dir = tempfile::tempdir().unwrap();
    let ctrl = dir.path().join("DEBIAN");
    run("dpkg-deb", &["-e", path(&deb), path(&ctrl)]);
    let read =
        |p: PathBuf| std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert_eq!(
        read(ctrl.join("conffiles")).trim(),
        "/etc/mailroom/mailroom.env"
    );
    let postinst = read(ctrl.join("postinst"));
    assert!(
        postinst.contains("adduser --system") && postinst.contains("--shell /usr/sbin/nologin")
    );
    let postrm = read(ctrl.join("postrm"));
    assert!(
        postrm.contains("\"purge\"")
            && postrm.contains("deluser")
            && postrm.contains("/var/lib/mailroom")
    );
    for script in ["postinst", "prerm", "postrm"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(ctrl.join(script))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755, "{script}");
        run("sh", &["-n", path(&ctrl.join(script))]);
    }

    let files = dir.path().join("files");
    run("dpkg-deb", &["-x", path(&deb), path(&files)]);
    let unit = read(files.join("lib/systemd/system/mailroom.service"));
    for line in [
        "User=mailroom",
        "EnvironmentFile=/etc/mailroom/mailroom.env",
        "ExecStart=/usr/bin/mailroom serve",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "StateDirectory=mailroom",
        "NoNewPrivileges=yes",
        "LimitNOFILE=65536",
        "WantedBy=multi-user.target",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line} missing:\n{unit}");
    }
    // The env file is commented and names every option the server documents.
    let env = read(files.join("etc/mailroom/mailroom.env"));
    let help = run(path(&files.join("usr/bin/mailroom")), &["serve", "--help"]);
    let mut documented: Vec<&str> = help
        .split("[env: ")
        .skip(1)
        .filter_map(|rest| rest.split(['=', ']']).next())
        .collect();
    documented.sort();
    documented.dedup();
    assert!(documented.len() >= 20, "{documented:?}");
    for var in documented {
        assert!(
            env.contains(&format!("{var}=")),
            "{var} is not in mailroom.env"
        );
    }
    for line in env
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        assert!(
            line.starts_with("MAILROOM_") && line.contains('='),
            "not KEY=VALUE: {line}"
        );
    }
    assert!(
        run(path(&files.join("usr/bin/mailroom")), &["--version"]).starts_with("mailroom "),
        "the packaged binary runs"
    );
}

fn is_root() -> bool {
    run("id", &["-u"]).trim() == "0"
}

fn purge() {
    let _ = Command::new("dpkg").args(["--purge", "mailroom"]).output();
}

#[test]
fn as_root_the_package_installs_runs_as_its_user_and_purges_cleanly() {
    if !is_root() {
        eprintln!("not root: installing the package is checked where the tests run as root (CI)");
        return;
    }
    purge();
    let deb = deb();
    run("dpkg", &["-i", path(&deb)]);
    let uid: u32 = run("id", &["-u", "mailroom"]).trim().parse().unwrap();
    assert!(uid < 1000, "a system user: {uid}");
    let passwd = run("getent", &["passwd", "mailroom"]);
    assert!(
        passwd
            .trim()
            .ends_with(":/var/lib/mailroom:/usr/sbin/nologin"),
        "{passwd}"
    );
    assert_eq!(
        run("stat", &["-c", "%U %a", "/var/lib/mailroom"]).trim(),
        "mailroom 700"
    );
    assert_eq!(
        run("stat", &["-c", "%U:%G %a", "/etc/mailroom/mailroom.env"]).trim(),
        "root:mailroom 640"
    );
    assert!(run("/usr/bin/mailroom", &["--version"]).starts_with("mailroom "));
    // systemd reads the installed unit without a complaint (an unknown or
    // misspelt directive would be named here, and ignored at boot).
    let verified = Command::new("systemd-analyze")
        .args(["verify", "/lib/systemd/system/mailroom.service"])
        .output()
        .expect("systemd-analyze (Debian's systemd package)");
    let said = String::from_utf8_lossy(&verified.stderr).into_owned()
        + &String::from_utf8_lossy(&verified.stdout);
    assert!(
        verified.status.success() && said.trim().is_empty(),
        "{said}"
    );
    // `mailroom sendmail` run by any user (cron, PHP as www-data) reads
    // /etc/mailroom/app-key where its mode allows, before and after an
    // upgrade (postinst once closed the folder, so only mailroom's group
    // could reach the key); the options file stays closed to them.
    std::fs::write("/etc/mailroom/app-key", "mr_test\n").unwrap();
    std::fs::set_permissions(
        "/etc/mailroom/app-key",
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let as_nobody = |file: &str| {
        Command::new("runuser")
            .args(["-u", "nobody", "--", "cat", file])
            .output()
            .unwrap()
            .status
            .success()
    };
    for round in ["install", "upgrade"] {
        if round == "upgrade" {
            run("dpkg", &["-i", path(&deb)]);
        }
        assert!(as_nobody("/etc/mailroom/app-key"), "after the {round}");
        assert!(
            !as_nobody("/etc/mailroom/mailroom.env"),
            "after the {round}"
        );
    }
    // A key file its user may not read is said to be so, with the fix
    // (it was "no app key … (Permission denied)").
    std::fs::set_permissions(
        "/etc/mailroom/app-key",
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let refused = Command::new("runuser")
        .args([
            "-u",
            "nobody",
            "--",
            "sh",
            "-c",
            "printf 'Subject: disk\\n\\nfull\\n' | /usr/bin/mailroom sendmail ann@example.org",
        ])
        .env_remove("MAILROOM_APP_KEY")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(77), "{said}");
    assert!(
        said.contains("this user may not read it") && said.contains("chmod 640"),
        "{said}"
    );
    std::fs::remove_file("/etc/mailroom/app-key").unwrap();

    // Started as the unit starts it: as `mailroom`, with the env file.
    let env = std::fs::read_to_string("/etc/mailroom/mailroom.env").unwrap();
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", "mailroom", "--", "/usr/bin/mailroom", "serve"]);
    cmd.env_clear().env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    for line in env
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains('='))
    {
        let (k, v) = line.split_once('=').unwrap();
        cmd.env(k, v);
    }
    cmd.env("MAILROOM_LISTEN", "127.0.0.1:0")
        .env("MAILROOM_SMTP_LISTEN", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("start mailroom as its user");
    let stdout = child.stdout.take().unwrap();
    let mut url = None;
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        if let Some(rest) = line.split("listening on ").nth(1) {
            url = Some(rest.trim().to_string());
            break;
        }
    }
    let url = url.expect("the server said where it listens");
    let health = {
        use std::io::{Read, Write};
        let addr = url.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr).expect("connect to the server");
        s.write_all(b"GET /api/health HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        answer
    };
    let token_owner = run("stat", &["-c", "%U %a", "/var/lib/mailroom/admin-token"]);
    let _ = Command::new("pkill")
        .args(["-u", "mailroom", "-f", "/usr/bin/mailroom"])
        .status();
    let _ = child.wait();
    assert!(health.contains("\"ok\""), "{health}");
    assert_eq!(token_owner.trim(), "mailroom 600", "its data is its own");

    run("dpkg", &["--purge", "mailroom"]);
    assert!(
        Command::new("id")
            .args(["mailroom"])
            .output()
            .unwrap()
            .status
            .code()
            != Some(0),
        "the user is gone"
    );
    for gone in ["/usr/bin/mailroom", "/var/lib/mailroom", "/etc/mailroom"] {
        assert!(!Path::new(gone).exists(), "{gone} is left after purge");
    }
}
