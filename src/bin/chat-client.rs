//! `chat-client [--server ADDR] [--name NAME] [--lang en|zh]`: a member of a
//! udpchat room on a terminal or through pipes. See the README.

use clap::{Parser, ValueEnum};
use std::process::ExitCode;
use udpchat::client::{self, Lang};

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
