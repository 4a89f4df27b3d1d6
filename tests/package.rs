//! The Debian package as an operator meets it: built by scripts/package
//! (from this build's binary), read with dpkg-deb, checked by lintian,
//! installed into a throwaway root with dpkg (its maintainer scripts run
//! against that root: DPKG_ROOT), upgraded, removed and purged; its units
//! verified and rated by systemd-analyze.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::binary::BIN;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Builds the package from the binary under test into `out`.
fn build(out: &Path) -> PathBuf {
    let (ok, text) = run(Command::new(root().join("scripts/package"))
        .args(["--binary", BIN, "--out"])
        .arg(out));
    assert!(ok, "{text}");
    PathBuf::from(text.lines().last().unwrap().trim())
}

/// dpkg on a throwaway root: its database, and scripts run unchrooted with
/// DPKG_ROOT set (Debian's own packages are not installed there).
fn dpkg(target: &Path, args: &[&str]) -> String {
    let (ok, text) = run(Command::new("dpkg")
        .arg(format!("--root={}", target.display()))
        .args([
            "--force-script-chrootless",
            "--force-depends",
            "--force-confold",
            "--log=/dev/null",
        ])
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive"));
    assert!(ok, "dpkg {args:?}: {text}");
    text
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn the_package_installs_upgrades_removes_and_purges_as_debian_expects() {
    let work = tempfile::tempdir().unwrap();
    let deb = build(work.path());
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        deb.ends_with(format!("gatehouse_{version}_amd64.deb")),
        "{}",
        deb.display()
    );

    // What dpkg-deb says of it.
    let (ok, info) = run(Command::new("dpkg-deb").arg("--info").arg(&deb));
    assert!(ok, "{info}");
    for field in [
        "Package: gatehouse".to_string(),
        format!("Version: {version}"),
        "Architecture: amd64".into(),
        "Depends: libc6 (>= ".into(),
    ] {
        assert!(info.contains(&field), "{field}: {info}");
    }
    let (ok, conffiles) = run(Command::new("dpkg-deb")
        .args(["--info"])
        .arg(&deb)
        .arg("conffiles"));
    assert!(ok, "{conffiles}");
    assert_eq!(conffiles.trim(), "/etc/gatehouse/gatehouse.toml");
    let (ok, contents) = run(Command::new("dpkg-deb").arg("--contents").arg(&deb));
    assert!(ok, "{contents}");
    for (path, perms) in [
        ("./usr/bin/gatehouse", "-rwxr-xr-x root/root"),
        (
            "./lib/systemd/system/gatehouse.service",
            "-rw-r--r-- root/root",
        ),
        (
            "./lib/systemd/system/gatehouse.socket",
            "-rw-r--r-- root/root",
        ),
        ("./etc/gatehouse/gatehouse.toml", "-rw-r--r-- root/root"),
        (
            "./usr/share/gatehouse/prometheus/gatehouse-alerts.yml",
            "-rw-r--r-- root/root",
        ),
        (
            "./usr/share/gatehouse/grafana/gatehouse-operations.json",
            "-rw-r--r-- root/root",
        ),
        (
            "./usr/share/gatehouse/grafana/gatehouse-actions.json",
            "-rw-r--r-- root/root",
        ),
        (
            "./usr/share/man/man1/gatehouse.1.gz",
            "-rw-r--r-- root/root",
        ),
        (
            "./usr/share/man/man1/gatehouse-serve.1.gz",
            "-rw-r--r-- root/root",
        ),
        (
            "./usr/share/man/man1/gatehouse-status.1.gz",
            "-rw-r--r-- root/root",
        ),
        (
            "./usr/share/bash-completion/completions/gatehouse",
            "-rw-r--r-- root/root",
        ),
        (
            "./usr/share/zsh/vendor-completions/_gatehouse",
            "-rw-r--r-- root/root",
        ),
        (
            "./usr/share/fish/vendor_completions.d/gatehouse.fish",
            "-rw-r--r-- root/root",
        ),
        (
            "./usr/share/doc/gatehouse/copyright",
            "-rw-r--r-- root/root",
        ),
    ] {
        let line = contents
            .lines()
            .find(|l| l.ends_with(&format!(" {path}")))
            .unwrap_or_else(|| panic!("{path} is not in the package:\n{contents}"));
        assert!(line.starts_with(perms), "{line}");
    }
    assert!(
        !contents.contains("generate-docs"),
        "a hidden command gets no man page"
    );

    // lintian: nothing but what the overrides explain.
    let (ok, lint) = run(Command::new("lintian")
        .args(["--tag-display-limit", "0", "--fail-on", "error,warning"])
        .arg(&deb));
    let findings: Vec<&str> = lint
        .lines()
        .filter(|l| l.starts_with("E:") || l.starts_with("W:"))
        .collect();
    assert!(ok && findings.is_empty(), "lintian:\n{lint}");

    // Installed into a throwaway root.
    let target = work.path().join("root");
    std::fs::create_dir_all(target.join("var/lib/dpkg/info")).unwrap();
    std::fs::create_dir_all(target.join("var/lib/dpkg/updates")).unwrap();
    std::fs::write(target.join("var/lib/dpkg/status"), "").unwrap();
    let said = dpkg(&target, &["-i", deb.to_str().unwrap()]);
    let etc = target.join("etc/gatehouse");
    assert_eq!(mode(&target.join("usr/bin/gatehouse")), 0o755);
    assert_eq!(mode(&etc.join("gatehouse.toml")), 0o644);
    let secret = std::fs::read_to_string(etc.join("webhook-secret")).unwrap();
    assert_eq!(mode(&etc.join("webhook-secret")), 0o600);
    assert!(
        secret.len() == 65 && secret.trim_end().chars().all(|c| c.is_ascii_hexdigit()),
        "{secret:?}"
    );
    // The admin password is printed once; only its hash is kept.
    let password = said
        .lines()
        .find_map(|l| l.split("admin UI's password is: ").nth(1))
        .unwrap_or_else(|| panic!("no password printed: {said}"))
        .trim()
        .to_string();
    assert!(said.contains("webhook-secret"), "{said}");
    let hash = std::fs::read_to_string(etc.join("admin.hash")).unwrap();
    assert_eq!(mode(&etc.join("admin.hash")), 0o600);
    assert!(gatehouse::admin::password::verify(hash.trim(), &password));
    assert!(!hash.contains(&password));
    let (ok, registered) = run(Command::new("dpkg-query")
        .arg(format!(
            "--admindir={}",
            target.join("var/lib/dpkg").display()
        ))
        .args(["-W", "-f=${Conffiles}", "gatehouse"]));
    assert!(ok, "{registered}");
    assert!(
        registered.contains("/etc/gatehouse/gatehouse.toml"),
        "{registered}"
    );

    // The installed units verify (with the installed binary's path) and
    // stay OK or better for exposure.
    let units = work.path().join("units");
    std::fs::create_dir_all(&units).unwrap();
    let installed_bin = target.join("usr/bin/gatehouse");
    for unit in ["gatehouse.service", "gatehouse.socket"] {
        let text = std::fs::read_to_string(target.join("lib/systemd/system").join(unit)).unwrap();
        assert!(!text.contains("/usr/local/bin"), "{unit}: {text}");
        std::fs::write(
            units.join(unit),
            text.replace("/usr/bin/gatehouse", installed_bin.to_str().unwrap()),
        )
        .unwrap();
    }
    let (ok, verify) = run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(units.join("gatehouse.service"))
        .arg(units.join("gatehouse.socket")));
    assert!(ok && verify.trim().is_empty(), "{verify}");
    let (ok, security) = run(Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=49", "--no-pager"])
        .arg(units.join("gatehouse.service")));
    assert!(ok, "{security}");

    // An upgrade keeps the config as edited, the credentials and the data.
    let edited = std::fs::read_to_string(etc.join("gatehouse.toml")).unwrap() + "\n# edited\n";
    std::fs::write(etc.join("gatehouse.toml"), &edited).unwrap();
    let data = target.join("var/lib/private/gatehouse");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("gatehouse.db"), "journal").unwrap();
    let said = dpkg(&target, &["-i", deb.to_str().unwrap()]);
    assert!(
        !said.contains("password is"),
        "no new password on upgrade: {said}"
    );
    assert_eq!(
        std::fs::read_to_string(etc.join("gatehouse.toml")).unwrap(),
        edited
    );
    assert_eq!(
        std::fs::read_to_string(etc.join("webhook-secret")).unwrap(),
        secret
    );
    assert_eq!(
        std::fs::read_to_string(etc.join("admin.hash")).unwrap(),
        hash
    );
    assert!(data.join("gatehouse.db").exists());

    // remove keeps data, config and credentials; purge takes them.
    dpkg(&target, &["-r", "gatehouse"]);
    assert!(!target.join("usr/bin/gatehouse").exists());
    assert!(data.join("gatehouse.db").exists());
    assert!(etc.join("webhook-secret").exists() && etc.join("gatehouse.toml").exists());
    dpkg(&target, &["-P", "gatehouse"]);
    assert!(!data.exists(), "purge removes the journal");
    assert!(!etc.exists(), "purge removes the config and credentials");
}
