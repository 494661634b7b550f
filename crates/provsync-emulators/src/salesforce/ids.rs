//! Salesforce record ids: a 3-character key prefix, a pod, a base-62 counter, and the
//! 3-character case-safe suffix that makes the 18-character form.

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const SUFFIX: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
/// The emulated pod and reserved character between prefix and counter.
const POD: &str = "Em0";

/// The 18-character id of the `n`-th record with that key prefix.
pub fn make_id(prefix: &str, n: u64) -> String {
    let mut digits = [b'0'; 9];
    let mut v = n;
    for d in digits.iter_mut().rev() {
        *d = BASE62[(v % 62) as usize];
        v /= 62;
    }
    let mut id = String::with_capacity(18);
    id.push_str(prefix);
    id.push_str(POD);
    id.push_str(std::str::from_utf8(&digits).expect("ascii"));
    let suffix = case_suffix(&id);
    id.push_str(&suffix);
    id
}

/// The counter of an id this emulator issued (to resume numbering after a restart).
pub fn counter_of(id: &str) -> Option<u64> {
    let digits = id.get(6..15)?;
    digits.bytes().try_fold(0u64, |acc, b| {
        let d = BASE62.iter().position(|&c| c == b)? as u64;
        Some(acc * 62 + d)
    })
}

/// The case-safe suffix of a 15-character id: one character per 5-character chunk,
/// encoding which of its characters are upper case.
pub fn case_suffix(id15: &str) -> String {
    id15.as_bytes()
        .chunks(5)
        .map(|chunk| {
            let bits = chunk
                .iter()
                .enumerate()
                .filter(|(_, c)| c.is_ascii_uppercase())
                .fold(0usize, |acc, (i, _)| acc | (1 << i));
            SUFFIX[bits] as char
        })
        .collect()
}

/// Whether the text has the shape of a Salesforce id (15 or 18 alphanumerics with a
/// valid suffix).
pub fn looks_like_id(s: &str) -> bool {
    match s.len() {
        15 => s.bytes().all(|b| b.is_ascii_alphanumeric()),
        18 => s.bytes().all(|b| b.is_ascii_alphanumeric()) && case_suffix(&s[..15]) == s[15..],
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffix_matches_a_known_salesforce_id() {
        // A public example: 001A000000ABCDe -> 001A000000ABCDeIAT? Compute from the rule
        // instead: chunk "001A0" has A at index 3 -> bit 3 -> 'I'.
        assert_eq!(&case_suffix("001A000000ABCDe")[..1], "I");
        assert_eq!(case_suffix("001000000000000"), "AAA");
    }

    #[test]
    fn ids_are_18_characters_ordered_and_reversible() {
        let a = make_id("001", 1);
        let b = make_id("001", 62);
        assert_eq!(a.len(), 18);
        assert!(a.starts_with("001"));
        assert!(a < b, "{a} < {b}");
        assert_eq!(counter_of(&b), Some(62));
        assert!(looks_like_id(&a));
        assert!(!looks_like_id("001Em0000000001XXX"));
    }
}
