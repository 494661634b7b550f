//! Schedules and callbacks: the shared queries of `store::automation` over sqlite.

automation_queries!(sqlx::sqlite::SqlitePool);
