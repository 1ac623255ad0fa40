//! Content digests: component identities, blob checksums.

use sha2::{Digest, Sha256};

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// `bytes` random bytes from the kernel, as lower-case hex: secrets and
/// unique ids.
pub fn random_hex(bytes: usize) -> std::io::Result<String> {
    let mut b = vec![0u8; bytes];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut b)?;
    Ok(hex(&b))
}

/// Lower-case hex SHA-256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The first 12 hex digits of a digest, as logs and messages show it.
pub fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}
