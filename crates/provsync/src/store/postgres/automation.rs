//! Schedules and callbacks: the shared queries of `store::automation` over postgres.

automation_queries!(sqlx::postgres::PgPool);
