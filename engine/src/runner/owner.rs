//! Who owns a run: this process, and whether a recorded owner is still alive.

use crate::executor::process::start_ticks;
use crate::store::Owner;

/// This process as a run owner: host name, pid and start time.
pub fn current_owner() -> Owner {
    let pid = std::process::id();
    Owner {
        host: host_name(),
        pid,
        start_ticks: start_ticks(pid).unwrap_or(0),
    }
}

/// Whether `owner` is a live process: on this host, with that pid and the same start time
/// (a pid reused by another process does not count). An owner on another host is assumed
/// alive, since it cannot be checked from here.
pub fn is_alive(owner: &Owner) -> bool {
    if owner.host != host_name() {
        return true;
    }
    match start_ticks(owner.pid) {
        Ok(ticks) => ticks == owner.start_ticks,
        Err(_) => false,
    }
}

fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_reused_pid_is_not() {
        let me = current_owner();
        assert!(me.start_ticks > 0);
        assert!(is_alive(&me));
        let reused = Owner {
            start_ticks: me.start_ticks + 1,
            ..me.clone()
        };
        assert!(!is_alive(&reused));
        let elsewhere = Owner {
            host: "another-host.invalid".into(),
            ..reused
        };
        assert!(is_alive(&elsewhere));
    }
}
