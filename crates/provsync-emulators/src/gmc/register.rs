//! The emulator's deterministic register of doctors connected to designated bodies.
//!
//! Night 0 puts `doctors_per_body` doctors in each body. Every later night each
//! connected doctor may leave GMC's list (2%), move to another body (5%) or have an
//! attribute change (3%), and new doctors join (2% of the initial count). The same
//! (seed, night) always gives the same register.

/// The size and history of a generated register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegisterSpec {
    /// Designated bodies.
    pub bodies: u32,
    /// Doctors per body on night 0.
    pub doctors_per_body: u32,
    /// Seed of every random choice.
    pub seed: u64,
    /// Night of the register (0 = the initial state).
    pub night: u32,
}

/// One doctor as `GetDoctorsForDB` returns it (all strings, dates as dd/MM/yyyy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Doctor {
    /// 7-digit GMC reference number.
    pub gmc_reference_number: String,
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// Revalidation submission date.
    pub submission_date: String,
    /// Doctor status.
    pub doctor_status: String,
    /// Breach flag.
    pub breach: String,
    /// Date the doctor was added to the body.
    pub date_added: String,
    /// Yes, No or On Hold.
    pub under_notice: String,
    /// Investigation flag.
    pub investigation: String,
    /// Preliminary investigation flag.
    pub preliminary_investigation: String,
    /// Sanction.
    pub sanction: String,
}

/// Designated body codes GMC's documentation gives as examples.
pub const DOCUMENTED_BODIES: [&str; 3] = ["1-AIIDHJ", "1-AIIDMQ", "1-AIIDWA"];

const GIVEN: &[&str] = &[
    "Amelia", "Oliver", "Isla", "George", "Ava", "Noah", "Mia", "Arthur", "Ivy", "Muhammad",
    "Freya", "Leo", "Priya", "Harry", "Sofia", "Oscar", "Aisha", "Jack", "Grace", "Rohan",
];
const FAMILY: &[&str] = &[
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Patel",
    "Robinson", "Wright", "Thompson", "Evans", "Walker", "White", "Roberts", "Green", "Hall",
    "Khan", "O'Neill",
];
const STATUSES: &[&str] = &[
    "Licensed",
    "Licensed",
    "Licensed",
    "Registered without licence",
];
const UNDER_NOTICE: &[&str] = &["No", "No", "No", "Yes", "On Hold"];
const SANCTIONS: &[&str] = &["None", "None", "None", "Conditions", "Undertakings"];

/// SplitMix64 of the inputs: a stable pseudo-random number per (seed, doctor, night, salt).
fn mix(seed: u64, doctor: u64, night: u32, salt: u64) -> u64 {
    let mut z = seed
        ^ doctor.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (u64::from(night) << 40)
        ^ salt.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn pick<'a>(list: &[&'a str], r: u64) -> &'a str {
    list[(r % list.len() as u64) as usize]
}

fn date(base: chrono::NaiveDate, days: u64) -> String {
    (base + chrono::Days::new(days))
        .format("%d/%m/%Y")
        .to_string()
}

/// Where a doctor is on a night, and the night its attributes last changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Membership {
    body: u32,
    attributes_night: u32,
}

impl RegisterSpec {
    fn initial(&self) -> u64 {
        u64::from(self.bodies) * u64::from(self.doctors_per_body)
    }

    fn joiners_per_night(&self) -> u64 {
        (self.initial() / 50).max(1)
    }

    /// Doctors that ever existed up to this night.
    fn pool(&self) -> u64 {
        self.initial() + u64::from(self.night) * self.joiners_per_night()
    }

    /// The code of body `index`: the first bodies carry the codes GMC documents as
    /// examples (so a job written from the documentation runs against the
    /// emulator), the others `1-` and six letters counted from `1-AAAAAD` (the
    /// documented codes come only after millions of bodies).
    pub fn body_code(&self, index: u32) -> String {
        if let Some(code) = DOCUMENTED_BODIES.get(index as usize) {
            return (*code).to_owned();
        }
        let mut n = u64::from(index);
        let mut letters = [b'A'; 6];
        for l in letters.iter_mut().rev() {
            *l = b'A' + (n % 26) as u8;
            n /= 26;
        }
        format!("1-{}", String::from_utf8_lossy(&letters))
    }

    /// Every body code, in index order.
    pub fn body_codes(&self) -> Vec<String> {
        (0..self.bodies).map(|b| self.body_code(b)).collect()
    }

    /// The index of a body code, if it is one of this register's.
    pub fn body_index(&self, code: &str) -> Option<u32> {
        (0..self.bodies).find(|&b| self.body_code(b) == code)
    }

