//! Many members at once: a big room joined quickly, or a few joined in order.

use super::{socket_on, Client, Got, WAIT};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// Joins `names.len()` members quickly: each on its own socket, spread over
/// loopback addresses (10 on each, within the server's per-IP limits), the
/// logins pipelined (a connection holds a random source that stays on its
/// thread, so one thread). Bounded: panics if the joins do not finish in time.
pub fn join_many(server: SocketAddr, names: &[String]) -> Vec<Client> {
    join_part(server, 0, names, 10)
}

fn join_part(server: SocketAddr, base: usize, names: &[String], per_ip: usize) -> Vec<Client> {
    const WINDOW: usize = 50;
    let mut clients = Vec::with_capacity(names.len());
    let end = Instant::now() + Duration::from_secs(120);
    let mut buf = [0u8; 2048];
    // Pipelined in small windows, so a small server receive buffer is not
    // overrun; the connection resends what gets no answer.
    for (w, window) in names.chunks(WINDOW).enumerate() {
        let mut joining: Vec<Client> = window
            .iter()
            .enumerate()
            .map(|(k, name)| {
                let g = ((base + w * WINDOW + k) / per_ip) as u32 + 1;
                let ip = Ipv4Addr::new(127, 1, (g >> 8) as u8, g as u8);
                let mut c = Client::on(socket_on(ip), server, name);
                c.sock.set_nonblocking(true).expect("nonblocking");
                c.flush();
                c
            })
            .collect();
        while !joining.is_empty() {
            assert!(Instant::now() < end, "joins did not finish in time");
            let mut k = 0;
            while k < joining.len() {
                let c = &mut joining[k];
                while let Ok((n, _)) = c.sock.recv_from(&mut buf) {
                    c.take(&buf[..n]);
                }
                let now = Instant::now();
                if c.conn.next_timeout().is_some_and(|t| now >= t) {
                    c.conn.on_timeout(now);
                    c.events();
                }
                let done = c.pending.iter().position(|g| {
                    matches!(g, Got::Welcome { .. } | Got::Refused(..) | Got::Ended(_))
                });
                match done.map(|i| c.pending.remove(i).expect("present")) {
                    None => k += 1,
                    Some(Got::Welcome { client_id, .. }) => {
                        let mut c = joining.swap_remove(k);
                        c.client_id = client_id;
                        c.sock.set_nonblocking(false).expect("blocking");
                        c.sock.set_read_timeout(Some(WAIT)).expect("timeout");
                        clients.push(c);
                    }
                    Some(other) => panic!("{} not joined: {other:?}", c.name),
                }
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    clients
}

/// Joins `names` in order; each member then reads the JOINED events of those
/// who came after it.
pub fn in_the_room<const N: usize>(server: SocketAddr, names: [&str; N]) -> [Client; N] {
    let mut members = names.map(|name| Client::join(server, name));
    for (i, m) in members.iter_mut().enumerate() {
        for _ in i + 1..N {
            m.event();
        }
    }
    members
}
