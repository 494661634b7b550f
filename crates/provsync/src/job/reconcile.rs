//! Snapshot reconciliation (DESIGN section 5): after a complete, successful full
//! snapshot, records of the scope that this run did not see are disconnected (soft).
//! Guards: a scope whose snapshot is empty, or that would lose more than the allowed
//! share of its records, is refused and reported instead. This replaces the seeds'
//! "mark everything disconnected first" step.
//!
//! When the source delivers each scope whole (a GMC designated body, in one page or
//! several), the pages say so ([`ScopeSnapshot`]: every page names its scope, the
//! last says how it ended) and reconciliation is per scope: a scope whose complete
//! last page and every other page were loaded is swept even if another scope
//! failed, or the
//! source refused the run's credentials on another scope (the run then ends
//! `failed`, after the sweep); a failed scope disconnects nobody. Otherwise the
//! run's snapshot is one: all or nothing.

use std::collections::BTreeMap;

use provsync_core::job::{JobSpec, KindCounts};
use provsync_core::model::{EntityKind, Scope};
use provsync_core::source::ScopeSnapshot;
use provsync_core::store::PageEntry;
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
    /// Each scope of the job: what happened to it and its counts.
    pub scopes: Vec<ScopeReport>,
}

/// What happened to one scope (one GMC designated body) in the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScopeOutcome {
    /// Its snapshot was complete: records it no longer has were disconnected.
    Swept,
    /// The snapshot had none of its records: nobody was disconnected.
    EmptyNoSweep,
    /// The source could not deliver it: nobody was disconnected.
    Failed,
    /// It would lose more than the allowed share: nobody was disconnected.
    RefusedByGuard,
    /// The run's sweep did not run at all (delta, aborted or failed run).
    NotSwept,
}

/// Counts of one entity kind in one scope.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ScopeCounts {
    /// Records the source returned for the scope.
    pub returned: u64,
    /// Records connected to the scope by the run: new, or back after a disconnect.
    pub connected: u64,
    /// Records that moved into the scope from another one.
    pub moved: u64,
    /// Records the sweep disconnected from the scope.
    pub disconnected: u64,
}

/// One scope's outcome and counts, in the run summary.
#[derive(Debug, Clone, Serialize)]
pub struct ScopeReport {
    /// The scope (a designated body code, a country...).
    pub scope: String,
    /// What happened to it.
    pub outcome: ScopeOutcome,
    /// Why it was not swept, when it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Counts per entity kind (for GMC, `individual` counts doctors).
    pub per_kind: BTreeMap<EntityKind, ScopeCounts>,
}

impl SweepReport {
    /// A sweep that did not run; every scope says why.
    pub fn skipped(reason: impl Into<String>, spec: &JobSpec, pages: &[PageEntry]) -> Self {
        let reason = reason.into();
        let ledger = ScopeLedger::new(pages);
        let scopes = scope_groups(spec)
            .iter()
            .map(|group| {
                let mut r = ledger.report(group);
                if r.outcome != ScopeOutcome::Failed {
                    r.outcome = ScopeOutcome::NotSwept;
                    r.reason = Some(reason.clone());
                }
                r
            })
            .collect();
        Self {
            skipped: Some(reason),
            scopes,
            ..Self::default()
        }
    }

    /// Records disconnected in all.
    pub fn total(&self) -> u64 {
        self.disconnected.values().sum()
    }

    /// Scopes the source could not deliver.
    pub fn failed_scopes(&self) -> usize {
        self.scopes
            .iter()
            .filter(|s| s.outcome == ScopeOutcome::Failed)
            .count()
    }
}

/// What the page ledger says of each scope, for sources that deliver scope by scope.
pub struct ScopeLedger<'a> {
    /// The pages that name their scope, latest fetch of each page.
    pages: Vec<(&'a ScopeSnapshot, &'a PageEntry)>,
}

impl<'a> ScopeLedger<'a> {
    /// Reads the snapshots of a run's pages.
    pub fn new(pages: &'a [PageEntry]) -> Self {
        Self {
            pages: pages
                .iter()
                .filter_map(|p| p.snapshot.as_ref().map(|s| (s, p)))
                .collect(),
        }
    }

