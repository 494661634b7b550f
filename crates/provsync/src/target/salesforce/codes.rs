//! Codes sync into picklists: merge translated source codes into a value set's
//! current values (never more than 1,000, inactive ones included), so a written
//! definition keeps every value the org had.

use std::collections::HashMap;

use super::metadata::{PickValue, ValueSet};

/// Values per value set, inactive ones included.
pub const MAX_VALUES: usize = 1_000;
/// Characters per value.
pub const MAX_VALUE_LEN: usize = 255;

/// One translated code to put in a value set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// API value.
    pub value: String,
    /// Label.
    pub label: String,
    /// Active in the source.
    pub active: bool,
}

/// What the merge did with one incoming value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merged {
    /// New in the set.
    Added,
    /// Label changed or reactivated.
    Updated,
    /// Made inactive (the source retired it).
    Deactivated,
    /// Already as the source has it.
    Unchanged,
    /// Left out: the reason (the set is full, the value too long).
    NotFitted(String),
}

/// Counts per outcome for one value set.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SetReport {
    /// New values.
    pub added: u64,
    /// Changed values.
    pub updated: u64,
    /// Values made inactive.
    pub deactivated: u64,
    /// Values already right.
    pub unchanged: u64,
    /// Values left out.
    pub not_fitted: Vec<String>,
}

impl SetReport {
    /// Adds one outcome.
    pub fn add(&mut self, value: &str, m: &Merged) {
        match m {
            Merged::Added => self.added += 1,
            Merged::Updated => self.updated += 1,
            Merged::Deactivated => self.deactivated += 1,
            Merged::Unchanged => self.unchanged += 1,
            Merged::NotFitted(_) => self.not_fitted.push(value.to_string()),
        }
    }
}

/// Merges `incoming` into `set` in place; one outcome per incoming value. Values the
/// source does not send are kept as they are (another country's or hand-made ones).
pub fn merge(set: &mut ValueSet, incoming: &[Incoming]) -> Vec<Merged> {
    // Salesforce compares picklist values without case.
    let mut index: HashMap<String, usize> = set
        .values
        .iter()
        .enumerate()
        .map(|(i, v)| (v.full_name.to_lowercase(), i))
        .collect();
    incoming
        .iter()
        .map(|inc| {
            if inc.value.chars().count() > MAX_VALUE_LEN {
                return Merged::NotFitted(format!("value longer than {MAX_VALUE_LEN} characters"));
            }
            let label = if inc.label.is_empty() {
                inc.value.clone()
            } else {
                truncate(&inc.label, MAX_VALUE_LEN)
            };
            match index.get(&inc.value.to_lowercase()) {
                Some(&i) => {
                    let cur = &mut set.values[i];
                    if cur.active && !inc.active {
                        cur.active = false;
                        cur.label = label;
                        Merged::Deactivated
                    } else if cur.label != label || cur.active != inc.active {
                        cur.label = label;
                        cur.active = inc.active;
                        Merged::Updated
                    } else {
                        Merged::Unchanged
                    }
                }
                // A retired code the set never had takes no room.
                None if !inc.active => Merged::Unchanged,
                None if set.values.len() >= MAX_VALUES => Merged::NotFitted(format!(
                    "value set {} is full ({MAX_VALUES} values including inactive ones)",
                    set.name
                )),
                None => {
                    index.insert(inc.value.to_lowercase(), set.values.len());
                    set.values.push(PickValue {
                        full_name: inc.value.clone(),
                        label,
                        active: true,
                        default: false,
                    });
                    Merged::Added
                }
            }
        })
        .collect()
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::metadata::SetKind;
    use super::*;

    fn set(values: &[(&str, bool)]) -> ValueSet {
        ValueSet {
            kind: SetKind::Global,
            name: "OneKey_Specialty".into(),
            master_label: "OneKey_Specialty".into(),
            sorted: false,
            values: values
                .iter()
                .map(|(v, a)| PickValue {
                    full_name: v.to_string(),
                    label: v.to_string(),
                    active: *a,
                    default: false,
                })
                .collect(),
        }
    }

    fn inc(v: &str, label: &str, active: bool) -> Incoming {
        Incoming {
            value: v.into(),
            label: label.into(),
            active,
        }
    }

    #[test]
    fn each_outcome_of_a_merge() {
        let mut s = set(&[("A", true), ("B", true), ("C", false), ("Hand", true)]);
        let out = merge(
            &mut s,
            &[
                inc("A", "A", true),
                inc("b", "Bee", true),
                inc("C", "C", true),
                inc("A2", "New", true),
                inc("Z", "Z", false),
                inc("Hand", "Hand", false),
            ],
        );
        assert_eq!(
            out,
            [
                Merged::Unchanged,
                Merged::Updated,
                Merged::Updated,
                Merged::Added,
                Merged::Unchanged,
                Merged::Deactivated
            ]
        );
        assert_eq!(s.values.len(), 5);
        assert_eq!(s.values[1].label, "Bee");
        assert!(s.values[2].active);
        assert!(!s.values[3].active);
    }

    #[test]
    fn a_full_set_reports_what_it_left_out() {
        let names: Vec<String> = (0..999).map(|i| format!("V{i}")).collect();
        let mut s = set(&names
            .iter()
            .map(|n| (n.as_str(), false))
            .collect::<Vec<_>>());
        let out = merge(&mut s, &[inc("X1", "x", true), inc("X2", "x", true)]);
        assert_eq!(out[0], Merged::Added);
        assert!(matches!(&out[1], Merged::NotFitted(r) if r.contains("OneKey_Specialty is full")));
        assert_eq!(s.values.len(), MAX_VALUES);
    }

    proptest! {
        #[test]
        fn merge_never_passes_the_cap_and_a_second_merge_changes_nothing(
            existing in proptest::collection::vec(("[A-E][0-9]{1,3}", any::<bool>()), 0..1100),
            incoming in proptest::collection::vec(("[A-F][0-9]{1,3}", "[a-z]{0,5}", any::<bool>()), 0..1200),
        ) {
            let mut seen = std::collections::HashSet::new();
            let existing: Vec<(&str, bool)> = existing
                .iter()
                .filter(|(v, _)| seen.insert(v.to_lowercase()))
                .take(MAX_VALUES)
                .map(|(v, a)| (v.as_str(), *a))
                .collect();
            let mut s = set(&existing);
            let before = s.values.len();
            // One word per value in a batch (the source sends each code once).
            let mut seen_in = std::collections::HashSet::new();
            let incoming: Vec<Incoming> = incoming
                .iter()
                .filter(|(v, _, _)| seen_in.insert(v.to_lowercase()))
                .map(|(v, l, a)| inc(v, l, *a))
                .collect();
            let out = merge(&mut s, &incoming);
            prop_assert!(s.values.len() <= MAX_VALUES);
            // Every value the set had is still there.
            for (v, _) in &existing {
                prop_assert!(s.values.iter().any(|x| x.full_name == *v));
            }
            let added = out.iter().filter(|m| **m == Merged::Added).count();
            prop_assert_eq!(s.values.len(), before + added);
            let not_fitted = out.iter().filter(|m| matches!(m, Merged::NotFitted(_))).count();
            prop_assert!(not_fitted == 0 || s.values.len() == MAX_VALUES);
            // A second run changes nothing.
            let settled = s.clone();
            let again = merge(&mut s, &incoming);
            prop_assert_eq!(&s, &settled);
            prop_assert!(again.iter().all(|m| matches!(m, Merged::Unchanged | Merged::NotFitted(_))));
        }
    }
}
