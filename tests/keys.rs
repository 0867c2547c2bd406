//! The real chat-server's key file: `--key FILE` creates it (0600) on the
//! first start and keeps it, `--fingerprint` prints it and creates nothing,
//! and a bad key file stops the server naming the file. Every test works in
//! its own temporary directory (and points XDG_DATA_HOME and HOME there when
//! the default location is involved).

#[path = "common/client.rs"]
mod client_harness;
#[path = "common/server.rs"]
mod server_harness;

use client_harness::run_to_end as run;
use nix::sys::signal::Signal;
use server_harness::{Server, BIN, WAIT};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use udpchat::trust::ServerKey;

/// RFC 7748 §6.1: Alice's secret as a key file, and the fingerprint of her
/// public key 8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a.
const ALICE_FILE: &str = "udpchat-server-key-v1\ndwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=\n";
const ALICE_FINGERPRINT: &str = "SHA256:MAyclgO5Kks57TlYv5JAEUgE20/TcwEsDKR0MtY0Ja4";

/// Starts `cmd` (stdin /dev/null) without waiting for it to listen.
fn spawn(cmd: Command) -> Server {
    Server::launch(cmd, Stdio::null())
}

/// SIGTERM, then a bounded wait for the exit.
fn stop(mut server: Server) -> ExitStatus {
    server.signal(Signal::SIGTERM);
    server
        .wait_exit(WAIT)
        .unwrap_or_else(|| panic!("chat-server did not exit within {WAIT:?}"))
}

/// `chat-server ARGS` with `--bind 127.0.0.1:0 --db none`.
fn server(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["--bind", "127.0.0.1:0", "--db", "none"])
        .args(args);
    cmd
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn write_mode(p: &Path, text: &str, mode: u32) {
    fs::write(p, text).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// `--fingerprint` of the key at `path`: its one stdout line.
fn fingerprint_of(path: &Path) -> String {
    let (status, out, err) = run(server(&["--key", path.to_str().unwrap(), "--fingerprint"]));
    assert!(status.success() && err.is_empty(), "{status}: {err}");
    out
}

#[test]
fn the_first_start_creates_a_private_key_and_later_starts_keep_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("new");
    let key = dir.join("server.key");
    // Even with a umask that lets everyone in.
    let mut cmd = Command::new("sh");
    cmd.args(["-c", r#"umask 000; exec "$0" "$@""#, BIN]).args([
        "--bind",
        "127.0.0.1:0",
        "--key",
        key.to_str().unwrap(),
        "--db",
        "none",
    ]);
    let mut first = spawn(cmd);
    first.wait_listening();
    assert!(stop(first).success());
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(names_in(&dir), ["server.key"]);
    let text = fs::read(&key).unwrap();
    let loaded = ServerKey::load(&key).expect("a well-formed key file");
    let fingerprint = fingerprint_of(&key);
    assert_eq!(fingerprint, format!("{}\n", loaded.fingerprint()));

    let mut second = spawn(server(&["--key", key.to_str().unwrap()]));
    second.wait_listening();
    assert!(stop(second).success());
    assert_eq!(fs::read(&key).unwrap(), text, "the key file changed");
    assert_eq!(fingerprint_of(&key), fingerprint);
    assert_eq!(names_in(&dir), ["server.key"]);
}

#[test]
fn without_key_the_default_location_is_used_and_the_log_says_the_fingerprint() {
    let tmp = tempfile::tempdir().unwrap();
    for (xdg, expect) in [
        (true, tmp.path().join("data/udpchat/server.key")),
        (
            false,
            tmp.path().join("home/.local/share/udpchat/server.key"),
        ),
    ] {
        let mut cmd = server(&[]);
        cmd.env("HOME", tmp.path().join("home"));
        if xdg {
            cmd.env("XDG_DATA_HOME", tmp.path().join("data"));
        } else {
            cmd.env_remove("XDG_DATA_HOME");
        }
        let mut running = spawn(cmd);
        running.wait_listening();
        let line = running.next_stderr().expect("a second line");
        assert_eq!(mode(&expect), 0o600, "{}", expect.display());
        let fingerprint = fingerprint_of(&expect);
        assert!(
            line.ends_with(&format!("server key {}", fingerprint.trim_end())),
            "{line:?}"
        );
        assert!(stop(running).success());
    }
}

#[test]
fn fingerprint_prints_the_test_vector() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("alice.key");
    write_mode(&key, ALICE_FILE, 0o600);
    assert_eq!(fingerprint_of(&key), format!("{ALICE_FINGERPRINT}\n"));

    // The default location: $XDG_DATA_HOME/udpchat/server.key.
    let data = tmp.path().join("data/udpchat");
    fs::create_dir_all(&data).unwrap();
    write_mode(&data.join("server.key"), ALICE_FILE, 0o600);
    let mut cmd = server(&["--fingerprint"]);
    cmd.env("XDG_DATA_HOME", tmp.path().join("data"))
        .env("HOME", tmp.path().join("home"));
    let (status, out, err) = run(cmd);
    assert!(status.success(), "{status}: {err}");
    assert_eq!(out, format!("{ALICE_FINGERPRINT}\n"));
    assert!(!tmp.path().join("home").exists());
}

