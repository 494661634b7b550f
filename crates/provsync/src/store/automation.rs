//! Schedules, the callback outbox and the ledger's page count, written once for both backends: the SQL is
//! portable (`$N` placeholders, which SQLite takes too; `ON CONFLICT`; no row
//! locks), and [`automation_queries!`] expands the same functions in each backend
//! module, as `jobs_queries!` does, over its `Pool`, `Conn`, `begin`, `col` and
//! `jobs::insert_job`.
//!
//! Firing a schedule first upserts its `schedules` row: in PostgreSQL that takes the
//! row lock until commit, in SQLite the transaction already holds the write lock,
//! so two processes fire one schedule one after the other, and the second sees the
//! first's tick in `schedule_runs` (whose primary key would refuse it anyway).

/// Expands the schedule and callback queries inside a backend module.
macro_rules! automation_queries {
    () => {
        use chrono::{DateTime, Utc};
        use provsync_core::job::{JobId, JobState};
        use provsync_core::store::{
            CallbackDue, CallbackState, Delivery, Fired, FiredBy, HeldJob, ScheduleFire,
            ScheduleRun, StoreError,
        };

        use super::{begin, col, db, ms_to_dt, now_ms};
        use super::{Conn, Pool};

        fn parse_state(s: &str) -> Result<JobState, StoreError> {
            JobState::parse(s)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown job state {s:?}")))
        }

        fn opt_dt(ms: Option<i64>) -> Result<Option<DateTime<Utc>>, StoreError> {
            ms.map(ms_to_dt).transpose()
        }

        /// Queues a job's callback for `event` if it has a callback URL (once per
        /// event), in the caller's transaction: `create_job` for `accepted`, the
        /// transition that ends the job for `finished`.
        pub(super) async fn queue_callback(
            conn: &mut Conn,
            id: &JobId,
            event: &str,
            now: i64,
        ) -> Result<(), StoreError> {
            sqlx::query(
                "INSERT INTO callbacks (job_id, event, url, next_at, created_at) \
                 SELECT id, $2, callback_url, $3, $3 FROM jobs \
                 WHERE id = $1 AND callback_url IS NOT NULL ON CONFLICT DO NOTHING",
            )
            .bind(id.as_str())
            .bind(event)
            .bind(now)
            .execute(conn)
            .await
            .map_err(db("queue callback"))?;
            Ok(())
        }

        pub(super) async fn page_progress(
            pool: &Pool,
            id: &JobId,
        ) -> Result<(u64, u64), StoreError> {
            let (recorded, loaded): (i64, i64) = sqlx::query_as(
                "SELECT COUNT(*), COALESCE(SUM(CASE WHEN loaded THEN 1 ELSE 0 END), 0) \
                 FROM pages WHERE job_id = $1",
            )
            .bind(id.as_str())
            .fetch_one(pool)
            .await
            .map_err(db("count pages"))?;
            Ok((recorded.max(0) as u64, loaded.max(0) as u64))
        }

        pub(super) async fn fire_schedule(
            pool: &Pool,
            fire: &ScheduleFire<'_>,
        ) -> Result<Fired, StoreError> {
            let now = now_ms();
            let tick = fire.tick_at.timestamp_millis();
            let mut tx = begin(pool).await?;
            sqlx::query(
                "INSERT INTO schedules (name, fired_at) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET fired_at = excluded.fired_at",
            )
            .bind(fire.schedule)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db("lock schedule"))?;
            let taken: Option<i64> = sqlx::query_scalar(
                "SELECT tick_at FROM schedule_runs WHERE schedule = $1 AND fired_by = $2 \
                 AND tick_at = $3",
            )
            .bind(fire.schedule)
            .bind(fire.fired_by.as_str())
            .bind(tick)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("read schedule tick"))?;
            if taken.is_some() {
                return Ok(Fired::AlreadyFired);
            }
            let previous = sqlx::query(
                "SELECT r.job_id, j.state FROM schedule_runs r JOIN jobs j ON j.id = r.job_id \
                 WHERE r.schedule = $1 ORDER BY r.created_at DESC, r.tick_at DESC LIMIT 1",
            )
            .bind(fire.schedule)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("read the schedule's last job"))?;
            if let Some(row) = previous {
                let job = JobId(col::<String>(&row, "job_id")?);
                if !parse_state(&col::<String>(&row, "state")?)?.is_terminal() {
                    if fire.fired_by == FiredBy::Cron {
                        insert_run(
                            &mut tx,
                            fire,
                            None,
                            None,
                            "skipped",
                            Some(&format!("job {job} of this schedule is still active")),
                            now,
                        )
                        .await?;
                        tx.commit().await.map_err(db("commit skipped tick"))?;
                    }
                    return Ok(Fired::Running(job));
                }
            }
            let after_job = match fire.after {
                None => None,
                Some(after) => sqlx::query_scalar::<_, String>(
                    "SELECT job_id FROM schedule_runs WHERE schedule = $1 \
                     AND job_id IS NOT NULL ORDER BY created_at DESC, tick_at DESC LIMIT 1",
                )
                .bind(after)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db("read the awaited schedule's last job"))?
                .map(JobId),
            };
            super::jobs::insert_job(
                &mut tx,
                fire.job_id,
                fire.target,
                fire.spec,
                fire.requested_by,
            )
            .await?;
            insert_run(
                &mut tx,
                fire,
                Some(fire.job_id),
                after_job.as_ref(),
                "fired",
                None,
                now,
            )
            .await?;
            tx.commit().await.map_err(db("commit schedule run"))?;
            let job = super::jobs::job(pool, fire.job_id).await?;
            Ok(Fired::Created {
                job: Box::new(job),
                after_job,
            })
        }

        async fn insert_run(
            conn: &mut Conn,
            fire: &ScheduleFire<'_>,
            job: Option<&JobId>,
            after: Option<&JobId>,
            outcome: &str,
            note: Option<&str>,
            now: i64,
        ) -> Result<(), StoreError> {
            sqlx::query(
                "INSERT INTO schedule_runs (schedule, fired_by, tick_at, job_id, after_job, \
                 outcome, note, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(fire.schedule)
            .bind(fire.fired_by.as_str())
            .bind(fire.tick_at.timestamp_millis())
            .bind(job.map(|j| j.as_str()))
            .bind(after.map(|j| j.as_str()))
            .bind(outcome)
            .bind(note)
            .bind(now)
            .execute(conn)
            .await
            .map_err(db("record schedule run"))?;
            Ok(())
        }

        pub(super) async fn schedule_runs(
            pool: &Pool,
            schedule: &str,
            limit: u32,
        ) -> Result<Vec<ScheduleRun>, StoreError> {
            let rows = sqlx::query(
                "SELECT schedule, fired_by, tick_at, job_id, after_job, outcome, note \
                 FROM schedule_runs WHERE schedule = $1 \
                 ORDER BY created_at DESC, tick_at DESC LIMIT $2",
            )
            .bind(schedule)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
            .map_err(db("list schedule runs"))?;
            rows.iter()
                .map(|r| {
                    let fired_by = match col::<String>(r, "fired_by")?.as_str() {
                        "cron" => FiredBy::Cron,
                        "manual" => FiredBy::Manual,
                        other => {
                            return Err(StoreError::Corrupt(format!("fired_by {other:?}")))
                        }
                    };
                    Ok(ScheduleRun {
                        schedule: col(r, "schedule")?,
                        fired_by,
                        tick_at: ms_to_dt(col(r, "tick_at")?)?,
                        job_id: col::<Option<String>>(r, "job_id")?.map(JobId),
                        after_job: col::<Option<String>>(r, "after_job")?.map(JobId),
                        outcome: col(r, "outcome")?,
                        note: col(r, "note")?,
                    })
                })
                .collect()
        }

        pub(super) async fn held_jobs(
            pool: &Pool,
            older_than_ms: i64,
        ) -> Result<Vec<HeldJob>, StoreError> {
            let rows = sqlx::query(
                "SELECT j.id, r.schedule, r.after_job, a.state AS after_state FROM jobs j \
                 LEFT JOIN schedule_runs r ON r.job_id = j.id \
                 LEFT JOIN jobs a ON a.id = r.after_job \
                 WHERE j.state = 'accepted' AND (r.job_id IS NOT NULL OR j.created_at <= $1) \
                 ORDER BY j.created_at, j.id",
            )
            .bind(now_ms() - older_than_ms)
            .fetch_all(pool)
            .await
            .map_err(db("list held jobs"))?;
            rows.iter()
                .map(|r| {
                    let after = match (
                        col::<Option<String>>(r, "after_job")?,
                        col::<Option<String>>(r, "after_state")?,
                    ) {
                        (Some(id), Some(state)) => Some((JobId(id), parse_state(&state)?)),
                        _ => None,
                    };
                    Ok(HeldJob {
                        id: JobId(col(r, "id")?),
                        schedule: col(r, "schedule")?,
                        after,
                    })
                })
                .collect()
        }

        pub(super) async fn claim_callbacks(
            pool: &Pool,
            limit: u32,
            lease_ms: i64,
        ) -> Result<Vec<CallbackDue>, StoreError> {
            let now = now_ms();
            let rows = sqlx::query(
                "SELECT job_id, event, url, attempts, next_at FROM callbacks \
                 WHERE delivered_at IS NULL AND gave_up_at IS NULL AND next_at <= $1 \
                 ORDER BY next_at LIMIT $2",
            )
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
            .map_err(db("list due callbacks"))?;
            let mut claimed = Vec::with_capacity(rows.len());
            for r in &rows {
                let job_id: String = col(r, "job_id")?;
                let event: String = col(r, "event")?;
                // Compare-and-set on next_at: of two processes, one moves it.
                let done = sqlx::query(
                    "UPDATE callbacks SET next_at = $1 WHERE job_id = $2 AND event = $3 \
                     AND next_at = $4 AND delivered_at IS NULL AND gave_up_at IS NULL",
                )
                .bind(now + lease_ms)
                .bind(&job_id)
                .bind(&event)
                .bind(col::<i64>(r, "next_at")?)
                .execute(pool)
                .await
                .map_err(db("claim callback"))?;
                if done.rows_affected() == 1 {
                    claimed.push(CallbackDue {
                        job_id: JobId(job_id),
                        event,
                        url: col(r, "url")?,
                        attempts: u32::try_from(col::<i64>(r, "attempts")?).unwrap_or(u32::MAX),
                    });
                }
            }
            Ok(claimed)
        }

        pub(super) async fn callback_attempted(
            pool: &Pool,
            job: &JobId,
            event: &str,
            outcome: &Delivery,
        ) -> Result<(), StoreError> {
            let now = now_ms();
            let (sql, error, at) = match outcome {
                Delivery::Delivered => (
                    "UPDATE callbacks SET attempts = attempts + 1, delivered_at = $1, \
                     last_error = $2 WHERE job_id = $3 AND event = $4",
                    None,
                    now,
                ),
                Delivery::Retry { error, at } => (
                    "UPDATE callbacks SET attempts = attempts + 1, next_at = $1, \
                     last_error = $2 WHERE job_id = $3 AND event = $4",
                    Some(error.as_str()),
                    at.timestamp_millis(),
                ),
                Delivery::GiveUp { error } => (
                    "UPDATE callbacks SET attempts = attempts + 1, gave_up_at = $1, \
                     last_error = $2 WHERE job_id = $3 AND event = $4",
                    Some(error.as_str()),
                    now,
                ),
            };
            sqlx::query(sql)
                .bind(at)
                .bind(error)
                .bind(job.as_str())
                .bind(event)
                .execute(pool)
                .await
                .map_err(db("record callback attempt"))?;
            Ok(())
        }

        pub(super) async fn callbacks(
            pool: &Pool,
            job: &JobId,
        ) -> Result<Vec<CallbackState>, StoreError> {
            let rows = sqlx::query(
                "SELECT event, attempts, next_at, delivered_at, gave_up_at, last_error \
                 FROM callbacks WHERE job_id = $1 ORDER BY created_at, event",
            )
            .bind(job.as_str())
            .fetch_all(pool)
            .await
            .map_err(db("read callbacks"))?;
            rows.iter()
                .map(|r| {
                    let delivered_at = opt_dt(col(r, "delivered_at")?)?;
                    let gave_up_at = opt_dt(col(r, "gave_up_at")?)?;
                    let pending = delivered_at.is_none() && gave_up_at.is_none();
                    Ok(CallbackState {
                        event: col(r, "event")?,
                        attempts: u32::try_from(col::<i64>(r, "attempts")?).unwrap_or(u32::MAX),
                        next_at: if pending {
                            Some(ms_to_dt(col(r, "next_at")?)?)
                        } else {
                            None
                        },
                        delivered_at,
                        gave_up_at,
                        last_error: col(r, "last_error")?,
                    })
                })
                .collect()
        }
    };
}
