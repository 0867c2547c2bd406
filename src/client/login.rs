//! The first login, before the fork, in one process with a blocking socket:
//! the handshake, the server's key checked against the pin (trust on first
//! use, [`ServerTrust`]), then JOIN until WELCOME. A refused name is asked
//! again on a terminal and is the end through a pipe. The protocol is the
//! connection's ([`Conn`]); this file only moves its datagrams and answers
//! its questions.

use crate::client::conn::{Conn, End, Event, SealedBodies, ServerTrust};
use crate::client::name_prompt::{self, NameInput};
use crate::client::reasons::{self, Fatal};
use crate::client::render::{self, Lang, Notice};
use crate::client::Options;
use crate::error::{Error, Result};
use crate::protocol::sealed::{decode_server, Refusal, ServerMsg, WelcomeFlags};
use crate::protocol::{self, NameError, MAX_DATAGRAM};
use std::io::{self, Write};
use std::net::UdpSocket;
use std::time::{Duration, Instant};

/// What the client keeps of a WELCOME.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Welcome {
    /// The name, as the server registered it.
    pub name: String,
    /// Members in the room, this one included.
    pub members: u32,
    /// What the room keeps and what the server serves.
    pub flags: WelcomeFlags,
    /// This client's id in message ids.
    pub client_id: u64,
    /// The run of the room's sequence.
    pub epoch: u32,
    /// The room sequence of the last room message so far.
    pub room_seq: u64,
}

impl Welcome {
    /// The WELCOME in `body`, if it is one.
    pub(crate) fn decode(body: &[u8]) -> Option<Welcome> {
        match decode_server(body) {
            Ok(ServerMsg::Welcome(w)) => Some(Welcome {
                name: w.name.to_string(),
                members: w.members,
                flags: w.flags,
                client_id: w.client_id,
                epoch: w.epoch,
                room_seq: w.room_seq,
            }),
            _ => None,
        }
    }
}

/// A member: the connection and its WELCOME.
pub(crate) struct Joined {
    pub conn: Conn<SealedBodies>,
    pub welcome: Welcome,
}

/// A fresh random number from the OS random source (session ids, jitter).
pub(crate) fn random_u64() -> u64 {
    getrandom::u64().unwrap_or_else(|_| {
        // No OS random source: ids only need to differ between sessions.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        t ^ ((std::process::id() as u64) << 32)
    })
}

/// Logs in as the given name or one asked for. `Ok(Err(code))`: no name was
/// given (Ctrl-D or Ctrl-C at the prompt).
pub(crate) fn first_login(
    socket: &UdpSocket,
    opts: &Options,
    trust: &ServerTrust,
    interactive: bool,
    terminal: bool,
) -> Result<std::result::Result<Joined, u8>> {
    let lang = opts.lang;
    let mut given = opts.name.clone();
    let mut name = match next_name(&mut given, lang, interactive)? {
        Ok(n) => n,
        Err(code) => return Ok(Err(code)),
    };
    let reconnect_timeout = (!interactive).then_some(opts.reconnect_timeout);
    let mut conn = Conn::connect(
        SealedBodies,
        &name,
        reconnect_timeout,
        Box::new(random_u64),
        Instant::now(),
    );
    let progress = Progress::new(terminal, lang, &opts.server);
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    loop {
        let now = Instant::now();
        while let Some(d) = conn.poll_transmit() {
            if socket.send(&d).as_ref().is_err_and(refused) {
                conn.on_unreachable(now);
            }
        }
        if let Some(ev) = conn.poll_event() {
            match ev {
                Event::VerifyKey(key) => {
                    progress.erase();
                    for line in trust.check(&key)? {
                        crate::stdio::err_line(&format!("chat-client: {line}"));
                    }
                    conn.key_checked(now, true);
                    progress.show();
                }
                Event::Welcome { body, .. } => {
                    progress.erase();
                    let welcome = Welcome::decode(&body).ok_or_else(|| {
                        fatal(
                            lang,
                            &Fatal::NoAnswer {
                                server: &opts.server,
                            },
                        )
                    })?;
                    return Ok(Ok(Joined { conn, welcome }));
                }
                Event::Refused { body } => {
                    progress.erase();
                    let Ok(ServerMsg::Refused(r)) = decode_server(&body) else {
                        continue;
                    };
                    let reason = reasons::refusal(lang, &name, &r);
                    let again = matches!(
                        r,
                        Refusal::Taken { .. } | Refusal::Reserved { .. } | Refusal::InvalidName(_)
                    );
                    if !interactive || !again {
                        return Err(cannot_join(lang, &name, &reason));
                    }
                    let _ = writeln!(io::stderr(), "{}: {reason}", render::escape(&name));
                    name = match next_name(&mut None, lang, interactive)? {
                        Ok(n) => n,
                        Err(code) => return Ok(Err(code)),
                    };
                    conn.join(Instant::now(), &name);
                    progress.show();
                }
                Event::Ended(end) => {
                    progress.erase();
                    return Err(login_ended(lang, &opts.server, trust, &end));
                }
                Event::Body(_) | Event::Reconnecting { .. } => {}
            }
            continue;
        }
        let now = Instant::now();
        let wake = conn.next_timeout();
        if wake.is_some_and(|w| now >= w) {
            conn.on_timeout(now);
            continue;
        }
        let wait = wake.map_or(Duration::from_secs(1), |w| w - now);
        let _ = socket.set_read_timeout(Some(wait.max(Duration::from_millis(1))));
        match socket.recv(&mut buf) {
            Ok(n) if n <= MAX_DATAGRAM => conn.on_datagram(Instant::now(), &buf[..n]),
            Ok(_) => {} // longer than any datagram of the protocol
            Err(e) if refused(&e) => conn.on_unreachable(Instant::now()),
            Err(e) => match e.kind() {
                io::ErrorKind::WouldBlock
                | io::ErrorKind::TimedOut
                | io::ErrorKind::Interrupted => {}
                _ => return Err(Error::io("receive from", &opts.server, e)),
            },
        }
    }
}

