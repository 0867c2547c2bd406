//! PROTOCOL.md test vectors (filled in below).