#[test]
fn fingerprint_without_a_key_file_is_an_error_and_creates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("dir/server.key");
    let (status, out, err) = run(server(&["--key", key.to_str().unwrap(), "--fingerprint"]));
    assert_eq!(status.code(), Some(1));
    assert_eq!(out, "");
    assert_eq!(
        err,
        format!(
            "chat-server: cannot load key '{}': No such file or directory\n",
            key.display()
        )
    );
    // The default location under HOME (no XDG_DATA_HOME).
    let mut cmd = server(&["--fingerprint"]);
    cmd.env_remove("XDG_DATA_HOME").env("HOME", tmp.path());
    let (status, _, err) = run(cmd);
    assert_eq!(status.code(), Some(1));
    assert_eq!(
        err,
        format!(
            "chat-server: cannot load key '{}/.local/share/udpchat/server.key': \
             No such file or directory\n",
            tmp.path().display()
        )
    );
    assert!(
        names_in(tmp.path()).is_empty(),
        "{:?}",
        names_in(tmp.path())
    );
    // No data directory at all.
    let mut cmd = server(&["--fingerprint"]);
    cmd.env_remove("XDG_DATA_HOME").env_remove("HOME");
    let (status, _, err) = run(cmd);
    assert_eq!(status.code(), Some(1));
    assert_eq!(
        err,
        "chat-server: cannot find the data directory for 'server.key': \
         neither XDG_DATA_HOME nor HOME is an absolute path\n"
    );
}

#[test]
fn a_bad_key_file_stops_the_server_and_is_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("server.key");
    let cases = [
        ("", 0o600, "malformed key file: the file is empty"),
        (
            "-----BEGIN OPENSSH PRIVATE KEY-----\n",
            0o600,
            "malformed key file: the first line is not 'udpchat-server-key-v1'",
        ),
        (
            "udpchat-server-key-v1\nAAAA\n",
            0o600,
            "malformed key file: the second line is not the base64 of 32 bytes",
        ),
        (
            ALICE_FILE,
            0o640,
            "mode 0640 lets group or others in (chmod 600 it)",
        ),
        (
            ALICE_FILE,
            0o604,
            "mode 0604 lets group or others in (chmod 600 it)",
        ),
    ];
    for (text, m, why) in cases {
        write_mode(&key, text, m);
        for extra in [None, Some("--fingerprint")] {
            let mut cmd = server(&["--key", key.to_str().unwrap()]);
            cmd.args(extra);
            let (status, out, err) = run(cmd);
            assert_eq!(status.code(), Some(1), "{text:?} {m:o} {extra:?}");
            assert_eq!(out, "");
            assert_eq!(
                err,
                format!("chat-server: cannot load key '{}': {why}\n", key.display())
            );
        }
        assert_eq!(fs::read_to_string(&key).unwrap(), text);
        assert_eq!(mode(&key), m);
        assert_eq!(names_in(tmp.path()), ["server.key"]);
    }
    let (status, _, err) = run(server(&["--key", tmp.path().to_str().unwrap()]));
    assert_eq!(status.code(), Some(1));
    assert_eq!(
        err,
        format!(
            "chat-server: cannot load key '{}': not a regular file\n",
            tmp.path().display()
        )
    );
}

#[test]
fn an_unreadable_key_file_stops_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("server.key");
    write_mode(&key, ALICE_FILE, 0o600);
    let mut cmd = server(&["--key", key.to_str().unwrap()]);
    if nix::unistd::geteuid().is_root() {
        // Root reads any file: run the server as nobody, who may enter the
        // directory but not read root's 0600 file.
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
        cmd.uid(65534).gid(65534);
    } else {
        fs::set_permissions(&key, fs::Permissions::from_mode(0o000)).unwrap();
    }
    let (status, _, err) = run(cmd);
    assert_eq!(status.code(), Some(1));
    assert_eq!(
        err,
        format!(
            "chat-server: cannot load key '{}': Permission denied\n",
            key.display()
        )
    );
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(fs::read_to_string(&key).unwrap(), ALICE_FILE);
}

#[test]
fn two_servers_started_at_once_end_with_one_complete_key() {
    for round in 0..5 {
        let tmp = tempfile::tempdir().unwrap();
        let key = tmp.path().join("server.key");
        let mut both = [0, 1].map(|_| spawn(server(&["--key", key.to_str().unwrap()])));
        for s in &mut both {
            s.wait_listening();
        }
        for s in both {
            assert!(stop(s).success(), "round {round}");
        }
        assert_eq!(mode(&key), 0o600);
        let loaded = ServerKey::load(&key).expect("one complete key");
        assert_eq!(fingerprint_of(&key), format!("{}\n", loaded.fingerprint()));
        assert_eq!(names_in(tmp.path()), ["server.key"], "round {round}");
    }
}
