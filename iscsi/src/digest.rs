//! CRC32C (Castagnoli) for header and data digests (RFC 7143 13.1).

/// CRC32C of `data`, sent on the wire little-endian.
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}
