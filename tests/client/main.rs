//! chat-client through pipes: the real binary against a scripted version-2
//! server (for what a correct server never does: escapes in text, lost
//! events, refusals on demand) and against the real chat-server.
//! The tests are in modules by what they exercise.

#[path = "../common/client.rs"]
mod common;

mod connection;
mod display;
mod leaving;
mod login;
mod real_server;
