//! Whose a failure is, and whether trying again can help: connectors classify their
//! errors so the engine and the API answer each the same way.

use crate::source::SourceError;
use crate::target::TargetError;

/// Who can fix a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    /// The user: the job's settings, credentials or data.
    User,
    /// The external system (a source or target): it is down or failing.
    External,
    /// This service: its own bookkeeping or a bug.
    Internal,
}

impl SourceError {
    /// Who can fix it.
    pub fn domain(&self) -> Domain {
        match self {
            SourceError::Config(_) | SourceError::Refused(_) => Domain::User,
            SourceError::Unavailable(_) => Domain::External,
            // The cursor was ours: we stored it and handed it back.
            SourceError::BadCursor(_) => Domain::Internal,
        }
    }

    /// Whether the same call may succeed later.
    pub fn retryable(&self) -> bool {
        matches!(self, SourceError::Unavailable(_))
    }
}

impl TargetError {
    /// Who can fix it.
    pub fn domain(&self) -> Domain {
        match self {
            TargetError::Config(_) | TargetError::Refused(_) => Domain::User,
            TargetError::Unavailable(_) | TargetError::Audit(_) => Domain::External,
        }
    }

    /// Whether the same call may succeed later.
    pub fn retryable(&self) -> bool {
        matches!(self, TargetError::Unavailable(_) | TargetError::Audit(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_external_systems_failures_are_retryable() {
        let s = |e: SourceError| (e.domain(), e.retryable());
        assert_eq!(s(SourceError::Config("x".into())), (Domain::User, false));
        assert_eq!(s(SourceError::Refused("x".into())), (Domain::User, false));
        assert_eq!(
            s(SourceError::Unavailable("x".into())),
            (Domain::External, true)
        );
        assert_eq!(
            s(SourceError::BadCursor("x".into())),
            (Domain::Internal, false)
        );
        let t = |e: TargetError| (e.domain(), e.retryable());
        assert_eq!(t(TargetError::Config("x".into())), (Domain::User, false));
        assert_eq!(t(TargetError::Refused("x".into())), (Domain::User, false));
        assert_eq!(
            t(TargetError::Unavailable("x".into())),
            (Domain::External, true)
        );
        assert_eq!(t(TargetError::Audit("x".into())), (Domain::External, true));
    }
}
