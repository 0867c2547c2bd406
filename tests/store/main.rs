//! The SQLite history store against real files and real processes: bad stores
//! at open (corrupt, newer schema, another program's, unreadable, in use), a
//! writer killed with SIGKILL, and `sqlite3` reading while the store is open;
//! and the history through chat-server (tests/common/server.rs): what a
//! newcomer sees, HISTORY pages, a restart (the members resume), SIGKILL,
//! and every bad store stopping the server.
//!
//! A libtest-mimic harness, so a test that cannot run here (no `sqlite3`) is
//! reported as ignored with its reason. Every other process is this same test
//! binary started again as a helper (`STORE_HELPER=mode`), never a fork. Run
//! the measurements with `cargo test --release --test store -- --bench`.
//!
//! The trials are in modules: helper.rs (the helper process), bad_stores.rs,
//! bench.rs, chat_server.rs.

mod bad_stores;
mod bench;
mod chat_server;
mod helper;

use bad_stores::{
    corrupt_file, foreign_database, foreign_lock, in_use, newer_schema, sigkill, sqlite3_reads,
    unreadable,
};
use bench::{bench_page, bench_write};
use chat_server::{
    a_bad_store_stops_the_server_naming_the_file, a_newcomer_sees_the_history_and_pages_back,
    a_restart_keeps_the_history_and_the_members_resume,
    after_sigkill_what_was_accepted_is_in_the_history, without_db_the_default_location_is_used,
};
use helper::helper;
use libtest_mimic::{Arguments, Trial};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// Long enough for a loaded 2-core machine; only failures wait this long.
const WAIT: Duration = Duration::from_secs(20);
/// The bound for a SIGKILL (1 s), with the 5x margin the tests allow.
const KILL_BOUND: Duration = Duration::from_secs(5);

#[path = "../common/server.rs"]
mod server_harness;

/// A test through chat-server (it fails by panicking).
fn server_trial(name: &str, test: fn()) -> Trial {
    Trial::test(name, move || {
        test();
        Ok(())
    })
}

fn main() -> ExitCode {
    if let Ok(mode) = std::env::var("STORE_HELPER") {
        return helper(
            &mode,
            Path::new(&std::env::var_os("STORE_DB").unwrap_or_default()),
        );
    }
    let tests = vec![
        Trial::test("a_corrupt_file_is_refused_and_kept", corrupt_file),
        Trial::test("a_newer_schema_is_refused_and_kept", newer_schema),
        Trial::test("another_programs_database_is_refused", foreign_database),
        Trial::test("an_unreadable_database_is_refused", unreadable),
        Trial::test("a_database_in_use_is_refused_with_the_pid", in_use),
        Trial::ignorable_test("a_lock_held_by_another_program_is_refused", foreign_lock),
        Trial::test("sigkill_keeps_what_was_handed_over_earlier", sigkill),
        Trial::ignorable_test("sqlite3_reads_the_database_while_open", sqlite3_reads),
        server_trial(
            "chat_server_a_newcomer_sees_the_history_and_pages_back",
            a_newcomer_sees_the_history_and_pages_back,
        ),
        server_trial(
            "chat_server_a_restart_keeps_the_history_and_the_members_resume",
            a_restart_keeps_the_history_and_the_members_resume,
        ),
        server_trial(
            "chat_server_after_sigkill_what_was_accepted_is_in_the_history",
            after_sigkill_what_was_accepted_is_in_the_history,
        ),
        server_trial(
            "chat_server_a_bad_store_stops_the_server_naming_the_file",
            a_bad_store_stops_the_server_naming_the_file,
        ),
        server_trial(
            "chat_server_without_db_uses_the_default_location",
            without_db_the_default_location_is_used,
        ),
        Trial::bench("bench_write_rows", bench_write),
        Trial::bench("bench_page_read_20_rows", bench_page),
    ];
    libtest_mimic::run(&Arguments::from_args(), tests).exit_code()
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}