    fn membership(&self, doctor: u64) -> Option<Membership> {
        let initial = self.initial();
        let born = if doctor < initial {
            0
        } else {
            1 + ((doctor - initial) / self.joiners_per_night()) as u32
        };
        if born > self.night || self.bodies == 0 {
            return None;
        }
        let mut m = Membership {
            body: if doctor < initial {
                (doctor % u64::from(self.bodies)) as u32
            } else {
                (mix(self.seed, doctor, born, 1) % u64::from(self.bodies)) as u32
            },
            attributes_night: born,
        };
        for night in born + 1..=self.night {
            let r = mix(self.seed, doctor, night, 2) % 1000;
            if r < 20 {
                return None;
            } else if r < 70 && self.bodies > 1 {
                let step = 1 + mix(self.seed, doctor, night, 3) % u64::from(self.bodies - 1);
                m.body = ((u64::from(m.body) + step) % u64::from(self.bodies)) as u32;
            } else if r < 100 {
                m.attributes_night = night;
            }
        }
        Some(m)
    }

    fn doctor(&self, index: u64, attributes_night: u32) -> Doctor {
        let base = |y, m, d| chrono::NaiveDate::from_ymd_opt(y, m, d).expect("valid date");
        let r = |salt| mix(self.seed, index, 0, salt);
        let a = |salt| mix(self.seed, index, attributes_night, salt);
        let flag = |salt| if a(salt) % 20 == 0 { "Yes" } else { "No" };
        Doctor {
            gmc_reference_number: format!("{:07}", 1_000_000 + index),
            first_name: pick(GIVEN, r(10)).to_owned(),
            last_name: pick(FAMILY, r(11)).to_owned(),
            submission_date: date(base(2026, 1, 1), a(12) % 1000),
            doctor_status: pick(STATUSES, a(13)).to_owned(),
            breach: flag(14).to_owned(),
            date_added: date(base(2012, 1, 1), r(15) % 5000),
            under_notice: pick(UNDER_NOTICE, a(16)).to_owned(),
            investigation: flag(17).to_owned(),
            preliminary_investigation: flag(18).to_owned(),
            sanction: pick(SANCTIONS, a(19)).to_owned(),
        }
    }

    /// The doctor with this GMC number (the register numbers doctors from 1000000),
    /// with the attributes of the night they joined; `None` for a number it cannot give.
    pub fn doctor_numbered(&self, gmc: &str) -> Option<Doctor> {
        if gmc.len() != 7 {
            return None;
        }
        let index = gmc.parse::<u64>().ok()?.checked_sub(1_000_000)?;
        Some(self.doctor(index, 0))
    }

    /// The doctors connected to body `index` on this night, by GMC number.
    pub fn doctors_of(&self, index: u32) -> Vec<Doctor> {
        (0..self.pool())
            .filter_map(|d| {
                let m = self.membership(d)?;
                (m.body == index).then(|| self.doctor(d, m.attributes_night))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(night: u32) -> RegisterSpec {
        RegisterSpec {
            bodies: 4,
            doctors_per_body: 200,
            seed: 7,
            night,
        }
    }

    fn members(s: &RegisterSpec) -> Vec<(u32, String)> {
        (0..s.bodies)
            .flat_map(|b| {
                s.doctors_of(b)
                    .into_iter()
                    .map(move |d| (b, d.gmc_reference_number))
            })
            .collect()
    }

    #[test]
    fn night_zero_fills_every_body_with_its_doctors() {
        let s = spec(0);
        for b in 0..4 {
            assert_eq!(s.doctors_of(b).len(), 200);
        }
        assert_eq!(s.body_code(0), "1-AIIDHJ");
        assert_eq!(s.body_index("1-AIIDWA"), Some(2));
        assert_eq!(s.body_index("1-AAAAAD"), Some(3));
        assert_eq!(s.body_index("1-AAAAAA"), None);
    }

    #[test]
    fn the_same_seed_and_night_give_the_same_register() {
        assert_eq!(members(&spec(3)), members(&spec(3)));
        assert_eq!(spec(3).doctors_of(1), spec(3).doctors_of(1));
    }

    #[test]
    fn later_nights_move_add_and_remove_doctors() {
        let before: std::collections::BTreeMap<String, u32> =
            members(&spec(0)).into_iter().map(|(b, d)| (d, b)).collect();
        let after: std::collections::BTreeMap<String, u32> =
            members(&spec(1)).into_iter().map(|(b, d)| (d, b)).collect();
        let moved = after
            .iter()
            .filter(|(d, b)| before.get(*d).is_some_and(|old| old != *b))
            .count();
        let added = after.keys().filter(|d| !before.contains_key(*d)).count();
        let removed = before.keys().filter(|d| !after.contains_key(*d)).count();
        assert!(
            moved > 10 && added == 16 && removed > 3,
            "{moved} {added} {removed}"
        );
    }

    #[test]
    fn a_listed_number_is_that_doctor() {
        let d = spec(0).doctor_numbered("1000005").unwrap();
        assert_eq!(d, spec(0).doctors_of(1)[1]);
        assert_eq!(spec(0).doctor_numbered("999999"), None);
        assert_eq!(spec(0).doctor_numbered("0999999"), None);
    }

    #[test]
    fn dates_are_written_day_month_year() {
        let d = &spec(0).doctors_of(0)[0];
        let parts: Vec<&str> = d.submission_date.split('/').collect();
        assert_eq!(parts.len(), 3, "{}", d.submission_date);
        assert_eq!(parts[2].len(), 4);
        assert_eq!(d.gmc_reference_number.len(), 7);
    }
}
