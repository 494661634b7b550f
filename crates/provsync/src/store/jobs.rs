//! Jobs, transitions, dispatch queue, abort flags and leases, written once for
//! both backends: [`jobs_queries!`] expands these functions in a backend module
//! whose `Db`, `Pool`, `Conn` and `DbRow` name its sqlx types and whose `dialect`
//! says how it locks (`FOR_UPDATE`, `lock_target`) and numbers runs (`NEW_RUN_NO`).
//! The SQL uses `$N` placeholders, which sqlx's SQLite driver binds by number too.

/// Expands the job queries inside a backend module.
macro_rules! jobs_queries {
    () => {
        use provsync_core::job::{JobId, JobSpec, JobState, Stage};
        use provsync_core::store::{Dispatch, JobFilter, JobRecord, StoreError, Transition};
        use sqlx::QueryBuilder;

        use super::{begin, col, db, dialect, json, ms_to_dt, now_ms, parse_state, to_json};
        use super::{Conn, Db, DbRow, Pool};

        /// States that hold a target (`JobState::is_active`), as an SQL list.
        const ACTIVE: &str = "('running', 'finishing', 'aborting')";

        const JOB_COLUMNS: &str = "id, target, spec, requested_by, state, stage, failure, \
             abort_requested, created_at, started_at, finished_at, summary, note, target_ref";

        fn job_from_row(row: &DbRow) -> Result<JobRecord, StoreError> {
            let spec: String = col(row, "spec")?;
            let stage: String = col(row, "stage")?;
            let summary: Option<String> = col(row, "summary")?;
            Ok(JobRecord {
                id: JobId(col(row, "id")?),
                target: col(row, "target")?,
                spec: json(&spec, "job spec")?,
                requested_by: col(row, "requested_by")?,
                state: parse_state(&col::<String>(row, "state")?)?,
                stage: Stage::parse(&stage)
                    .ok_or_else(|| StoreError::Corrupt(format!("unknown stage {stage:?}")))?,
                failure: col(row, "failure")?,
                abort_requested: col(row, "abort_requested")?,
                created_at: ms_to_dt(col(row, "created_at")?)?,
                started_at: col::<Option<i64>>(row, "started_at")?
                    .map(ms_to_dt)
                    .transpose()?,
                finished_at: col::<Option<i64>>(row, "finished_at")?
                    .map(ms_to_dt)
                    .transpose()?,
                summary: summary
                    .as_deref()
                    .map(|s| json(s, "job summary"))
                    .transpose()?,
                note: col(row, "note")?,
                target_ref: col(row, "target_ref")?,
            })
        }

        /// The state of a job, its row locked until the transaction ends (so no other
        /// process moves it between this read and the caller's update); `NotFound` if
        /// there is none.
        async fn lock_job(conn: &mut Conn, id: &JobId) -> Result<JobState, StoreError> {
            let state: Option<String> = sqlx::query_scalar(&format!(
                "SELECT state FROM jobs WHERE id = $1{}",
                dialect::FOR_UPDATE
            ))
            .bind(id.as_str())
            .fetch_optional(conn)
            .await
            .map_err(db("read job state"))?;
            parse_state(&state.ok_or_else(|| StoreError::NotFound(id.0.clone()))?)
        }

        /// Appends a transition row; `seq` continues the job's own numbering (callers
        /// hold the job's row lock, so two appends cannot pick the same number).
        async fn append_transition(
            conn: &mut Conn,
            id: &JobId,
            from: JobState,
            to: JobState,
            at: i64,
            reason: Option<&str>,
        ) -> Result<(), StoreError> {
            sqlx::query(
                "INSERT INTO job_transitions (job_id, seq, from_state, to_state, at, reason) \
                 SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4, $5 FROM job_transitions \
                 WHERE job_id = $1",
            )
            .bind(id.as_str())
            .bind(from.as_str())
            .bind(to.as_str())
            .bind(at)
            .bind(reason)
            .execute(conn)
            .await
            .map_err(db("append transition"))?;
            Ok(())
        }

        /// Moves a job to `running` and gives its `job:<id>` lease to `owner`.
        async fn start(
            conn: &mut Conn,
            id: &JobId,
            from: JobState,
            owner: &str,
            lease_ms: i64,
            now: i64,
        ) -> Result<(), StoreError> {
            sqlx::query(
                "UPDATE jobs SET state = 'running', started_at = COALESCE(started_at, $1), \
                 updated_at = $1 WHERE id = $2",
            )
            .bind(now)
            .bind(id.as_str())
            .execute(&mut *conn)
            .await
            .map_err(db("start job"))?;
            // Unconditional: nobody can legitimately hold the lease of a job not yet started.
            sqlx::query(
                "INSERT INTO leases (name, owner, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at",
            )
            .bind(format!("job:{id}"))
            .bind(owner)
            .bind(now.saturating_add(lease_ms))
            .execute(&mut *conn)
            .await
            .map_err(db("take job lease"))?;
            append_transition(conn, id, from, JobState::Running, now, None).await
        }

        /// Whether a target has an active job.
        async fn target_busy(conn: &mut Conn, target: &str) -> Result<bool, StoreError> {
            let busy: bool = sqlx::query_scalar(&format!(
                "SELECT EXISTS (SELECT 1 FROM jobs WHERE target = $1 AND state IN {ACTIVE})"
            ))
            .bind(target)
            .fetch_one(conn)
            .await
            .map_err(db("check target"))?;
            Ok(busy)
        }

        pub(super) async fn create_job(
            pool: &Pool,
            id: &JobId,
            target: &str,
            spec: &JobSpec,
            requested_by: &str,
        ) -> Result<JobRecord, StoreError> {
            let mut tx = begin(pool).await?;
            insert_job(&mut tx, id, target, spec, requested_by).await?;
            tx.commit().await.map_err(db("commit new job"))?;
            job(pool, id).await
        }

        /// Inserts an `accepted` job, and its `accepted` callback when it has a callback URL.
        pub(super) async fn insert_job(
            conn: &mut Conn,
            id: &JobId,
            target: &str,
            spec: &JobSpec,
            requested_by: &str,
        ) -> Result<(), StoreError> {
            let now = now_ms();
            let (run_no_column, run_no) = dialect::NEW_RUN_NO;
            sqlx::query(&format!(
                "INSERT INTO jobs (id, target, spec, requested_by, state, stage, created_at, updated_at, \
                 callback_url{run_no_column}) \
                 VALUES ($1, $2, $3, $4, 'accepted', 'pending', $5, $5, $6{run_no})"
            ))
            .bind(id.as_str())
            .bind(target)
            .bind(to_json(spec, "job spec")?)
            .bind(requested_by)
            .bind(now)
            .bind(spec.callback_url.as_deref())
            .execute(&mut *conn)
            .await
            .map_err(db("create job"))?;
            super::automation::queue_callback(conn, id, "accepted", now).await
        }

        pub(super) async fn dispatch(
            pool: &Pool,
            id: &JobId,
            owner: &str,
            lease_ms: i64,
        ) -> Result<Dispatch, StoreError> {
            let mut tx = begin(pool).await?;
            // A job's target never changes, so it can be read before any lock.
            let target: Option<String> = sqlx::query_scalar("SELECT target FROM jobs WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db("read job target"))?;
            let target = target.ok_or_else(|| StoreError::NotFound(id.0.clone()))?;
            // Target first, then job: the same order as start_next_queued, so the two never
            // wait for each other in a cycle.
            dialect::lock_target(&mut tx, &target).await?;
            let state = lock_job(&mut tx, id).await?;
            if state != JobState::Accepted {
                return Err(StoreError::Conflict {
                    job: id.0.clone(),
                    actual: state,
                    expected: JobState::Accepted.as_str().into(),
                });
            }
            // Any queued job of the target was queued before this one: it goes first (FIFO),
            // even if the target happens to be free right now.
            let waiting: bool = sqlx::query_scalar(&format!(
                "SELECT EXISTS (SELECT 1 FROM jobs WHERE target = $1 AND id <> $2 \
                 AND (state = 'queued' OR state IN {ACTIVE}))"
            ))
            .bind(&target)
            .bind(id.as_str())
            .fetch_one(&mut *tx)
            .await
            .map_err(db("check target"))?;
            let now = now_ms();
            let outcome = if !waiting {
                start(&mut tx, id, JobState::Accepted, owner, lease_ms, now).await?;
                Dispatch::Started
            } else {
                // MAX + 1 is safe: the target's lock is held.
                sqlx::query(
                    "UPDATE jobs SET state = 'queued', updated_at = $1, queue_seq = \
                     (SELECT COALESCE(MAX(queue_seq), 0) + 1 FROM jobs WHERE target = $2) WHERE id = $3",
                )
                .bind(now)
                .bind(&target)
                .bind(id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db("queue job"))?;
                append_transition(&mut tx, id, JobState::Accepted, JobState::Queued, now, None).await?;
                Dispatch::Queued
            };
            tx.commit().await.map_err(db("commit dispatch"))?;
            Ok(outcome)
        }

        pub(super) async fn start_next_queued(
            pool: &Pool,
            target: &str,
            owner: &str,
            lease_ms: i64,
        ) -> Result<Option<JobId>, StoreError> {
            let mut tx = begin(pool).await?;
            dialect::lock_target(&mut tx, target).await?;
            if target_busy(&mut tx, target).await? {
                return Ok(None);
            }
            loop {
                let next: Option<String> = sqlx::query_scalar(
                    "SELECT id FROM jobs WHERE target = $1 AND state = 'queued' \
                     ORDER BY queue_seq, created_at, id LIMIT 1",
                )
                .bind(target)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db("find next queued job"))?;
                let Some(next) = next.map(JobId) else {
                    return Ok(None);
                };
                // A queued job can still be cancelled (queued -> aborted) by a transition
                // that holds only its row lock: re-read it under that lock, and if it left
                // the queue meanwhile, look again (the queue only shrinks while the target
                // lock is held, so this ends).
                if lock_job(&mut tx, &next).await? != JobState::Queued {
                    continue;
                }
                start(&mut tx, &next, JobState::Queued, owner, lease_ms, now_ms()).await?;
                tx.commit().await.map_err(db("commit start"))?;
                return Ok(Some(next));
            }
        }

        pub(super) async fn transition(
            pool: &Pool,
            id: &JobId,
            from: JobState,
            to: JobState,
            reason: Option<&str>,
        ) -> Result<(), StoreError> {
            let mut tx = begin(pool).await?;
            let actual = lock_job(&mut tx, id).await?;
            if !from.may_become(to) {
                return Err(StoreError::Conflict {
                    job: id.0.clone(),
                    actual,
                    expected: format!(
                        "a legal transition, but {} may not become {}",
                        from.as_str(),
                        to.as_str()
                    ),
                });
            }
            if actual != from {
                return Err(StoreError::Conflict {
                    job: id.0.clone(),
                    actual,
                    expected: from.as_str().into(),
                });
            }
            let now = now_ms();
            let started = (to == JobState::Running).then_some(now);
            let finished = to.is_terminal().then_some(now);
            sqlx::query(
                "UPDATE jobs SET state = $1, updated_at = $2, started_at = COALESCE(started_at, $3), \
                 finished_at = COALESCE($4, finished_at) WHERE id = $5 AND state = $6",
            )
            .bind(to.as_str())
            .bind(now)
            .bind(started)
            .bind(finished)
            .bind(id.as_str())
            .bind(from.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db("transition job"))?;
            append_transition(&mut tx, id, from, to, now, reason).await?;
            if to.is_terminal() {
                super::automation::queue_callback(&mut tx, id, "finished", now).await?;
                // A finished job waits for nothing: a note left by a process that died while
                // the job was parked must not outlive it.
                sqlx::query("UPDATE jobs SET note = NULL WHERE id = $1")
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(db("clear job note"))?;
                // A finished job holds nothing: its lease would only make it look alive.
                sqlx::query("DELETE FROM leases WHERE name = $1")
                    .bind(format!("job:{id}"))
                    .execute(&mut *tx)
                    .await
                    .map_err(db("release job lease"))?;
            }
            tx.commit().await.map_err(db("commit transition"))
        }

        /// Runs an `UPDATE jobs ... WHERE id = $n` and turns "no row" into `NotFound`.
        async fn update_job<'q>(
            pool: &Pool,
            id: &JobId,
            query: sqlx::query::Query<'q, Db, <Db as sqlx::Database>::Arguments<'q>>,
            context: &'static str,
        ) -> Result<(), StoreError> {
            let done = query.execute(pool).await.map_err(db(context))?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound(id.0.clone()));
            }
            Ok(())
        }

        pub(super) async fn record_failure(
            pool: &Pool,
            id: &JobId,
            reason: &str,
        ) -> Result<(), StoreError> {
            // COALESCE keeps the first failure: it is the cause, later ones are consequences.
            let q = sqlx::query(
                "UPDATE jobs SET failure = COALESCE(failure, $1), updated_at = $2 WHERE id = $3",
            )
            .bind(reason)
            .bind(now_ms())
            .bind(id.as_str());
            update_job(pool, id, q, "record failure").await
        }

        pub(super) async fn set_stage(pool: &Pool, id: &JobId, stage: Stage) -> Result<(), StoreError> {
            let q = sqlx::query("UPDATE jobs SET stage = $1, updated_at = $2 WHERE id = $3")
                .bind(stage.as_str())
                .bind(now_ms())
                .bind(id.as_str());
            update_job(pool, id, q, "set stage").await
        }

        pub(super) async fn set_note(
            pool: &Pool,
            id: &JobId,
            note: Option<&str>,
        ) -> Result<(), StoreError> {
            let q = sqlx::query("UPDATE jobs SET note = $1, updated_at = $2 WHERE id = $3")
                .bind(note)
                .bind(now_ms())
                .bind(id.as_str());
            update_job(pool, id, q, "set note").await
        }

        pub(super) async fn set_target_ref(
            pool: &Pool,
            id: &JobId,
            value: &str,
        ) -> Result<(), StoreError> {
            let q = sqlx::query("UPDATE jobs SET target_ref = $1, updated_at = $2 WHERE id = $3")
                .bind(value)
                .bind(now_ms())
                .bind(id.as_str());
            update_job(pool, id, q, "set target ref").await
        }

        pub(super) async fn set_summary(
            pool: &Pool,
            id: &JobId,
            summary: &serde_json::Value,
        ) -> Result<(), StoreError> {
            let q = sqlx::query("UPDATE jobs SET summary = $1, updated_at = $2 WHERE id = $3")
                .bind(to_json(summary, "job summary")?)
                .bind(now_ms())
                .bind(id.as_str());
            update_job(pool, id, q, "set summary").await
        }

        pub(super) async fn job(pool: &Pool, id: &JobId) -> Result<JobRecord, StoreError> {
            let row = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
                .bind(id.as_str())
                .fetch_optional(pool)
                .await
                .map_err(db("read job"))?
                .ok_or_else(|| StoreError::NotFound(id.0.clone()))?;
            job_from_row(&row)
        }

        pub(super) async fn list_jobs(
            pool: &Pool,
            filter: &JobFilter,
        ) -> Result<Vec<JobRecord>, StoreError> {
            let mut qb = QueryBuilder::<Db>::new(format!("SELECT {JOB_COLUMNS} FROM jobs WHERE TRUE"));
            if let Some(state) = filter.state {
                qb.push(" AND state = ").push_bind(state.as_str());
            }
            if let Some(target) = &filter.target {
                qb.push(" AND target = ").push_bind(target.as_str());
            }
            if let Some(since) = filter.since {
                qb.push(" AND created_at >= ")
                    .push_bind(since.timestamp_millis());
            }
            // A zero limit (the `Default`) means no limit rather than an always-empty page.
            let limit = if filter.limit == 0 {
                i64::MAX
            } else {
                i64::from(filter.limit)
            };
            qb.push(" ORDER BY created_at DESC, id DESC LIMIT ")
                .push_bind(limit)
                .push(" OFFSET ")
                .push_bind(i64::from(filter.offset));
            let rows = qb.build().fetch_all(pool).await.map_err(db("list jobs"))?;
            rows.iter().map(job_from_row).collect()
        }

        pub(super) async fn transitions(pool: &Pool, id: &JobId) -> Result<Vec<Transition>, StoreError> {
            let rows = sqlx::query(
                "SELECT from_state, to_state, at, reason FROM job_transitions \
                 WHERE job_id = $1 ORDER BY seq",
            )
            .bind(id.as_str())
            .fetch_all(pool)
            .await
            .map_err(db("read transitions"))?;
            rows.iter()
                .map(|r| {
                    Ok(Transition {
                        from: parse_state(&col::<String>(r, "from_state")?)?,
                        to: parse_state(&col::<String>(r, "to_state")?)?,
                        at: ms_to_dt(col(r, "at")?)?,
                        reason: col(r, "reason")?,
                    })
                })
                .collect()
        }

        pub(super) async fn request_abort(pool: &Pool, id: &JobId) -> Result<(), StoreError> {
            let q = sqlx::query("UPDATE jobs SET abort_requested = TRUE, updated_at = $1 WHERE id = $2")
                .bind(now_ms())
                .bind(id.as_str());
            update_job(pool, id, q, "request abort").await
        }

        pub(super) async fn abort_requested(pool: &Pool, id: &JobId) -> Result<bool, StoreError> {
            let flag: Option<bool> = sqlx::query_scalar("SELECT abort_requested FROM jobs WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(pool)
                .await
                .map_err(db("read abort flag"))?;
            flag.ok_or_else(|| StoreError::NotFound(id.0.clone()))
        }

        pub(super) async fn acquire_lease(
            pool: &Pool,
            name: &str,
            owner: &str,
            ttl_ms: i64,
        ) -> Result<bool, StoreError> {
            let now = now_ms();
            // One statement, so two contenders cannot both win: insert, or update only when
            // the holder is the caller (renewal) or its lease has lapsed (takeover). A
            // contender blocked on the row re-checks the WHERE against the winner's row.
            let done = sqlx::query(
                "INSERT INTO leases (name, owner, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at \
                 WHERE leases.owner = excluded.owner OR leases.expires_at <= $4",
            )
            .bind(name)
            .bind(owner)
            .bind(now.saturating_add(ttl_ms))
            .bind(now)
            .execute(pool)
            .await
            .map_err(db("acquire lease"))?;
            Ok(done.rows_affected() > 0)
        }

        pub(super) async fn release_lease(
            pool: &Pool,
            name: &str,
            owner: &str,
        ) -> Result<(), StoreError> {
            sqlx::query("DELETE FROM leases WHERE name = $1 AND owner = $2")
                .bind(name)
                .bind(owner)
                .execute(pool)
                .await
                .map_err(db("release lease"))?;
            Ok(())
        }

        pub(super) async fn orphaned_jobs(pool: &Pool) -> Result<Vec<JobId>, StoreError> {
            let ids: Vec<String> = sqlx::query_scalar(&format!(
                "SELECT j.id FROM jobs j LEFT JOIN leases l ON l.name = 'job:' || j.id \
                 WHERE j.state IN {ACTIVE} AND (l.name IS NULL OR l.expires_at <= $1) \
                 ORDER BY j.created_at, j.id"
            ))
            .bind(now_ms())
            .fetch_all(pool)
            .await
            .map_err(db("find orphaned jobs"))?;
            Ok(ids.into_iter().map(JobId).collect())
        }
    };
}
