//! Readers of real reference data files (US facilities, NUCC taxonomy).