fn refused(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::ConnectionRefused
}

fn fatal(lang: Lang, f: &Fatal<'_>) -> Error {
    Error::plain(reasons::fatal_line(lang, f))
}

fn cannot_join(lang: Lang, name: &str, reason: &str) -> Error {
    fatal(
        lang,
        &Fatal::CannotJoin {
            name,
            reason,
            again: false,
        },
    )
}

/// Why the first login ended without a WELCOME.
fn login_ended(lang: Lang, server: &str, trust: &ServerTrust, end: &End) -> Error {
    match end {
        End::Unreachable => fatal(lang, &Fatal::ConnectionRefused { server }),
        End::KeyChanged { key, pinned } => trust.changed_error(key, pinned),
        _ => fatal(lang, &Fatal::NoAnswer { server }),
    }
}

/// The next name to try: the one given (the first time), else one asked
/// for. A name that breaks a rule the client can check is refused here,
/// without asking the server: asked again on a terminal, the end through a
/// pipe.
fn next_name(
    given: &mut Option<String>,
    lang: Lang,
    interactive: bool,
) -> Result<std::result::Result<String, u8>> {
    loop {
        let name = match given.take() {
            Some(n) => n.trim().to_string(),
            None => match name_prompt::read_name(lang, interactive)? {
                NameInput::Name(n) => n,
                NameInput::Quit(code) => return Ok(Err(code)),
            },
        };
        let reason = match protocol::check_name(&name) {
            Ok(()) | Err(NameError::LooksLike(_)) => return Ok(Ok(name)),
            Err(NameError::Invalid(why)) => reasons::invalid_name(lang, &name, why),
            Err(NameError::Reserved(word)) => {
                reasons::refusal(lang, &name, &Refusal::Reserved { like: word })
            }
        };
        if !interactive {
            return Err(cannot_join(lang, &name, &reason));
        }
        let _ = writeln!(io::stderr(), "{}: {reason}", render::escape(&name));
    }
}

/// `-- connecting to ADDR…` on a terminal while the login waits (erased
/// when it is over or something else is said).
struct Progress {
    line: Option<String>,
}

impl Progress {
    fn new(terminal: bool, lang: Lang, server: &str) -> Progress {
        let p = Progress {
            line: terminal.then(|| render::notice_line(lang, &Notice::Connecting(server))),
        };
        p.show();
        p
    }

    fn show(&self) {
        if let Some(line) = &self.line {
            let mut out = io::stdout();
            let _ = write!(out, "{line}").and_then(|_| out.flush());
        }
    }

    fn erase(&self) {
        if self.line.is_some() {
            let mut out = io::stdout();
            let _ = write!(out, "\r\x1b[K").and_then(|_| out.flush());
        }
    }
}
