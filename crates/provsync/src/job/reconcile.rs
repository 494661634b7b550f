//! Snapshot reconciliation (DESIGN section 5): after a complete, successful full
//! snapshot, records of the scope that this run did not see are disconnected (soft).
//! Guards: a scope whose snapshot is empty, or that would lose more than the allowed
//! share of its records, is refused and reported instead. This replaces the seeds'
//! "mark everything disconnected first" step.

use std::collections::BTreeMap;

use provsync_core::job::KindCounts;
use provsync_core::model::{EntityKind, Scope};
use serde::Serialize;

use super::{EngineError, JobContext, Progress};

/// Records swept per round trip.
const SWEEP_CHUNK: u32 = 5_000;

/// Links first, so nothing points at a record disconnected before its links.
const SWEEP_ORDER: [EntityKind; 5] = [
    EntityKind::Activity,
    EntityKind::Relation,
    EntityKind::Individual,
    EntityKind::Workplace,
    EntityKind::Code,
];

/// What the sweep did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SweepReport {
    /// Why no sweep ran (delta mode, aborted, failed, incomplete snapshot).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// Records disconnected, per kind.
    pub disconnected: BTreeMap<EntityKind, u64>,
    /// Scopes whose sweep a guard refused, with the reason.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<String>,
}

impl SweepReport {
    /// A sweep that did not run.
    pub fn skipped(reason: impl Into<String>) -> Self {
        Self {
            skipped: Some(reason.into()),
            ..Self::default()
        }
    }

    /// Records disconnected in all.
    pub fn total(&self) -> u64 {
        self.disconnected.values().sum()
    }
}

/// Scopes swept independently: each asked scope, or everything as one group.
fn scope_groups(ctx: &JobContext) -> Vec<Vec<Scope>> {
    if ctx.spec.scope.is_empty() {
        vec![Vec::new()]
    } else {
        ctx.spec.scope.iter().map(|s| vec![s.clone()]).collect()
    }
}

fn group_name(group: &[Scope]) -> String {
    if group.is_empty() {
        "(all scopes)".into()
    } else {
        group
            .iter()
            .map(|s| s.0.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Connected and unseen records of one scope, per kind.
async fn scope_census(
    ctx: &JobContext,
    group: &[Scope],
    kinds: &[EntityKind],
) -> Result<Vec<(EntityKind, u64, u64)>, EngineError> {
    let store = ctx.store();
    let mut census = Vec::with_capacity(kinds.len());
    for &kind in kinds {
        let connected = store.connected_count(&ctx.target_name, kind, group).await?;
        let unseen = store
            .unseen_count(&ctx.target_name, kind, group, &ctx.id)
            .await?;
        census.push((kind, connected, unseen));
    }
    Ok(census)
}

/// Checks the guards of one scope; `Err` says why its sweep is refused.
fn check_guards(
    ctx: &JobContext,
    group: &[Scope],
    census: &[(EntityKind, u64, u64)],
) -> Result<(), String> {
    let o = &ctx.spec.options;
    if o.allow_mass_disconnect {
        return Ok(());
    }
    let scope = group_name(group);
    let connected: u64 = census.iter().map(|k| k.1).sum();
    let unseen: u64 = census.iter().map(|k| k.2).sum();
    if unseen > 0 && unseen == connected {
        return Err(format!(
            "scope {scope}: the snapshot has no records of this scope; refusing to disconnect all {connected}"
        ));
    }
    for &(kind, connected, unseen) in census {
        if unseen > 0 && unseen as f64 > o.max_disconnect_share * connected as f64 {
            return Err(format!(
                "scope {scope}: would disconnect {unseen} of {connected} {kind} records ({:.1}%), above the allowed {:.1}%",
                100.0 * unseen as f64 / connected as f64,
                100.0 * o.max_disconnect_share
            ));
        }
    }
    Ok(())
}

/// Disconnects what the snapshot no longer has, scope by scope, within the guards.
/// Only the kinds this run delivered are swept: a code-list snapshot says nothing
/// about workplaces.
pub async fn sweep(ctx: &JobContext, counts: &KindCounts) -> Result<SweepReport, EngineError> {
    let mut report = SweepReport::default();
    let kinds: Vec<EntityKind> = SWEEP_ORDER
        .into_iter()
        .filter(|k| ctx.mapping.handles(*k))
        .filter(|k| counts.0.get(k).is_some_and(|c| c.extracted > 0))
        .collect();
    let store = ctx.store();
    for group in scope_groups(ctx) {
        let census = scope_census(ctx, &group, &kinds).await?;
        if let Err(reason) = check_guards(ctx, &group, &census) {
            tracing::warn!(job = %ctx.id, %reason, "sweep refused");
            report.refused.push(reason);
            continue;
        }
        for &(kind, _, unseen) in &census {
            if unseen == 0 {
                continue;
            }
            loop {
                let ids = store
                    .unseen_records(&ctx.target_name, kind, &group, &ctx.id, SWEEP_CHUNK)
                    .await?;
                if ids.is_empty() {
                    break;
                }
                ctx.target
                    .disconnect_in_scope(&ctx.run, kind, &group, &ids)
                    .await?;
                store
                    .mark_disconnected(&ctx.target_name, kind, &ids, &ctx.id)
                    .await?;
                *report.disconnected.entry(kind).or_default() += ids.len() as u64;
                Progress::add(&ctx.engine.progress.disconnected, ids.len() as u64);
            }
        }
    }
    Ok(report)
}
