//! [`ElectionConfig`]: where etcd is, who this replica is, and the lease timing derived from
//! the TTL.

use std::time::Duration;

use super::error::LeadershipError;

/// Default lease TTL: a crashed leader is replaced within about this long.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(5);

/// Smallest lease TTL. etcd refuses shorter leases (its minimum is 1.5 × its election timeout,
/// 1 s by default, rounded up to whole seconds) and a shorter one would leave no room for a
/// keep-alive to fail and be retried.
pub const MIN_LEASE_TTL: Duration = Duration::from_secs(2);

/// Default time to wait for etcd to connect or to answer one request.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Smallest safety margin, whatever the TTL.
const MIN_SAFETY_MARGIN: Duration = Duration::from_millis(500);

/// Settings of one replica's [`Election`](super::Election).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElectionConfig {
    /// etcd client URLs, e.g. `http://127.0.0.1:2379`; requests are balanced over them.
    pub endpoints: Vec<String>,
    /// The region: keys live under `/tandem/<region>/`.
    pub region: String,
    /// Unique per replica (`tandem serve` defaults it to `<host>-<pid>`).
    pub member_id: String,
    /// The address clients use to reach this replica, e.g. `http://127.0.0.1:7233`.
    pub advertise: String,
    /// Lease TTL: whole seconds, at least [`MIN_LEASE_TTL`]. Default [`DEFAULT_LEASE_TTL`].
    /// See the [module docs](super) for the trade-off.
    pub lease_ttl: Duration,
    /// Time to wait for etcd to connect or to answer one request (not a campaign, which
    /// waits as long as another member leads). Default [`DEFAULT_CONNECT_TIMEOUT`].
    pub connect_timeout: Duration,
}

