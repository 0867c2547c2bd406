//! `chat-load --against ngircd`: a tiny run against a real ngircd, started
//! by chat-load from tools/ngircd/ngircd.conf, must deliver every message to
//! every member. A harness that can skip at run time (`libtest-mimic`): where
//! ngircd is not installed the test reports `ignored, needs ngircd` instead
//! of passing. Behaviour only: no speed is asserted.

mod common;

use common::{json_reports, num};
use libtest_mimic::{Arguments, Completion, Failed, Trial};
use serde_json::Value;
use std::path::PathBuf;

fn main() {
    let args = Arguments::from_args();
    let trials = vec![Trial::ignorable_test(
        "ngircd_delivers_every_message_to_every_member",
        ngircd_delivers_every_message_to_every_member,
    )];
    libtest_mimic::run(&args, trials).exit();
}

/// The ngircd chat-load would start: on PATH, else Debian's /usr/sbin/ngircd.
fn ngircd() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("ngircd"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| Some(PathBuf::from("/usr/sbin/ngircd")).filter(|p| p.is_file()))
}

fn ngircd_delivers_every_message_to_every_member() -> Result<Completion, Failed> {
    let Some(bin) = ngircd() else {
        return Ok(Completion::ignored_with(
            "needs ngircd (Debian: apt-get install ngircd)",
        ));
    };
    let bin = bin.to_str().expect("a UTF-8 path").to_string();
    let reports = json_reports(&[
        "--against",
        "ngircd",
        "--ngircd-bin",
        &bin,
        "-n",
        "3",
        "-s",
        "2",
        "-m",
        "300",
        "--flood",
    ]);
    assert_eq!(reports.len(), 1, "{reports:?}");
    let r = &reports[0];
    assert_eq!(r["kind"], "ngircd", "{r}");
    assert_eq!(r["mode"], "flood", "{r}");
    assert_eq!(r["packing"], Value::Null, "{r}");
    assert_eq!(num(r, "members"), 3.0, "{r}");
    assert_eq!(num(r, "senders"), 2.0, "{r}");
    assert_eq!(num(r, "messages"), 300.0, "{r}");
    // Each message goes to every member but its sender, each exactly once.
    assert_eq!(num(r, "expected"), 600.0, "{r}");
    assert_eq!(num(r, "delivered"), 600.0, "{r}");
    assert_eq!(num(r, "lost"), 0.0, "{r}");
    assert_eq!(num(r, "out_of_order"), 0.0, "{r}");
    assert_eq!(num(r, "foreign_events"), 0.0, "{r}");
    assert_eq!(num(r, "incomplete_messages"), 0.0, "{r}");
    // ngircd's CPU time was read from /proc (it ran as chat-load's child).
    assert!(num(r, "server_cpu_ns") > 0.0, "{r}");
    assert!(num(r, "latency_p50_us") > 0.0, "{r}");
    Ok(Completion::Completed)
}
