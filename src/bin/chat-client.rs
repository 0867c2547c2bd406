//! `chat-client [--server ADDR] [--name NAME] [--lang en|zh]`: a member of a
//! udpchat room on a terminal or through pipes. See the README.

use clap::{Parser, ValueEnum};
use std::process::ExitCode;
use udpchat::client::{self, render::Lang};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LangArg {
    En,
    Zh,
}

/// A member of a udpchat room: type lines to say them; /help lists the commands.
#[derive(Parser, Debug)]
#[command(name = "chat-client", version)]
struct Args {
    /// The chat server, HOST:PORT (every address HOST resolves to is tried).
    #[arg(long, default_value = "127.0.0.1:8888", value_name = "ADDR",
          value_parser = udpchat::net::parse_host_port)]
    server: String,
    /// The name to join as (asked for when absent).
    #[arg(long)]
    name: Option<String>,
    /// The language of the client's lines (default: zh when LC_ALL, LC_MESSAGES
    /// or LANG starts with "zh", else en).
    #[arg(long, value_enum)]
    lang: Option<LangArg>,
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            udpchat::stdio::err_line(&format!("chat-client: {e}"));
            ExitCode::from(1)
        }
    }
}

fn run() -> udpchat::error::Result<u8> {
    udpchat::stdio::reopen_closed_std_fds()
        .map_err(|e| udpchat::error::Error::io("reopen", "standard streams", e))?;
    let args = Args::parse();
    let opts = client::Options {
        server: args.server,
        name: args.name,
        lang: match args.lang {
            Some(LangArg::En) => Lang::En,
            Some(LangArg::Zh) => Lang::Zh,
            None => Lang::from_env(),
        },
    };
    client::run(&opts)
}