    /// Whether the source delivered scope by scope (then scopes are reconciled one
    /// by one).
    pub fn per_scope(&self) -> bool {
        !self.pages.is_empty()
    }

    /// Whether at least one scope arrived complete and loaded.
    pub fn any_complete(&self) -> bool {
        self.pages
            .iter()
            .any(|(s, _)| s.complete() && self.loaded_whole(s.scope()))
    }

    /// The pages of a group of scopes.
    fn of<'b>(
        &'b self,
        group: &'b [Scope],
    ) -> impl Iterator<Item = &'b (&'a ScopeSnapshot, &'a PageEntry)> + 'b {
        self.pages
            .iter()
            .filter(move |(s, _)| group.contains(s.scope()))
    }

    /// Whether a scope's complete last page and every other page of it are loaded,
    /// and none failed.
    fn loaded_whole(&self, scope: &Scope) -> bool {
        let group = std::slice::from_ref(scope);
        self.of(group).any(|(s, _)| s.complete())
            && self
                .of(group)
                .all(|(s, p)| p.loaded && s.failure().is_none())
    }

    /// The reason of the first scope on which the source refused the run itself.
    pub fn refusal(&self) -> Option<&str> {
        self.pages.iter().find_map(|(s, _)| s.refusal())
    }

    /// The first failed scope's reason.
    pub fn first_failure(&self) -> Option<&str> {
        self.pages.iter().find_map(|(s, _)| s.failure())
    }

    /// Why a scope must not be swept: it failed, or its complete last page or
    /// another of its pages was not loaded.
    fn blocker(&self, group: &[Scope]) -> Option<String> {
        if !self.per_scope() {
            return None;
        }
        if let Some(reason) = self.of(group).find_map(|(s, _)| s.failure()) {
            return Some(reason.to_owned());
        }
        if !self.of(group).any(|(s, _)| s.complete()) || self.of(group).any(|(_, p)| !p.loaded) {
            return Some(format!(
                "scope {}: no complete snapshot of it was loaded",
                group_name(group)
            ));
        }
        None
    }

    /// Rejected or failed records and records extracted in a scope's pages.
    fn errors(&self, group: &[Scope]) -> (u64, u64) {
        self.of(group)
            .filter_map(|(_, p)| p.counts.as_ref())
            .map(|c| c.total())
            .fold((0, 0), |(e, x), c| (e + c.errors(), x + c.extracted))
    }

    /// The scope's report before its sweep: returned, connected and moved summed
    /// over its pages; failed if it failed or was not loaded whole.
    fn report(&self, group: &[Scope]) -> ScopeReport {
        let mut per_kind: BTreeMap<EntityKind, ScopeCounts> = BTreeMap::new();
        for (_, p) in self.of(group) {
            for (kind, c) in p.counts.iter().flat_map(|k| k.kinds.iter()) {
                let e = per_kind.entry(*kind).or_default();
                e.returned += c.extracted;
                e.connected += c.connected;
                e.moved += c.moved;
            }
        }
        let reason = self.blocker(group);
        let failed = self.per_scope() && reason.is_some();
        ScopeReport {
            scope: group_name(group),
            outcome: if failed {
                ScopeOutcome::Failed
            } else {
                ScopeOutcome::Swept
            },
            reason,
            per_kind,
        }
    }
}

