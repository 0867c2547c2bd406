//! The test vectors of PROTOCOL.md, read from the file itself and recomputed
//! with this module, so that the document and the code cannot drift apart.

use super::cookie::cookie_datagram;
use super::handshake::parse_init;
use super::*;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

const PROTOCOL_MD: &str = include_str!("../../PROTOCOL.md");

/// `name = value` lines (a value may go on over indented lines) from the
/// fenced blocks of the "Test vectors" section.
pub(crate) fn vectors() -> BTreeMap<String, String> {
    let section = PROTOCOL_MD
        .split("\n## Test vectors")
        .nth(1)
        .expect("PROTOCOL.md has a Test vectors section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut map = BTreeMap::new();
    let mut last: Option<String> = None;
    for (i, block) in section.split("```").enumerate() {
        if i % 2 == 0 {
            continue; // outside a fenced block
        }
        for line in block.lines().skip(1) {
            if line.starts_with(' ') && !line.trim().is_empty() {
                let name = last.as_ref().expect("a continuation after a value");
                map.entry(name.clone())
                    .and_modify(|v: &mut String| v.push_str(line.trim()));
            } else if let Some((name, value)) = line.split_once(" =") {
                let name = name.trim().to_string();
                assert!(
                    map.insert(name.clone(), value.trim().to_string()).is_none(),
                    "{name} twice"
                );
                last = Some(name);
            }
        }
    }
    map
}

struct Check {
    v: BTreeMap<String, String>,
    wrong: Vec<String>,
}

impl Check {
    fn get(&self, name: &str) -> &str {
        self.v
            .get(name)
            .unwrap_or_else(|| panic!("PROTOCOL.md has no vector {name}"))
    }
    fn hex<const N: usize>(&self, name: &str) -> [u8; N] {
        let b = hex(self.get(name));
        b.try_into()
            .unwrap_or_else(|_| panic!("{name} is not {N} bytes"))
    }
    fn u64(&self, name: &str) -> u64 {
        u64::from_be_bytes(self.hex(name))
    }
    fn addr(&self, name: &str) -> SocketAddr {
        self.get(name).parse().expect("an address")
    }
    fn expect(&mut self, name: &str, computed: &[u8]) {
        self.expect_text(name, &to_hex(computed));
    }
    fn expect_text(&mut self, name: &str, computed: &str) {
        if self.v.get(name).map(String::as_str) != Some(computed) {
            self.wrong.push(format!("{name} = {computed}"));
        }
    }
}

/// The bytes of a hex string (the test vectors' notation).
pub(crate) fn hex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd hex {s}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// `b` in lower-case hex.
pub(crate) fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn protocol_md_test_vectors() {
    let mut c = Check {
        v: vectors(),
        wrong: Vec::new(),
    };
    let now = Instant::now();

    // Cookies.
    let cookies = CookieKey::new(c.hex("cookie_secret"));
    let unix = c.get("unix_seconds").parse::<u64>().expect("a number");
    let v4 = cookies.make(unix, c.addr("client_address"));
    c.expect("cookie", &v4);
    let v6 = cookies.make(unix, c.addr("client_address_v6"));
    c.expect("cookie_v6", &v6);
    assert!(cookies.check(unix + COOKIE_WINDOW_SECS, c.addr("client_address"), &v4));

    // The handshake with fixed keys.
    let key = ServerKey::new(c.hex("server_static_private"))
        .with_ephemeral(c.hex("server_ephemeral_private"));
    let id_c = c.u64("id_c");
    let id_s = c.u64("id_s");
    let mut client = ClientHandshake::new(id_c).with_ephemeral(c.hex("client_ephemeral_private"));
    client.on_cookie(&cookie_datagram(id_c, &v4)).unwrap();
    let init = client.init_datagram();
    c.expect("init", &init);
    let init = parse_init(&init).unwrap();
    let rekey_after = u32::from_be_bytes(c.hex("rekey_after_s"));
    let (mut server, response) = key.respond(&init, id_s, rekey_after, now).unwrap();
    c.expect("response", &response);
    let est = client.on_response(&response, None, now).unwrap();
    c.expect("server_static_public", &est.server_key);
    c.expect("handshake_hash", &est.handshake_hash);
    let fingerprint = crate::trust::Fingerprint::of(&est.server_key).to_string();
    c.expect_text("fingerprint", &fingerprint);

    // The first datagram each way.
    let mut session = est.session;
    let mut out = [0u8; MAX_DATAGRAM];
    let n = session.seal(&c.hex::<7>("join_body"), &mut out).unwrap();
    c.expect("first_client_data", &out[..n]);
    let mut plain = [0u8; MAX_DATAGRAM];
    assert!(server.open(&out[..n], &mut plain).is_ok());
    let n = server
        .seal(&c.hex::<5>("keepalive_body"), &mut out)
        .unwrap();
    c.expect("first_server_data", &out[..n]);
    assert!(session.open(&out[..n], &mut plain).is_ok());

    // A sealed datagram with a fixed key and counter (server to client).
    server.set_keys(&c.hex("data_key"));
    server.set_next_counter(c.u64("data_counter"));
    let n = server.seal(&hex(c.get("data_body")), &mut out).unwrap();
    c.expect("data_datagram", &out[..n]);

    // A rekey inside that session, with fixed ephemeral keys.
    let new_id_c = c.u64("new_id_c");
    let mut rekey = ClientRekey::start_with(
        &session,
        new_id_c,
        Some(&c.hex("rekey_client_ephemeral_private")),
    )
    .unwrap();
    c.expect("rekey_init_body", rekey.body());
    let key = key.with_ephemeral(c.hex("rekey_server_ephemeral_private"));
    let (_, answer) = key
        .respond_rekey(&server, rekey.body(), c.u64("new_id_s"), rekey_after, now)
        .unwrap();
    c.expect("rekey_response_body", &answer);
    let est2 = rekey
        .on_response(&answer, Some(&est.server_key), now)
        .unwrap();
    c.expect("rekey_handshake_hash", &est2.handshake_hash);

    // Stateless reset.
    c.expect("reset_token", &key.reset_key().token(id_s));
    c.expect("reset_datagram", &key.reset_key().reset_datagram(id_s));
    assert!(session.is_reset(&key.reset_key().reset_datagram(id_s)));

    assert!(
        c.wrong.is_empty(),
        "PROTOCOL.md's vectors differ from the code; computed:\n{}",
        c.wrong.join("\n")
    );
}
