//! What a line of input asks for: a message, `/me`, `/msg`, `/who`, `/quit`,
//! `/help`, or a mistake. Pure.

use crate::protocol::sealed::MAX_HISTORY;
use crate::protocol::MAX_NAME_BYTES;

/// How many earlier messages `/history` shows when not told.
const DEFAULT_HISTORY: u8 = 20;

/// What a line of input asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Say(String),
    /// `/me waves`: an action, without `/me `.
    Me(String),
    Private {
        to: String,
        text: String,
    },
    Who,
    /// `/history [N]`: N earlier messages (1 to 50).
    History(u8),
    Quit,
    Help,
    Unknown(String),
    Usage(&'static str),
    Nothing,
}

/// Parses one line of input. `//text` says `/text`.
pub fn parse_line(line: &str) -> Command {
    let line = line.trim_end();
    if line.trim().is_empty() {
        return Command::Nothing;
    }
    let Some(rest) = line.strip_prefix('/') else {
        return Command::Say(line.to_string());
    };
    if rest.starts_with('/') {
        return Command::Say(rest.to_string());
    }
    let (cmd, args) = match rest.find(char::is_whitespace) {
        Some(i) => (&rest[..i], rest[i..].trim_start()),
        None => (rest, ""),
    };
    match cmd {
        "quit" | "exit" => Command::Quit,
        "who" => Command::Who,
        "history" if args.is_empty() => Command::History(DEFAULT_HISTORY),
        "history" => match args.parse::<u8>() {
            Ok(n) if (1..=MAX_HISTORY).contains(&n) => Command::History(n),
            _ => Command::Usage("/history [N], N from 1 to 50"),
        },
        "help" | "?" => Command::Help,
        "me" if args.is_empty() => Command::Usage("/me ACTION"),
        "me" => Command::Me(args.to_string()),
        "msg" => {
            let (to, text) = match args.find(char::is_whitespace) {
                Some(i) => (&args[..i], args[i..].trim_start()),
                None => (args, ""),
            };
            if to.is_empty() || to.len() > MAX_NAME_BYTES || text.is_empty() {
                Command::Usage("/msg NAME TEXT")
            } else {
                Command::Private {
                    to: to.to_string(),
                    text: text.to_string(),
                }
            }
        }
        _ => Command::Unknown(format!("/{cmd}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(parse_line("hi there "), Command::Say("hi there".into()));
        assert_eq!(parse_line("   "), Command::Nothing);
        assert_eq!(parse_line("/quit"), Command::Quit);
        assert_eq!(parse_line("/who"), Command::Who);
        assert_eq!(parse_line("/help"), Command::Help);
        assert_eq!(
            parse_line("/msg bob  hello you"),
            Command::Private {
                to: "bob".into(),
                text: "hello you".into()
            }
        );
        assert_eq!(parse_line("/msg bob"), Command::Usage("/msg NAME TEXT"));
        assert_eq!(parse_line("/msg"), Command::Usage("/msg NAME TEXT"));
        assert_eq!(parse_line("/frob x"), Command::Unknown("/frob".into()));
        assert_eq!(parse_line("//who"), Command::Say("/who".into()));
        assert_eq!(parse_line("/me  waves "), Command::Me("waves".into()));
        assert_eq!(parse_line("/me"), Command::Usage("/me ACTION"));
        assert_eq!(parse_line("/history"), Command::History(20));
        assert_eq!(parse_line("/history 5"), Command::History(5));
        for bad in ["/history 0", "/history 51", "/history x"] {
            assert_eq!(
                parse_line(bad),
                Command::Usage("/history [N], N from 1 to 50")
            );
        }
    }
}