/// Scopes swept independently: each asked scope, or everything as one group.
fn scope_groups(spec: &JobSpec) -> Vec<Vec<Scope>> {
    if spec.scope.is_empty() {
        vec![Vec::new()]
    } else {
        spec.scope.iter().map(|s| vec![s.clone()]).collect()
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

/// Checks the guards of one scope; `Err` says which refused it and why.
fn check_guards(
    ctx: &JobContext,
    group: &[Scope],
    census: &[(EntityKind, u64, u64)],
) -> Result<(), (ScopeOutcome, String)> {
    let o = &ctx.spec.options;
    if o.allow_mass_disconnect {
        return Ok(());
    }
    let scope = group_name(group);
    // Empty: every kind that would lose records had none of them in the snapshot
    // (a GMC body answering an empty list still has its own workplace record).
    let losing: Vec<_> = census.iter().filter(|k| k.2 > 0).collect();
    if !losing.is_empty()
        && losing
            .iter()
            .all(|&&(_, connected, unseen)| unseen == connected)
    {
        let unseen: u64 = losing.iter().map(|k| k.2).sum();
        return Err((
            ScopeOutcome::EmptyNoSweep,
            format!(
                "scope {scope}: the snapshot has no records of this scope; refusing to disconnect all {unseen}"
            ),
        ));
    }
    for &(kind, connected, unseen) in census {
        if unseen > 0 && unseen as f64 > o.max_disconnect_share * connected as f64 {
            return Err((
                ScopeOutcome::RefusedByGuard,
                format!(
                    "scope {scope}: would disconnect {unseen} of {connected} {kind} records ({:.1}%), above the allowed {:.1}%",
                    100.0 * unseen as f64 / connected as f64,
                    100.0 * o.max_disconnect_share
                ),
            ));
        }
    }
    Ok(())
}

/// Disconnects what the snapshot no longer has, scope by scope, within the guards;
/// a scope the source could not deliver is left alone. Only the kinds this run
/// delivered are swept: a code-list snapshot says nothing about workplaces.
pub async fn sweep(
    ctx: &JobContext,
    counts: &KindCounts,
    pages: &[PageEntry],
) -> Result<SweepReport, EngineError> {
    let mut report = SweepReport::default();
    let ledger = ScopeLedger::new(pages);
    let kinds: Vec<EntityKind> = SWEEP_ORDER
        .into_iter()
        .filter(|k| ctx.mapping.handles(*k))
        .filter(|k| counts.of(*k).extracted > 0)
        .collect();
    for group in scope_groups(&ctx.spec) {
        let mut scope = ledger.report(&group);
        if scope.outcome == ScopeOutcome::Failed {
            tracing::warn!(job = %ctx.id, scope = %scope.scope, reason = ?scope.reason, "scope not swept: it failed");
            report.scopes.push(scope);
            continue;
        }
        // A scope with too many rejected records is not a snapshot to trust: what
        // it lacks may only have been rejected (the run as a whole was judged
        // before the sweep; this judges each scope a source delivers whole).
        let (errors, extracted) = ledger.errors(&group);
        let threshold = ctx.spec.options.max_failed_records;
        if ledger.per_scope() && threshold.exceeded(errors, extracted) {
            let reason = format!(
                "scope {}: {errors} of {extracted} records rejected or failed, over max_failed_records; nobody is disconnected",
                scope.scope
            );
            tracing::warn!(job = %ctx.id, %reason, "sweep refused");
            report.refused.push(reason.clone());
            scope.outcome = ScopeOutcome::RefusedByGuard;
            scope.reason = Some(reason);
            report.scopes.push(scope);
            continue;
        }
        let census = scope_census(ctx, &group, &kinds).await?;
        if let Err((outcome, reason)) = check_guards(ctx, &group, &census) {
            tracing::warn!(job = %ctx.id, %reason, "sweep refused");
            report.refused.push(reason.clone());
            scope.outcome = outcome;
            scope.reason = Some(reason);
            report.scopes.push(scope);
            continue;
        }
        for &(kind, _, unseen) in &census {
            if unseen == 0 {
                continue;
            }
            let n = sweep_kind(ctx, kind, &group).await?;
            *report.disconnected.entry(kind).or_default() += n;
            scope.per_kind.entry(kind).or_default().disconnected += n;
        }
        report.scopes.push(scope);
    }
    Ok(report)
}

/// Disconnects the unseen records of one kind in one scope, chunk by chunk; returns
/// how many the target did disconnect. The state store records exactly those: a
/// row the target's conditional update left alone (changed since the run started,
/// or now in another scope) stays connected there, to be judged again next run.
async fn sweep_kind(
    ctx: &JobContext,
    kind: EntityKind,
    group: &[Scope],
) -> Result<u64, EngineError> {
    let store = ctx.store();
    let mut disconnected = 0;
    // Rows the target kept stay unseen and sort first (ids come in order, and each
    // chunk is the smallest left), so each read skips past them.
    let mut kept = 0usize;
    loop {
        let limit = SWEEP_CHUNK.saturating_add(u32::try_from(kept).unwrap_or(u32::MAX));
        let ids = store
            .unseen_records(&ctx.target_name, kind, group, &ctx.id, limit)
            .await?;
        // Fewer than asked: these are the last ones, no need to ask again.
        let last = ids.len() < limit as usize;
        let ids = &ids[kept.min(ids.len())..];
        if ids.is_empty() {
            return Ok(disconnected);
        }
        let done = ctx
            .target
            .disconnect_in_scope(&ctx.run, kind, group, ids)
            .await?;
        store
            .mark_disconnected(&ctx.target_name, kind, &done, &ctx.id)
            .await?;
        kept += ids.len() - done.len();
        disconnected += done.len() as u64;
        Progress::add(&ctx.engine.progress.disconnected, done.len() as u64);
        if last {
            return Ok(disconnected);
        }
    }
}

#[cfg(test)]
mod tests {
    use provsync_core::source::Cursor;

    use super::*;

    /// A page of scope `A` with `doctors` individuals, one of them moved in.
    fn page(page_no: u64, snapshot: ScopeSnapshot, loaded: bool, doctors: u64) -> PageEntry {
        let mut counts = KindCounts::default();
        let c = counts.kind_mut(EntityKind::Individual);
        c.extracted = doctors;
        c.connected = doctors - 1;
        c.moved = 1;
        PageEntry {
            page_no,
            cursor: Cursor(page_no.to_string()),
            loaded,
            records: doctors,
            snapshot: Some(snapshot),
            counts: loaded.then_some(counts),
        }
    }

    fn part() -> ScopeSnapshot {
        ScopeSnapshot::Part {
            scope: Scope::from("A"),
        }
    }

    fn complete() -> ScopeSnapshot {
        ScopeSnapshot::Complete {
            scope: Scope::from("A"),
        }
    }

    #[test]
    fn a_scope_in_several_pages_is_one_scope_whose_counts_sum_over_its_pages() {
        let pages = [
            page(0, part(), true, 10),
            page(1, part(), true, 10),
            page(2, complete(), true, 5),
        ];
        let ledger = ScopeLedger::new(&pages);
        assert!(ledger.any_complete());
        let r = ledger.report(&[Scope::from("A")]);
        assert_eq!(r.outcome, ScopeOutcome::Swept, "{r:?}");
        let c = r.per_kind[&EntityKind::Individual];
        assert_eq!((c.returned, c.connected, c.moved), (25, 22, 3));
        assert_eq!(ledger.errors(&[Scope::from("A")]), (0, 25));
    }

    #[test]
    fn a_scope_is_not_complete_until_every_page_of_it_is_loaded() {
        let pages = [
            page(0, part(), true, 10),
            page(1, part(), false, 10),
            page(2, complete(), true, 5),
        ];
        let ledger = ScopeLedger::new(&pages);
        assert!(!ledger.any_complete());
        let r = ledger.report(&[Scope::from("A")]);
        assert_eq!(r.outcome, ScopeOutcome::Failed);
        assert!(r.reason.unwrap().contains("no complete snapshot"));
    }

    #[test]
    fn a_scope_without_its_complete_last_page_is_not_complete() {
        let pages = [page(0, part(), true, 10)];
        let ledger = ScopeLedger::new(&pages);
        assert!(!ledger.any_complete());
        assert_eq!(
            ledger.report(&[Scope::from("A")]).outcome,
            ScopeOutcome::Failed
        );
    }

    #[test]
    fn a_scope_failing_after_some_of_its_pages_loaded_is_failed() {
        let failed = ScopeSnapshot::Failed {
            scope: Scope::from("A"),
            reason: "designated body A: GMC's answer changed".into(),
        };
        let pages = [page(0, part(), true, 10), page(1, failed, true, 1)];
        let ledger = ScopeLedger::new(&pages);
        assert!(!ledger.any_complete());
        let r = ledger.report(&[Scope::from("A")]);
        assert_eq!(r.outcome, ScopeOutcome::Failed);
        assert_eq!(
            r.reason.as_deref(),
            Some("designated body A: GMC's answer changed")
        );
    }
}
