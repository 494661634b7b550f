//! provsync emulators of the systems it talks to, and the deterministic data generator.

pub mod generator;
pub mod gmc;
pub mod onekey;
pub mod salesforce;
