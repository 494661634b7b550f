//! Page ledger, checkpoints, page and link commits, staged links and the error
//! ledger, written once for both backends ([`ledger_queries!`], expanded like
//! `jobs_queries!`); the backends' `dialect` modules insert errors and staged
//! links in bulk, each its own way.

use provsync_core::mapped::MappedRecord;
use provsync_core::store::StoreError;

use super::sql::{int, to_json};

/// Staged links a page may hold: a link's `seq` is `page_no * LINKS_PER_PAGE + index`,
/// so a replayed page stages the very same rows and seq order is page order.
const LINKS_PER_PAGE: u64 = 1_000_000;

/// A staged link as inserted: seq, kind, source id, parent key and JSON payload.
pub(crate) type StagedRow<'a> = (i64, &'a str, &'a str, String, String);

/// The end a link is loaded under: its individual (activities) or its `from` end
/// (relations), else its first link; grouping by it lets the relations stage send a
/// parent's links together (fewer row lock conflicts in the target).
fn parent_key(rec: &MappedRecord) -> String {
    rec.link("individual")
        .or_else(|| rec.link("from"))
        .or_else(|| rec.links.first().map(|(_, e)| e))
        .map(|e| e.id.0.clone())
        .unwrap_or_else(|| rec.source_id.0.clone())
}

/// A page's number as stored and its links as rows to stage.
pub(crate) fn staged_rows(
    page_no: u64,
    staged: &[MappedRecord],
) -> Result<(i64, Vec<StagedRow<'_>>), StoreError> {
    if staged.len() as u64 > LINKS_PER_PAGE {
        return Err(StoreError::Backend(format!(
            "page {page_no} stages {} links, more than {LINKS_PER_PAGE}",
            staged.len()
        )));
    }
    let page = int(page_no, "page number")?;
    let base = page
        .checked_mul(LINKS_PER_PAGE as i64)
        .ok_or_else(|| StoreError::Backend(format!("page number {page_no} too large")))?;
    let mut rows = Vec::with_capacity(staged.len());
    for (i, rec) in staged.iter().enumerate() {
        rows.push((
            base + i as i64,
            rec.kind.as_str(),
            rec.source_id.as_str(),
            parent_key(rec),
            to_json(rec, "staged link")?,
        ));
    }
    Ok((page, rows))
}

