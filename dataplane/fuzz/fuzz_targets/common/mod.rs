//! Helpers shared by the dataplane fuzz targets.

/// Bytes that text protocols (SIP, SDP) are made of. Mapping random input onto this set
/// reaches deeper parser states than raw bytes, as mail-parser's fuzzers do.
const ALPHABET: &[u8] = b"0123456789abcdefghijklm:;=- <>@.\r\nSIPVatob/";

/// A copy of `data` with each byte mapped into [`ALPHABET`].
pub fn restrict_to_alphabet(data: &[u8]) -> Vec<u8> {
    data.iter()
        .map(|&byte| ALPHABET[usize::from(byte) % ALPHABET.len()])
        .collect()
}
