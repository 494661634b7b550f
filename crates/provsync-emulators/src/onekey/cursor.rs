//! Packet cursors: self-contained positions in a sync, so any session with the same
//! scope can continue from a cursor another (expired) session handed out.
//!
//! A cursor is `ok1.` + base64url (no padding) of
//! `countries|country_index|mode|since|night|packet_size|phase|index|packet_no|check`,
//! where `check` is a 32-bit FNV-1a of the rest: a mangled cursor is refused, never
//! misread.

use std::fmt;

/// Prefix of every cursor of this format version.
const PREFIX: &str = "ok1.";

/// Full snapshot or changes since a night.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SyncMode {
    /// Every record alive on the night.
    Full,
    /// Records created, changed or removed after night `since`.
    Delta {
        /// The last night the client already has.
        since: u32,
    },
}

/// Which records a packet holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Workplaces (parents before children).
    Workplaces,
    /// Individuals with their activities.
    Individuals,
}

/// A decoded packet cursor.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PacketCursor {
    /// The session's countries, in order.
    pub countries: Vec<String>,
    /// Which of them this packet is of.
    pub country: usize,
    /// Full or delta.
    pub mode: SyncMode,
    /// The night served (the snapshot's night).
    pub night: u32,
    /// Index slots per packet.
    pub packet_size: u32,
    /// Workplaces or individuals.
    pub phase: Phase,
    /// First record index of the packet.
    pub index: u64,
    /// Packet number in the sync, from 1.
    pub packet_no: u64,
}

/// Why a cursor string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cursor: {0}")]
pub struct CursorError(pub String);

fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn b64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn b64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.as_bytes().chunks(4) {
        if chunk.len() == 1 {
            return None;
        }
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            let v = B64.iter().position(|b| b == c)? as u32;
            n |= v << (18 - 6 * i);
        }
        for i in 0..chunk.len() - 1 {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

impl PacketCursor {
    /// The cursor of the first packet of a sync.
    pub fn first(countries: Vec<String>, mode: SyncMode, night: u32, packet_size: u32) -> Self {
        Self {
            countries,
            country: 0,
            mode,
            night,
            packet_size,
            phase: Phase::Workplaces,
            index: 0,
            packet_no: 1,
        }
    }

    /// The country of this packet.
    pub fn country_code(&self) -> &str {
        &self.countries[self.country]
    }

    /// The opaque string form.
    pub fn encode(&self) -> String {
        let since = match self.mode {
            SyncMode::Full => "full".to_owned(),
            SyncMode::Delta { since } => format!("delta:{since}"),
        };
        let phase = match self.phase {
            Phase::Workplaces => "W",
            Phase::Individuals => "I",
        };
        let body = format!(
            "{}|{}|{since}|{}|{}|{phase}|{}|{}",
            self.countries.join(","),
            self.country,
            self.night,
            self.packet_size,
            self.index,
            self.packet_no
        );
        let check = fnv1a(body.as_bytes());
        format!(
            "{PREFIX}{}",
            b64_encode(format!("{body}|{check:08x}").as_bytes())
        )
    }

    /// Parses the string form; the error says what is wrong.
    pub fn decode(text: &str) -> Result<Self, CursorError> {
        let bad = |why: &str| CursorError(why.to_owned());
        let raw = text
            .strip_prefix(PREFIX)
            .ok_or_else(|| bad("does not start with `ok1.`"))?;
        let bytes = b64_decode(raw).ok_or_else(|| bad("not base64url"))?;
        let body = String::from_utf8(bytes).map_err(|_| bad("not UTF-8"))?;
        let (body, check) = body.rsplit_once('|').ok_or_else(|| bad("no checksum"))?;
        if u32::from_str_radix(check, 16).ok() != Some(fnv1a(body.as_bytes())) {
            return Err(bad("checksum mismatch (the cursor was altered)"));
        }
        let f: Vec<&str> = body.split('|').collect();
        let [countries, country, mode, night, size, phase, index, packet_no] = f[..] else {
            return Err(bad("wrong number of fields"));
        };
        let num = |s: &str, what: &str| -> Result<u64, CursorError> {
            s.parse()
                .map_err(|_| bad(&format!("{what} is not a number")))
        };
        let countries: Vec<String> = countries.split(',').map(str::to_owned).collect();
        let country = num(country, "country index")? as usize;
        if country >= countries.len() || countries.iter().any(String::is_empty) {
            return Err(bad("country index out of range"));
        }
        let mode = match mode.strip_prefix("delta:") {
            Some(s) => SyncMode::Delta {
                since: num(s, "since")? as u32,
            },
            None if mode == "full" => SyncMode::Full,
            None => return Err(bad("unknown mode")),
        };
        let phase = match phase {
            "W" => Phase::Workplaces,
            "I" => Phase::Individuals,
            _ => return Err(bad("unknown phase")),
        };
        let packet_size = num(size, "packet size")? as u32;
        if packet_size == 0 {
            return Err(bad("packet size is 0"));
        }
        Ok(Self {
            countries,
            country,
            mode,
            night: num(night, "night")? as u32,
            packet_size,
            phase,
            index: num(index, "index")?,
            packet_no: num(packet_no, "packet number")?,
        })
    }
}

impl fmt::Display for PacketCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_cursor() -> impl Strategy<Value = PacketCursor> {
        (
            proptest::collection::vec("[A-Z]{2}", 1..4),
            any::<u32>(),
            proptest::option::of(0u32..400),
            0u32..400,
            1u32..100_000,
            any::<bool>(),
            any::<u64>(),
            any::<u64>(),
        )
            .prop_map(|(countries, c, since, night, size, w, index, no)| {
                let country = c as usize % countries.len();
                PacketCursor {
                    countries,
                    country,
                    mode: since.map_or(SyncMode::Full, |since| SyncMode::Delta { since }),
                    night,
                    packet_size: size,
                    phase: if w {
                        Phase::Workplaces
                    } else {
                        Phase::Individuals
                    },
                    index,
                    packet_no: no,
                }
            })
    }

    proptest! {
        #[test]
        fn cursor_round_trips(c in any_cursor()) {
            let text = c.encode();
            prop_assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
            prop_assert_eq!(PacketCursor::decode(&text).unwrap(), c);
        }

        #[test]
        fn altered_cursor_is_refused(c in any_cursor(), at in any::<usize>(), to in 0usize..64) {
            let text = c.encode();
            let raw = &text[PREFIX.len()..];
            let i = at % raw.len();
            let mut bytes = raw.as_bytes().to_vec();
            let new = B64[to];
            prop_assume!(bytes[i] != new);
            bytes[i] = new;
            let altered = format!("{PREFIX}{}", String::from_utf8(bytes).unwrap());
            // Either refused, or (a change in the last char's unused bits) the same cursor.
            match PacketCursor::decode(&altered) {
                Err(_) => {}
                Ok(d) => prop_assert_eq!(d, c),
            }
        }

        #[test]
        fn garbage_is_refused_not_panicking(s in ".{0,80}") {
            let _ = PacketCursor::decode(&s);
            let _ = PacketCursor::decode(&format!("{PREFIX}{s}"));
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let e = PacketCursor::decode("abc").unwrap_err();
        assert!(e.to_string().contains("ok1."), "{e}");
    }
}
