//! chat-client in tmux, the reference terminal: after the window is resized
//! no stale prompt rows remain. The client runs in a detached tmux session on
//! a private tmux server (`-L`), driven with `send-keys`, `resize-window` and
//! `capture-pane`. Where tmux is missing the test is reported ignored ("needs
//! tmux"); with `CI=true` it runs and fails instead (.ci/run installs tmux).

#[path = "common/client.rs"]
mod common;

use common::*;
use libtest_mimic::{Arguments, Failed, Trial};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A private tmux server, killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new() -> Tmux {
        Tmux {
            socket: format!("udpchat-test-{}", std::process::id()),
        }
    }

    fn run(&self, args: &[&str]) -> Result<String, Failed> {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("tmux {args:?}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "tmux {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )
            .into());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The pane's rows, trailing empty ones dropped.
    fn rows(&self) -> Result<Vec<String>, Failed> {
        let text = self.run(&["capture-pane", "-p", "-t", "chat"])?;
        let mut rows: Vec<String> = text.lines().map(|l| l.trim_end().to_string()).collect();
        while rows.last().is_some_and(|l| l.is_empty()) {
            rows.pop();
        }
        Ok(rows)
    }

    /// Waits until `cond` holds for the pane's rows.
    fn wait(&self, what: &str, cond: impl Fn(&[String]) -> bool) -> Result<Vec<String>, Failed> {
        let start = Instant::now();
        loop {
            let rows = self.rows()?;
            if cond(&rows) {
                return Ok(rows);
            }
            if start.elapsed() > WAIT {
                return Err(format!("waiting for {what}; the pane: {rows:#?}").into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// Exactly one row holds the prompt, and it is the last one.
fn one_prompt_row(rows: &[String]) -> bool {
    rows.iter().filter(|r| r.starts_with("> ")).count() == 1
        && rows.last().is_some_and(|r| r.starts_with("> "))
}

fn resize_leaves_no_stale_prompt_rows() -> Result<(), Failed> {
    let server = Server::start(&[]);
    let tmux = Tmux::new();
    let client = format!("{CLIENT} --server {} --name alice --lang en", server.addr);
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "chat",
        "-x",
        "80",
        "-y",
        "12",
        &client,
    ])?;
    tmux.wait("the prompt", |r| r.last().is_some_and(|l| l == ">"))?;
    // A screenful of messages above the input line.
    for i in 0..15 {
        tmux.run(&["send-keys", "-t", "chat", "-l", &format!("line {i}")])?;
        tmux.run(&["send-keys", "-t", "chat", "Enter"])?;
    }
    tmux.wait("the lines echoed", |r| {
        r.iter().any(|l| l.ends_with("alice: line 14"))
    })?;
    let draft = "the quick brown fox jumps over the lazy dog, twice over";
    tmux.run(&["send-keys", "-t", "chat", "-l", draft])?;
    tmux.wait("the draft", |r| {
        r.last().is_some_and(|l| *l == format!("> {draft}"))
    })?;
    for (cols, what) in [(30, "narrower"), (20, "narrower still"), (80, "wider")] {
        tmux.run(&[
            "resize-window",
            "-t",
            "chat",
            "-x",
            &cols.to_string(),
            "-y",
            "12",
        ])?;
        let rows = tmux.wait(&format!("one prompt row, {what}"), |r| {
            one_prompt_row(r) && r.last().is_some_and(|l| l.ends_with("over"))
        })?;
        // Still one prompt row a moment later (no late redraw left one behind).
        std::thread::sleep(Duration::from_millis(200));
        let later = tmux.rows()?;
        if !one_prompt_row(&later) {
            return Err(format!("{what} ({cols} columns): {later:#?} (was {rows:#?})").into());
        }
    }
    Ok(())
}

fn main() {
    let args = Arguments::from_args();
    let have_tmux = Command::new("tmux")
        .arg("-V")
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success());
    let on_ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let test = Trial::test("a_resize_leaves_no_stale_prompt_rows", move || {
        if !have_tmux {
            return Err("needs tmux, which is not installed (on CI a skip fails the run)".into());
        }
        resize_leaves_no_stale_prompt_rows()
    });
    let test = if have_tmux || on_ci {
        test
    } else {
        eprintln!("ignored: a_resize_leaves_no_stale_prompt_rows needs tmux");
        test.with_ignored_flag(true)
    };
    libtest_mimic::run(&args, vec![test]).exit();
}
