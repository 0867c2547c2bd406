//! `chat-client [--server ADDR] [--name NAME] [--lang en|zh|zh-Hans|zh-Hant] [--known-servers FILE]
//! [--server-key FINGERPRINT] …`: a member of a udpchat room on a terminal or
//! through pipes. See the README.

use clap::{Parser, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use udpchat::client::{self, Lang};
use udpchat::trust::Fingerprint;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LangArg {
    En,
    /// Chinese in Simplified characters.
    Zh,
    /// Chinese in Simplified characters.
    #[value(name = "zh-Hans")]
    ZhHans,
    /// Chinese in Traditional characters.
    #[value(name = "zh-Hant")]
    ZhHant,
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
    /// The language of every line the client prints (default: chosen as gettext does, from
    /// LANGUAGE, LC_ALL, LC_MESSAGES, LANG; zh_TW, zh_HK and zh_MO give Traditional characters).
    #[arg(long, value_enum, value_name = "LANG")]
    lang: Option<LangArg>,
    /// Do not ring the terminal's bell when your name is mentioned or a private message arrives.
    #[arg(long)]
    no_bell: bool,
    /// When to highlight your name: auto (stdout a terminal, TERM not dumb, NO_COLOR unset), always, never.
    #[arg(long, value_enum, default_value = "auto", value_name = "WHEN")]
    color: ColorArg,
    /// The file of server keys trusted on first use (default:
    /// $XDG_DATA_HOME/udpchat/known_servers, else ~/.local/share/udpchat/known_servers).
    #[arg(long, value_name = "FILE")]
    known_servers: Option<PathBuf>,
    /// Trust only the server key with this fingerprint (SHA256:…, as
    /// `chat-server --key FILE --fingerprint` prints it); nothing is recorded.
    #[arg(long, value_name = "FINGERPRINT")]
    server_key: Option<Fingerprint>,
    /// Through pipes, give up reconnecting this many seconds after contact with the
    /// server was lost, and exit 1 (on a terminal it retries until you quit).
    #[arg(long, default_value = "60", value_name = "SECONDS", value_parser = seconds)]
    reconnect_timeout: Duration,
}

/// A positive number of seconds (fractions allowed).
fn seconds(text: &str) -> Result<Duration, String> {
    match text.parse::<f64>() {
        Ok(s) if s > 0.0 && s <= 1e9 => Ok(Duration::from_secs_f64(s)),
        _ => Err(format!("'{text}' is not a positive number of seconds")),
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ColorArg {
    Auto,
    Always,
    Never,
}

fn main() -> ExitCode {
    if let Err(e) = udpchat::stdio::reopen_closed_std_fds() {
        let e = udpchat::error::Error::io("reopen", "standard streams", e);
        udpchat::stdio::err_line(&format!("chat-client: {e}"));
        return ExitCode::from(1);
    }
    let args = Args::parse();
    let opts = client::Options {
        server: args.server,
        name: args.name,
        lang: match args.lang {
            Some(LangArg::En) => Lang::En,
            Some(LangArg::Zh | LangArg::ZhHans) => Lang::Zh,
            Some(LangArg::ZhHant) => Lang::ZhHant,
            None => Lang::from_env(),
        },
        bell: !args.no_bell,
        color: match args.color {
            ColorArg::Auto => client::ColorChoice::Auto,
            ColorArg::Always => client::ColorChoice::Always,
            ColorArg::Never => client::ColorChoice::Never,
        },
        known_servers: args.known_servers,
        server_key: args.server_key,
        reconnect_timeout: args.reconnect_timeout,
    };
    match client::run(&opts) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let e = client::error_text(opts.lang, &e);
            udpchat::stdio::err_line(&format!("chat-client: {e}"));
            ExitCode::from(1)
        }
    }
}
