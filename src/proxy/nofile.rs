//! The open-file budget: `server.max_connections` must fit the process's
//! `RLIMIT_NOFILE` together with the admin listener's connections and a
//! reserve for upstream and IdP connections, the spool and the audit file.
//! At start the soft limit is raised (never above the hard limit, never
//! lowered) when the configured connections need it; a budget that does not
//! fit even the hard limit refuses start-up.
//!
//! The `rlimit` crate does the system calls (this crate forbids `unsafe`).

/// Why the connection budget does not fit the open-file limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NofileError {
    /// Even the hard limit is too small.
    #[error(
        "server.max_connections {max_connections} needs {needed} open files \
         ({max_connections} + {admin} admin connections + {reserved} reserved_fds), \
         but the open-file limit is {soft} (hard limit {hard}); lower server.max_connections \
         or raise the limit (ulimit -n, LimitNOFILE=, --ulimit nofile=)"
    )]
    TooSmall {
        /// Configured OTLP connections.
        max_connections: u64,
        /// Admin listener connections.
        admin: u64,
        /// `server.reserved_fds`.
        reserved: u64,
        /// Total needed.
        needed: u64,
        /// Current soft limit.
        soft: u64,
        /// Hard limit.
        hard: u64,
    },
    /// The limit could not be read or raised.
    #[error("open-file limit: {0}")]
    Os(String),
}

/// Open files the configured connections need.
pub fn needed(max_connections: usize, admin_connections: usize, reserved: u64) -> u64 {
    let m = u64::try_from(max_connections).unwrap_or(u64::MAX);
    let a = u64::try_from(admin_connections).unwrap_or(u64::MAX);
    m.saturating_add(a).saturating_add(reserved)
}

/// Pure decision: `Ok(None)` when the soft limit suffices, `Ok(Some(new
/// soft))` when it must be raised (to the hard limit), an error when even
/// the hard limit is too small.
pub fn plan(
    max_connections: usize,
    admin_connections: usize,
    reserved: u64,
    soft: u64,
    hard: u64,
) -> Result<Option<u64>, NofileError> {
    let need = needed(max_connections, admin_connections, reserved);
    if need <= soft {
        return Ok(None);
    }
    if need <= hard {
        return Ok(Some(hard));
    }
    Err(NofileError::TooSmall {
        max_connections: u64::try_from(max_connections).unwrap_or(u64::MAX),
        admin: u64::try_from(admin_connections).unwrap_or(u64::MAX),
        reserved,
        needed: need,
        soft,
        hard,
    })
}

/// Check the budget against this process's limit and raise the soft limit
/// to the hard one when needed. Returns the soft limit in force.
pub fn ensure(
    max_connections: usize,
    admin_connections: usize,
    reserved: u64,
) -> Result<u64, NofileError> {
    let (soft, hard) = rlimit::Resource::NOFILE
        .get()
        .map_err(|e| NofileError::Os(e.to_string()))?;
    match plan(max_connections, admin_connections, reserved, soft, hard)? {
        None => Ok(soft),
        Some(new_soft) => {
            // Some systems refuse a soft limit of "unlimited" (macOS); then
            // ask for just what is needed.
            let need = needed(max_connections, admin_connections, reserved);
            let raised = rlimit::Resource::NOFILE
                .set(new_soft, hard)
                .map(|()| new_soft)
                .or_else(|_| rlimit::Resource::NOFILE.set(need, hard).map(|()| need))
                .map_err(|e| NofileError::Os(format!("cannot raise the soft limit: {e}")))?;
            tracing::info!(
                from = soft,
                to = raised,
                "raised the open-file soft limit for server.max_connections"
            );
            Ok(raised)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_raises_or_refuses() {
        assert_eq!(plan(100, 64, 128, 1024, 4096), Ok(None));
        assert_eq!(plan(4096, 64, 128, 1024, 1 << 20), Ok(Some(1 << 20)));
        let err = plan(4096, 64, 128, 256, 256).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("4288") && msg.contains("256"), "{msg}");
        assert_eq!(needed(usize::MAX, 64, 128), u64::MAX);
    }
}
