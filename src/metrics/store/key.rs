//! Byte encodings: series keys (label values) and the float lists kept in blobs.

/// Encodes label values as a series key: each value as a little-endian `u32` length
/// and its bytes.
pub fn encode_key<V: AsRef<[u8]>>(values: &[V]) -> Vec<u8> {
    let mut key = Vec::with_capacity(values.iter().map(|v| v.as_ref().len() + 4).sum());
    for v in values {
        key.extend_from_slice(&(v.as_ref().len() as u32).to_le_bytes());
        key.extend_from_slice(v.as_ref());
    }
    key
}

/// Splits a series key back into label values.
pub fn decode_key(mut key: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        if key.len() < 4 {
            return None;
        }
        let len = u32::from_le_bytes(key[..4].try_into().ok()?) as usize;
        let v = key.get(4..4 + len)?;
        key = &key[4 + len..];
        Some(v)
    })
}

pub(super) fn f64s_to_bytes(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|b| b.to_le_bytes()).collect()
}

pub(super) fn bytes_to_f64s(b: &[u8]) -> Vec<f64> {
    b.chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}
