//! The text of a load message: who sent it, its number and when, in fixed
//! decimal fields so a receiver reads them without searching:
//! `L` + sender (2 digits) + message number (9) + send time in ns since the
//! run's origin (14), padded with `.` to the text length.

/// The shortest text that holds the fields.
pub const MIN_LEN: usize = 1 + 2 + 9 + 14;

/// Writes the text of message `k` of sender `s`, sent at `ns`, into `buf`
/// (whose length is the text length, at least [`MIN_LEN`]).
pub fn write(buf: &mut [u8], s: usize, k: usize, ns: u64) {
    debug_assert!(buf.len() >= MIN_LEN);
    buf[0] = b'L';
    digits(&mut buf[1..3], s as u64);
    digits(&mut buf[3..12], k as u64);
    digits(&mut buf[12..26], ns);
    buf[MIN_LEN..].fill(b'.');
}

/// Reads (sender, message number, send time) back, or `None` for any other text.
pub fn parse(t: &[u8]) -> Option<(usize, usize, u64)> {
    if t.len() < MIN_LEN || t[0] != b'L' {
        return None;
    }
    Some((
        number(&t[1..3])? as usize,
        number(&t[3..12])? as usize,
        number(&t[12..26])?,
    ))
}

fn digits(out: &mut [u8], mut v: u64) {
    for d in out.iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

fn number(d: &[u8]) -> Option<u64> {
    d.iter().try_fold(0u64, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + (c - b'0') as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut b = [0u8; 64];
        write(&mut b, 3, 123_456, 98_765_432_101);
        assert_eq!(&b[..26], b"L0300012345600098765432101");
        assert!(b[26..].iter().all(|&c| c == b'.'));
        assert_eq!(parse(&b), Some((3, 123_456, 98_765_432_101)));
        assert!(udpchat::protocol::check_text(
            std::str::from_utf8(&b).unwrap()
        ));
        assert_eq!(parse(b"hello"), None);
        assert_eq!(parse(b"L03x0012345600098765432101"), None);
    }
}
