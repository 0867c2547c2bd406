//! udpchat: three small Unix tools from a course note on `fork`, zombies and epoll.
//!
//! * `pcopy SRC DST`: a file copier that forks; each process copies its own
//!   byte range into a preallocated destination with positioned I/O.
//! * `chat-server`: one UDP chat room on a mio poll loop, with an admin
//!   console on stdin; the wire format is PROTOCOL.md.
//! * `chat-client`: a member of a UDP chat room that logs in, then forks into a
//!   sender and a receiver.
//!
//! The load generator `chat-load` is a package of its own (`tools/chat-load`)
//! that uses this library's public API.
//!
//! # Layout
//!
//! * [`client`]: the chat client: login handshake, the fork into sender and
//!   receiver, retransmission, the line editor, terminal modes and rendering.
//! * [`error`]: the one error type, which names the operation, the path or
//!   address, and the reason.
//! * [`gate`]: what stands between the network and the room, sans-IO: the
//!   cookie round-trip, handshakes and their budgets, opening and sealing,
//!   rekeys, roaming and stateless resets; decisions come out as values.
//! * [`net`]: the server's socket and batched `recvmmsg`/`sendmmsg` with each
//!   datagram's local address, shared by the server and `chat-load`.
//! * [`pcopy`]: the fork-split file copier: plan, destination (a nameless file
//!   linked into place), clones, workers (the parent in the kernel, children
//!   through mappings), report.
//! * [`process`]: process-wide effects by name: the fork that checks the process
//!   is single-threaded, waiting only for one's own children, signal
//!   dispositions and masks.
//! * [`protocol`]: the chat wire format of PROTOCOL.md (encode, decode, limits,
//!   name and text rules), pure functions over bytes.
//! * [`room`]: the chat room as a sans-IO state machine: datagram, source and
//!   time in, datagrams to send out as values.
//! * [`server`]: the chat server's mio loop over the socket, the console on
//!   stdin and the signals.
//! * [`session`]: the sealed session of protocol version 2, sans-IO: cookie,
//!   Noise handshake, sealing and replay window, rekey, reset tokens, path checks.
//! * [`store`]: the room history behind one small trait: SQLite written by a
//!   thread of its own (`chat-server --db`), or memory only (`--db none`).
//! * [`stdio`]: reopening closed standard fds and writing lines without
//!   panicking on a closed pipe.
//! * [`trust`]: the server's long-term key and its key file, key
//!   fingerprints, the client's known-servers file (trust on first use), and
//!   resume tickets.

pub mod client;
pub mod error;
pub mod gate;
pub mod net;
pub mod pcopy;
pub mod process;
pub mod protocol;
pub mod room;
pub mod server;
pub mod session;
pub mod stdio;
pub mod store;
pub mod trust;
