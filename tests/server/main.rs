//! The real chat-server over loopback, speaking protocol version 2: every
//! behaviour of the room and every attack, asserted with exact messages.
//! Members are `client::conn::Conn` connections (tests/common/server.rs).
//! The tests are in modules by what they exercise; the helpers they share are here.

#[path = "../common/server.rs"]
mod server_harness;

mod attacks;
mod delivery;
mod lifecycle;
mod room;
mod scale;

use server_harness::*;
use std::time::{SystemTime, UNIX_EPOCH};
use udpchat::protocol::sealed::ByeReason;

fn bye(reason: ByeReason, text: &str) -> Got {
    Got::Bye {
        reason,
        missed: 0,
        text: text.into(),
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}
