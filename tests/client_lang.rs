//! chat-client in Traditional Chinese through the real binary: an error line
//! has no character left in its Simplified form.

#[path = "common/client.rs"]
mod common;

use common::*;

/// The Simplified side of the client's conversion table (the rows
/// `('简', '繁'),` of src/client/lang.rs).
fn simplified_characters() -> Vec<char> {
    include_str!("../src/client/lang.rs")
        .lines()
        .filter_map(|l| {
            let c: Vec<char> = l.trim().chars().collect();
            match c[..] {
                ['(', '\'', s, '\'', ',', ' ', '\'', _, '\'', ')', ','] => Some(s),
                _ => None,
            }
        })
        .collect()
}

#[test]
fn connection_refused_in_traditional_characters() {
    let simplified = simplified_characters();
    assert!(simplified.len() > 100, "{simplified:?}");
    assert!(['运', '着', '吗'].iter().all(|c| simplified.contains(c)));
    let addr = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().to_string()
    };
    for by_flag in [true, false] {
        let mut cmd = std::process::Command::new(CLIENT);
        cmd.args(["--server", &addr, "--name", "x"]);
        cmd.env_remove("LANGUAGE")
            .env_remove("LC_ALL")
            .env_remove("LC_MESSAGES");
        if by_flag {
            cmd.args(["--lang", "zh-Hant"]).env("LANG", "C");
        } else {
            cmd.env("LANG", "zh_TW.UTF-8");
        }
        let mut c = Client::spawn_cmd(cmd);
        assert_eq!(c.wait_clean(WAIT).code(), Some(1));
        let err = c.err.rest(WAIT);
        assert_eq!(
            err,
            [format!(
                "chat-client: 連接被拒絕: {addr} 上運行著 chat-server 嗎?"
            )],
            "by flag: {by_flag}"
        );
        let left: String = err[0].chars().filter(|c| simplified.contains(c)).collect();
        assert_eq!(left, "", "Simplified characters in {:?}", err[0]);
    }
}