impl ElectionConfig {
    /// A config with the default lease TTL and connect timeout.
    pub fn new(
        endpoints: Vec<String>,
        region: impl Into<String>,
        member_id: impl Into<String>,
        advertise: impl Into<String>,
    ) -> ElectionConfig {
        ElectionConfig {
            endpoints,
            region: region.into(),
            member_id: member_id.into(),
            advertise: advertise.into(),
            lease_ttl: DEFAULT_LEASE_TTL,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }

    /// Checks every field; the first problem found is returned.
    ///
    /// Errors: [`LeadershipError::InvalidConfig`] when `endpoints` is empty or holds an empty
    /// URL, when `region` or `member_id` is empty or holds `/` or a control character, when
    /// `advertise` is empty, when `lease_ttl` is not whole seconds or is below
    /// [`MIN_LEASE_TTL`], or when `connect_timeout` is zero.
    pub fn validate(&self) -> Result<(), LeadershipError> {
        let invalid = |field: &str, expected: &str, found: String| {
            Err(LeadershipError::InvalidConfig {
                field: field.to_string(),
                expected: expected.to_string(),
                found,
            })
        };
        if self.endpoints.is_empty() {
            return invalid(
                "etcd endpoints",
                "at least one etcd client URL",
                "none".into(),
            );
        }
        if let Some(empty) = self.endpoints.iter().position(|url| url.trim().is_empty()) {
            return invalid(
                &format!("etcd endpoints[{empty}]"),
                "an etcd client URL such as http://127.0.0.1:2379",
                "an empty string".into(),
            );
        }
        for (field, value) in [("region", &self.region), ("member_id", &self.member_id)] {
            if !is_key_segment(value) {
                return invalid(
                    field,
                    "a non-empty name without `/`, spaces or control characters",
                    format!("{value:?}"),
                );
            }
        }
        if self.advertise.trim().is_empty() {
            return invalid(
                "advertise",
                "the address clients use for this replica, such as http://127.0.0.1:7233",
                "an empty string".into(),
            );
        }
        if self.lease_ttl.subsec_nanos() != 0 || self.lease_ttl < MIN_LEASE_TTL {
            return invalid(
                "lease_ttl",
                "whole seconds, at least 2 s (etcd lease TTLs are whole seconds)",
                format!("{:?}", self.lease_ttl),
            );
        }
        if self.connect_timeout.is_zero() {
            return invalid(
                "connect_timeout",
                "a positive duration",
                format!("{:?}", self.connect_timeout),
            );
        }
        Ok(())
    }

    /// The TTL actually requested from etcd, in whole seconds: `lease_ttl` rounded up, at
    /// least [`MIN_LEASE_TTL`] (so an unvalidated config still works safely).
    pub fn lease_ttl_secs(&self) -> i64 {
        let secs = self.lease_ttl.as_secs() + u64::from(self.lease_ttl.subsec_nanos() > 0);
        let secs = secs.max(MIN_LEASE_TTL.as_secs());
        i64::try_from(secs).unwrap_or(i64::MAX)
    }

    /// The TTL actually requested from etcd ([`ElectionConfig::lease_ttl_secs`]).
    pub fn effective_lease_ttl(&self) -> Duration {
        Duration::from_secs(self.lease_ttl_secs().unsigned_abs())
    }

    /// How often the lease is renewed: a quarter of the TTL, so that about three renewals
    /// can fail before the leader gives up its role.
    pub fn keep_alive_interval(&self) -> Duration {
        self.effective_lease_ttl() / 4
    }

    /// How long before the lease could expire on etcd the leader gives up its role: a fifth
    /// of the TTL, at least 500 ms. It covers the time the leader needs to stop dispatching
    /// once it publishes `Follower`, and a clock of this host running slower than etcd's.
    pub fn safety_margin(&self) -> Duration {
        (self.effective_lease_ttl() / 5).max(MIN_SAFETY_MARGIN)
    }

    /// How long a leader may act after sending a keep-alive that etcd answered:
    /// TTL − [`safety_margin`](ElectionConfig::safety_margin).
    pub fn lease_validity(&self) -> Duration {
        self.effective_lease_ttl()
            .saturating_sub(self.safety_margin())
    }

    /// How long a member that stepped down waits before it campaigns again: one TTL, so
    /// the new leader can settle.
    pub fn step_down_pause(&self) -> Duration {
        self.effective_lease_ttl()
    }

    /// Time to wait for etcd to connect or to answer one request (`connect_timeout`, at
    /// least 100 ms).
    pub(super) fn request_timeout(&self) -> Duration {
        self.connect_timeout.max(Duration::from_millis(100))
    }

    /// The longest pause between two attempts at reaching etcd: half the TTL, at most 2 s.
    pub(super) fn max_backoff(&self) -> Duration {
        (self.effective_lease_ttl() / 2).min(Duration::from_secs(2))
    }
}

/// Whether `value` can be one segment of an etcd key path.
pub(super) fn is_key_segment(value: &str) -> bool {
    !value.is_empty()
        && !value
            .chars()
            .any(|c| c == '/' || c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ElectionConfig {
        ElectionConfig::new(
            vec!["http://127.0.0.1:2379".into()],
            "eu-west",
            "host-1",
            "http://127.0.0.1:7233",
        )
    }

    #[test]
    fn leadership_config_defaults_and_derived_timing() {
        let config = config();
        assert_eq!(config.validate().map_err(|e| e.to_string()), Ok(()));
        assert_eq!(config.lease_ttl, Duration::from_secs(5));
        assert_eq!(config.keep_alive_interval(), Duration::from_millis(1250));
        assert_eq!(config.safety_margin(), Duration::from_secs(1));
        assert_eq!(config.lease_validity(), Duration::from_secs(4));
        assert_eq!(config.step_down_pause(), Duration::from_secs(5));
        let short = ElectionConfig {
            lease_ttl: Duration::from_secs(2),
            ..config
        };
        assert_eq!(short.keep_alive_interval(), Duration::from_millis(500));
        assert_eq!(short.safety_margin(), Duration::from_millis(500));
        assert_eq!(short.lease_validity(), Duration::from_millis(1500));
        assert!(short.lease_validity() > short.keep_alive_interval() * 2);
    }

    #[test]
    fn leadership_config_refuses_bad_fields_naming_them() {
        let cases: Vec<(ElectionConfig, &str, &str)> = vec![
            (
                ElectionConfig {
                    endpoints: vec![],
                    ..config()
                },
                "etcd endpoints",
                "none",
            ),
            (
                ElectionConfig {
                    endpoints: vec!["http://a:1".into(), " ".into()],
                    ..config()
                },
                "etcd endpoints[1]",
                "empty",
            ),
            (
                ElectionConfig {
                    region: "eu/west".into(),
                    ..config()
                },
                "region",
                "\"eu/west\"",
            ),
            (
                ElectionConfig {
                    member_id: String::new(),
                    ..config()
                },
                "member_id",
                "\"\"",
            ),
            (
                ElectionConfig {
                    advertise: String::new(),
                    ..config()
                },
                "advertise",
                "empty",
            ),
            (
                ElectionConfig {
                    lease_ttl: Duration::from_millis(2500),
                    ..config()
                },
                "lease_ttl",
                "2.5s",
            ),
            (
                ElectionConfig {
                    lease_ttl: Duration::from_secs(1),
                    ..config()
                },
                "lease_ttl",
                "1s",
            ),
            (
                ElectionConfig {
                    connect_timeout: Duration::ZERO,
                    ..config()
                },
                "connect_timeout",
                "0ns",
            ),
        ];
        for (config, field, found) in cases {
            let message = config.validate().unwrap_err().to_string();
            assert!(message.contains(field), "{field}: {message}");
            assert!(message.contains(found), "{found}: {message}");
        }
    }

    #[test]
    fn leadership_config_rounds_an_unvalidated_ttl_up_to_a_safe_one() {
        let rounded = ElectionConfig {
            lease_ttl: Duration::from_millis(2500),
            ..config()
        };
        assert_eq!(rounded.lease_ttl_secs(), 3);
        let tiny = ElectionConfig {
            lease_ttl: Duration::from_millis(10),
            ..config()
        };
        assert_eq!(tiny.lease_ttl_secs(), 2);
    }
}
