//! Declarative mappings (TOML) from canonical records to target tables and fields.
