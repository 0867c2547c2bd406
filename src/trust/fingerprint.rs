//! A public key's fingerprint: `SHA256:` and the unpadded standard base64 of
//! the SHA-256 of the 32 key bytes, as `ssh-keygen -l` prints one.

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

const PREFIX: &str = "SHA256:";

/// The SHA-256 of a 32-byte X25519 public key; shown and parsed as `SHA256:…`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of a public key.
    pub fn of(public_key: &[u8; 32]) -> Fingerprint {
        Fingerprint(Sha256::digest(public_key).into())
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", STANDARD_NO_PAD.encode(self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Parses `SHA256:` and 43 base64 characters (no padding), the text that
/// `--fingerprint` prints and `--server-key` takes. The error is a reason
/// for a one-line message.
impl FromStr for Fingerprint {
    type Err = String;

    fn from_str(s: &str) -> Result<Fingerprint, String> {
        let wrong = || format!("'{s}' is not a key fingerprint (SHA256: and 43 base64 characters)");
        let b64 = s.strip_prefix(PREFIX).ok_or_else(wrong)?;
        // The canonical decoder refuses padding and stray trailing bits, so
        // each fingerprint has exactly one spelling.
        let bytes = STANDARD_NO_PAD.decode(b64).map_err(|_| wrong())?;
        let hash: [u8; 32] = bytes.try_into().map_err(|_| wrong())?;
        Ok(Fingerprint(hash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    #[test]
    fn parses_its_own_text_and_nothing_else() {
        // Its base64 has a '/', to check that the URL-safe alphabet is refused.
        let good = "SHA256:MAyclgO5Kks57TlYv5JAEUgE20/TcwEsDKR0MtY0Ja4";
        let fp: Fingerprint = good.parse().unwrap();
        assert_eq!(fp.to_string(), good);
        assert_eq!(format!("{fp:?}"), good);
        let b64 = &good[PREFIX.len()..];
        // The same 32 bytes with the last character's two unused bits set.
        let last = ALPHABET.iter().position(|&c| c == b'4').unwrap();
        let sloppy = format!("{}{}", &good[..good.len() - 1], ALPHABET[last | 1] as char);
        for bad in [
            String::new(),
            "SHA256:".to_string(),
            b64.to_string(),
            format!("sha256:{b64}"),
            format!("{good}="),
            format!("{good}A"),
            good[..good.len() - 1].to_string(),
            format!("MD5:{b64}"),
            format!(" {good}"),
            format!("{good} "),
            good.replace('/', "_"),
            sloppy,
        ] {
            let err = bad.parse::<Fingerprint>().unwrap_err();
            assert!(err.contains("is not a key fingerprint"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn differs_by_key() {
        let fp = Fingerprint::of(&[7; 32]);
        assert_eq!(fp.to_string().parse::<Fingerprint>(), Ok(fp));
        assert_ne!(Fingerprint::of(&[8; 32]), fp);
    }
}