/// Expands the ledger queries inside a backend module.
macro_rules! ledger_queries {
    () => {
        use provsync_core::job::{JobId, KindCounts};
        use provsync_core::mapped::MappedRecord;
        use provsync_core::source::{Cursor, ScopeSnapshot};
        use provsync_core::store::{
            Checkpoint, ErrorEntry, LinkCommit, PageCommit, PageEntry, StagedLink, StoreError,
        };

        use super::records::upsert_written;
        use super::{begin, col, db, db_job, dialect, int, json, kind, now_ms, to_json, uint, CHUNK};
        use super::{Conn, Pool};

        async fn upsert_checkpoint(
            conn: &mut Conn,
            id: &JobId,
            cp: &Checkpoint,
        ) -> Result<(), StoreError> {
            sqlx::query(
                "INSERT INTO checkpoints (job_id, next_page, next_cursor, extraction_complete) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (job_id) DO UPDATE SET \
                 next_page = excluded.next_page, next_cursor = excluded.next_cursor, \
                 extraction_complete = excluded.extraction_complete",
            )
            .bind(id.as_str())
            .bind(int(cp.next_page, "page number")?)
            .bind(cp.next_cursor.as_ref().map(|c| c.0.as_str()))
            .bind(cp.extraction_complete)
            .execute(conn)
            .await
            .map_err(db_job("store checkpoint", id))?;
            Ok(())
        }

        pub(super) async fn record_page(
            pool: &Pool,
            id: &JobId,
            page_no: u64,
            cursor: &Cursor,
            records: u64,
            snapshot: Option<&ScopeSnapshot>,
            next: &Checkpoint,
        ) -> Result<(), StoreError> {
            let snapshot = snapshot.map(|s| to_json(s, "page snapshot")).transpose()?;
            let mut tx = begin(pool).await?;
            // A page fetched again after a crash keeps its `loaded` mark and counts: its
            // effects are committed already and must not be applied twice.
            sqlx::query(
                "INSERT INTO pages (job_id, page_no, cursor, records, loaded, fetched_at, snapshot) \
                 VALUES ($1, $2, $3, $4, FALSE, $5, $6) ON CONFLICT (job_id, page_no) DO UPDATE SET \
                 cursor = excluded.cursor, records = excluded.records, fetched_at = excluded.fetched_at, \
                 snapshot = excluded.snapshot",
            )
            .bind(id.as_str())
            .bind(int(page_no, "page number")?)
            .bind(cursor.0.as_str())
            .bind(int(records, "record count")?)
            .bind(now_ms())
            .bind(snapshot)
            .execute(&mut *tx)
            .await
            .map_err(db_job("record page", id))?;
            upsert_checkpoint(&mut tx, id, next).await?;
            tx.commit().await.map_err(db("commit page record"))
        }

        pub(super) async fn checkpoint(
            pool: &Pool,
            id: &JobId,
        ) -> Result<Option<Checkpoint>, StoreError> {
            let row = sqlx::query(
                "SELECT next_page, next_cursor, extraction_complete FROM checkpoints WHERE job_id = $1",
            )
            .bind(id.as_str())
            .fetch_optional(pool)
            .await
            .map_err(db("read checkpoint"))?;
            row.map(|r| {
                Ok(Checkpoint {
                    next_page: uint(col(&r, "next_page")?, "page number")?,
                    next_cursor: col::<Option<String>>(&r, "next_cursor")?.map(Cursor),
                    extraction_complete: col(&r, "extraction_complete")?,
                })
            })
            .transpose()
        }

        pub(super) async fn set_checkpoint(
            pool: &Pool,
            id: &JobId,
            cp: &Checkpoint,
        ) -> Result<(), StoreError> {
            let mut conn = pool.acquire().await.map_err(db("acquire connection"))?;
            upsert_checkpoint(&mut conn, id, cp).await
        }

        pub(super) async fn pages(pool: &Pool, id: &JobId) -> Result<Vec<PageEntry>, StoreError> {
            let rows = sqlx::query(
                "SELECT page_no, cursor, loaded, records, snapshot, counts FROM pages WHERE job_id = $1 ORDER BY page_no",
            )
            .bind(id.as_str())
            .fetch_all(pool)
            .await
            .map_err(db("read pages"))?;
            rows.iter()
                .map(|r| {
                    Ok(PageEntry {
                        page_no: uint(col(r, "page_no")?, "page number")?,
                        cursor: Cursor(col(r, "cursor")?),
                        loaded: col(r, "loaded")?,
                        records: uint(col(r, "records")?, "record count")?,
                        snapshot: col::<Option<String>>(r, "snapshot")?
                            .map(|t| json(&t, "page snapshot"))
                            .transpose()?,
                        counts: col::<Option<String>>(r, "counts")?
                            .map(|t| json(&t, "page counts"))
                            .transpose()?,
                    })
                })
                .collect()
        }

        /// Stages a page's links. `created` is whether the target's record state has never
        /// seen the link, read before the page's own updates are applied.
        async fn insert_staged(
            conn: &mut Conn,
            id: &JobId,
            target: i64,
            page_no: u64,
            staged: &[MappedRecord],
        ) -> Result<(), StoreError> {
            let (page, rows) = crate::store::ledger::staged_rows(page_no, staged)?;
            for chunk in rows.chunks(CHUNK) {
                dialect::insert_staged(conn, id, target, page, chunk).await?;
            }
            Ok(())
        }

        pub(super) async fn commit_page(
            pool: &Pool,
            id: &JobId,
            target: i64,
            page_no: u64,
            commit: &PageCommit,
        ) -> Result<bool, StoreError> {
            let page = int(page_no, "page number")?;
            let counts = to_json(&commit.counts, "page counts")?;
            let mut tx = begin(pool).await?;
            // The ledger row is locked: a second delivery of the page waits here for the
            // first to commit, then reads `loaded` as set and changes nothing.
            let loaded: Option<bool> = sqlx::query_scalar(&format!(
                "SELECT loaded FROM pages WHERE job_id = $1 AND page_no = $2{}",
                dialect::FOR_UPDATE
            ))
            .bind(id.as_str())
            .bind(page)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("read page"))?;
            match loaded {
                // The runtime records every page before loading it; a page the ledger does
                // not know could not be fetched again after a crash, so refuse it loudly.
                None => return Err(StoreError::NotFound(format!("{id} page {page_no}"))),
                Some(true) => return Ok(false),
                Some(false) => {}
            }
            dialect::insert_errors(&mut tx, id, &commit.errors).await?;
            // Staged before the hash updates so `created` reflects the state before this page.
            insert_staged(&mut tx, id, target, page_no, &commit.staged).await?;
            upsert_written(&mut tx, target, &commit.written, id).await?;
            sqlx::query(
                "UPDATE pages SET loaded = TRUE, loaded_at = $1, counts = $2 \
                 WHERE job_id = $3 AND page_no = $4",
            )
            .bind(now_ms())
            .bind(counts)
            .bind(id.as_str())
            .bind(page)
            .execute(&mut *tx)
            .await
            .map_err(db("mark page loaded"))?;
            tx.commit().await.map_err(db("commit page"))?;
            Ok(true)
        }

        pub(super) async fn counts(pool: &Pool, id: &JobId) -> Result<KindCounts, StoreError> {
            // Summed in Rust: a job has thousands of pages at most, and the JSON stays opaque
            // to SQL (no dialect-specific JSON functions).
            let rows: Vec<String> = sqlx::query_scalar(
                "SELECT counts FROM pages WHERE job_id = $1 AND loaded AND counts IS NOT NULL \
                 UNION ALL SELECT counts FROM link_chunks WHERE job_id = $1",
            )
            .bind(id.as_str())
            .fetch_all(pool)
            .await
            .map_err(db("read counts"))?;
            let mut total = KindCounts::default();
            for text in rows {
                total.add(&json::<KindCounts>(&text, "counts")?);
            }
            Ok(total)
        }

        pub(super) async fn staged_links(
            pool: &Pool,
            id: &JobId,
            after_seq: i64,
            limit: u32,
        ) -> Result<Vec<StagedLink>, StoreError> {
            // Ordered by seq only: seq is the resume point, so a chunk must be a seq range.
            // Grouping a chunk's links by parent is the relations stage's job.
            let rows = sqlx::query(
                "SELECT seq, page_no, created, payload FROM staged_links \
                 WHERE job_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            )
            .bind(id.as_str())
            .bind(after_seq)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
            .map_err(db("read staged links"))?;
            rows.iter()
                .map(|r| {
                    let payload: String = col(r, "payload")?;
                    Ok(StagedLink {
                        seq: col(r, "seq")?,
                        page_no: uint(col(r, "page_no")?, "page number")?,
                        created: col(r, "created")?,
                        record: json(&payload, "staged link")?,
                    })
                })
                .collect()
        }

        pub(super) async fn commit_links(
            pool: &Pool,
            id: &JobId,
            target: i64,
            commit: &LinkCommit,
        ) -> Result<(), StoreError> {
            let counts = to_json(&commit.counts, "link counts")?;
            let mut tx = begin(pool).await?;
            // The chunk's key makes a replay (crash after commit, before ack) count once; a
            // concurrent replay waits on the key until the first commits, then does nothing.
            let done = sqlx::query(
                "INSERT INTO link_chunks (job_id, upto_seq, counts) VALUES ($1, $2, $3) \
                 ON CONFLICT (job_id, upto_seq) DO NOTHING",
            )
            .bind(id.as_str())
            .bind(commit.upto_seq)
            .bind(counts)
            .execute(&mut *tx)
            .await
            .map_err(db_job("record link chunk", id))?;
            if done.rows_affected() == 0 {
                return Ok(());
            }
            dialect::insert_errors(&mut tx, id, &commit.errors).await?;
            upsert_written(&mut tx, target, &commit.written, id).await?;
            add_page_counts(&mut tx, id, &commit.pages).await?;
            sqlx::query("DELETE FROM staged_links WHERE job_id = $1 AND seq <= $2")
                .bind(id.as_str())
                .bind(commit.upto_seq)
                .execute(&mut *tx)
                .await
                .map_err(db("remove loaded links"))?;
            tx.commit().await.map_err(db("commit links"))
        }

        /// Adds the counts of records a page delivered and the relations stage booked (scope
        /// moves) to that page's counts, in the chunk's transaction.
        async fn add_page_counts(
            conn: &mut Conn,
            id: &JobId,
            pages: &std::collections::BTreeMap<u64, KindCounts>,
        ) -> Result<(), StoreError> {
            for (page_no, delta) in pages {
                let page =
                    i64::try_from(*page_no).map_err(|_| StoreError::Corrupt("page number".into()))?;
                let current: Option<Option<String>> =
                    sqlx::query_scalar("SELECT counts FROM pages WHERE job_id = $1 AND page_no = $2")
                        .bind(id.as_str())
                        .bind(page)
                        .fetch_optional(&mut *conn)
                        .await
                        .map_err(db("read page counts"))?;
                let mut counts: KindCounts = match current.flatten() {
                    Some(text) => json(&text, "page counts")?,
                    None => KindCounts::default(),
                };
                counts.add(delta);
                sqlx::query("UPDATE pages SET counts = $1 WHERE job_id = $2 AND page_no = $3")
                    .bind(to_json(&counts, "page counts")?)
                    .bind(id.as_str())
                    .bind(page)
                    .execute(&mut *conn)
                    .await
                    .map_err(db("update page counts"))?;
            }
            Ok(())
        }

        pub(super) async fn add_errors(
            pool: &Pool,
            id: &JobId,
            errors: &[ErrorEntry],
        ) -> Result<(), StoreError> {
            if errors.is_empty() {
                return Ok(());
            }
            let mut tx = begin(pool).await?;
            dialect::insert_errors(&mut tx, id, errors).await?;
            tx.commit().await.map_err(db("commit errors"))
        }

        pub(super) async fn errors(
            pool: &Pool,
            id: &JobId,
            offset: u32,
            limit: u32,
        ) -> Result<Vec<ErrorEntry>, StoreError> {
            let rows = sqlx::query(
                "SELECT page_no, stage, kind, source_id, reason FROM errors WHERE job_id = $1 \
                 ORDER BY seq LIMIT $2 OFFSET $3",
            )
            .bind(id.as_str())
            .bind(i64::from(limit))
            .bind(i64::from(offset))
            .fetch_all(pool)
            .await
            .map_err(db("read errors"))?;
            rows.iter()
                .map(|r| {
                    Ok(ErrorEntry {
                        page_no: col::<Option<i64>>(r, "page_no")?
                            .map(|p| uint(p, "page number"))
                            .transpose()?,
                        stage: col(r, "stage")?,
                        kind: col::<Option<String>>(r, "kind")?
                            .as_deref()
                            .map(kind)
                            .transpose()?,
                        source_id: col(r, "source_id")?,
                        reason: col(r, "reason")?,
                    })
                })
                .collect()
        }

        pub(super) async fn error_count(pool: &Pool, id: &JobId) -> Result<u64, StoreError> {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM errors WHERE job_id = $1")
                .bind(id.as_str())
                .fetch_one(pool)
                .await
                .map_err(db("count errors"))?;
            uint(n, "error count")
        }
    };
}
