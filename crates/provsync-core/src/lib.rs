//! provsync core: the canonical model, the job state machine, mappings and the
//! traits every source, target and state store implements. No I/O lives here.

pub mod fault;
pub mod job;
pub mod mapped;
pub mod mapping;
pub mod model;
pub mod reference;
pub mod source;
pub mod store;
pub mod target;
