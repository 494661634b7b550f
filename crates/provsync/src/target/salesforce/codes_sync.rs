//! The codes sync: code records merged into the org's value sets (the merge itself
//! is `codes`'s).

use std::collections::BTreeMap;

use provsync_core::mapped::MappedRecord;
use provsync_core::target::{Applied, Change, Joined, Outcome, TargetError};

use super::{codes, metadata, SalesforceTarget, SfError};

/// A value set: its kind and name.
type SetKey = (metadata::SetKind, String);

impl SalesforceTarget {
    /// Codes into value sets: per set, read the current values, merge, write once.
    pub(super) async fn sync_codes(
        &self,
        records: &[&MappedRecord],
    ) -> Result<Vec<Outcome>, TargetError> {
        let _one_at_a_time = self.codes_lock.lock().await;
        let mut outcomes: Vec<Option<Outcome>> = vec![None; records.len()];
        let mut sets: BTreeMap<SetKey, Vec<(usize, codes::Incoming)>> = BTreeMap::new();
        for (i, r) in records.iter().enumerate() {
            match code_of(r) {
                Ok((key, code)) => sets.entry(key).or_default().push((i, code)),
                Err(outcome) => outcomes[i] = Some(outcome),
            }
        }
        for ((kind, name), items) in sets {
            self.merge_set(kind, &name, &items, &mut outcomes).await?;
        }
        Ok(outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or(Outcome::Failed {
                    reason: "code not processed".into(),
                })
            })
            .collect())
    }

    /// Reads one value set, merges its codes and writes it once if anything changed;
    /// sets the outcome of each of its codes and adds to the run's report.
    async fn merge_set(
        &self,
        kind: metadata::SetKind,
        name: &str,
        items: &[(usize, codes::Incoming)],
        outcomes: &mut [Option<Outcome>],
    ) -> Result<(), TargetError> {
        let current = metadata::read(&self.client, kind, name).await?;
        let mut set = match (current, kind) {
            (Some(s), _) => s,
            (None, metadata::SetKind::Global) => metadata::ValueSet {
                kind,
                name: name.to_string(),
                master_label: name.to_string(),
                sorted: false,
                values: Vec::new(),
            },
            (None, metadata::SetKind::Standard) => {
                for (i, _) in items {
                    outcomes[*i] = Some(Outcome::Failed {
                        reason: format!("standard value set {name} does not exist in the org"),
                    });
                }
                return Ok(());
            }
        };
        let incoming: Vec<codes::Incoming> = items.iter().map(|(_, c)| c.clone()).collect();
        let merged = codes::merge(&mut set, &incoming);
        let changed = merged.iter().any(|m| {
            matches!(
                m,
                codes::Merged::Added | codes::Merged::Updated | codes::Merged::Deactivated
            )
        });
        if changed {
            metadata::upsert(&self.client, &set)
                .await
                .map_err(|e| match e {
                    SfError::Api { .. } | SfError::Protocol(_) => {
                        SfError::Config(format!("writing value set {name}: {e}"))
                    }
                    other => other,
                })?;
        }
        let mut reports = self.code_reports.lock().expect("reports lock");
        let report = reports.entry(name.to_string()).or_default();
        for ((i, inc), m) in items.iter().zip(&merged) {
            report.add(&inc.value, m);
            outcomes[*i] = Some(outcome_of(m, &inc.value));
        }
        tracing::info!(value_set = %name, added = report.added, updated = report.updated,
            deactivated = report.deactivated, unchanged = report.unchanged,
            not_fitted = report.not_fitted.len(), written = changed, "Salesforce value set merged");
        Ok(())
    }
}

/// The value set a code record goes to and the value it brings; or the record's
/// outcome when it goes to none (no value set mapped) or brings no value.
fn code_of(r: &MappedRecord) -> Result<(SetKey, codes::Incoming), Outcome> {
    let text = |f: &str| match r.field(f) {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Null) | None => None,
        Some(other) => Some(other.to_string()),
    };
    let Some(set) = text("ValueSet").filter(|s| !s.is_empty()) else {
        // The codes mapping names no value set for this list: not synced.
        return Err(Outcome::Written {
            target_id: None,
            applied: None,
        });
    };
    let key = match set.split_once(':') {
        Some(("StandardValueSet", n)) => (metadata::SetKind::Standard, n.to_string()),
        Some(("GlobalValueSet", n)) => (metadata::SetKind::Global, n.to_string()),
        _ if r.table == "StandardValueSet" => (metadata::SetKind::Standard, set),
        _ => (metadata::SetKind::Global, set),
    };
    let Some(value) = text("Value").filter(|v| !v.is_empty()) else {
        return Err(Outcome::Failed {
            reason: format!("code {}: no Value mapped", r.source_id),
        });
    };
    let active = !matches!(r.field("IsActive"), Some(serde_json::Value::Bool(false)));
    Ok((
        key,
        codes::Incoming {
            value,
            label: text("Label").unwrap_or_default(),
            active,
        },
    ))
}

/// A code's outcome from what the merge did with it.
fn outcome_of(m: &codes::Merged, value: &str) -> Outcome {
    match m {
        codes::Merged::NotFitted(why) => Outcome::Failed {
            reason: format!("{why}: {value} left out"),
        },
        // The org's value set already had it as it is.
        codes::Merged::Unchanged => Outcome::Unchanged,
        // Counted as the value set changed, not as the state store guessed.
        codes::Merged::Added => Outcome::Written {
            target_id: None,
            applied: Some(Applied {
                change: Change::Created,
                joined: Joined::Connected,
            }),
        },
        codes::Merged::Updated | codes::Merged::Deactivated => Outcome::Written {
            target_id: None,
            applied: Some(Applied {
                change: Change::Updated,
                joined: Joined::Stayed,
            }),
        },
    }
}
