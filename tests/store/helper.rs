//! The helper process: this test binary started again (`STORE_HELPER=mode`)
//! to hold or write a store, and its lines read with bounds.

use crate::WAIT;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, ExitCode, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};
use udpchat::store::{HistoryStore, Kind, Message, MessageId, Present, SqliteStore};

/// A message of client 9 with sequence and room sequence `i`.
pub(crate) fn msg(i: u64) -> Message {
    Message {
        room_seq: i,
        time_ms: 1_700_000_000_000 + i as i64,
        sender: "ann".into(),
        kind: Kind::Member,
        id: MessageId { client: 9, seq: i },
        text: format!("line {i} of a conversation that goes on"),
    }
}

/// What a helper process does, by `mode`, with the database at `db`.
pub(crate) fn helper(mode: &str, db: &Path) -> ExitCode {
    let mut store = match SqliteStore::open(db, 100_000) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("store-helper: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout();
    match mode {
        // Hold the store open with 5 messages until stdin closes.
        "hold" => {
            store.append((1..=5).map(msg).collect());
            store.name_present(Present {
                name: "Ann".into(),
                name_key: "ann".into(),
                client: 9,
            });
            let _ = store.flush();
            let _ = writeln!(out, "ready");
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
        }
        // Hand over one message every 10 ms, saying its number once handed.
        "write" => {
            for i in 1..=6000 {
                store.append(vec![msg(i)]);
                let _ = writeln!(out, "{i}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        // Only open it (the refusals).
        "open" => {}
        _ => return ExitCode::FAILURE,
    }
    ExitCode::SUCCESS
}

/// A helper process, killed and reaped when dropped.
pub(crate) struct Helper {
    child: Child,
    lines: Receiver<(String, Instant)>,
}

impl Helper {
    pub(crate) fn start(mode: &str, db: &Path) -> Helper {
        Helper::spawn(helper_cmd(mode, db))
    }

    pub(crate) fn spawn(mut cmd: Command) -> Helper {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = read_lines(child.stdout.take().unwrap());
        Helper { child, lines }
    }

    /// The next line, with when it arrived.
    pub(crate) fn line(&self) -> (String, Instant) {
        self.lines
            .recv_timeout(WAIT)
            .expect("the helper said nothing in time")
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn sigkill(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        self.sigkill();
    }
}

pub(crate) fn helper_cmd(mode: &str, db: &Path) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env("STORE_HELPER", mode).env("STORE_DB", db);
    cmd
}

/// Each line of `out` with the time it arrived, from a thread of its own.
fn read_lines(out: ChildStdout) -> Receiver<(String, Instant)> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send((line, Instant::now())).is_err() {
                break;
            }
        }
    });
    rx
}
