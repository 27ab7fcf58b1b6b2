//! `tandem cluster status`: the replicas of a region and which one leads, as a replica reads
//! them from etcd (`GetClusterStatus`, answered by any replica).

use std::time::Duration;

use clap::{Args, Subcommand};
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};
use tandem_api::{ClusterStatus, MemberRole};

use super::{Failure, OutputFormat, exit, remote, runtime, table};

/// Arguments of `tandem cluster`.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// Show the region's replicas, its leader, the leader's epoch and lease (any replica
    /// answers; give several with --server URL,URL,...).
    Status(StatusArgs),
}

/// Arguments of `tandem cluster status`.
#[derive(Debug, Args)]
struct StatusArgs {
    /// Output format (JSON: the reply's fields; times in ms since the Unix epoch, durations
    /// in ms).
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Table)]
    output: OutputFormat,
}

/// `tandem cluster ...`: exit 0 when a replica answered (also when no leader is known yet);
/// a malformed server list is exit 2, no replica reachable exit 3.
pub fn cluster(server: Option<&str>, args: ClusterArgs) -> Result<u8, Failure> {
    match args.command {
        ClusterCommand::Status(args) => status(server, args),
    }
}

fn status(server: Option<&str>, args: StatusArgs) -> Result<u8, Failure> {
    let server = remote::server_address(server);
    let status = runtime()?.block_on(async {
        let client = remote::connect(server).await?;
        client.cluster_status().await.map_err(Failure::from)
    })?;
    match args.output {
        OutputFormat::Json => {
            let text = serde_json::to_string_pretty(&status).map_err(Failure::system)?;
            println!("{text}");
        }
        OutputFormat::Table => println!("{}", render(&status)),
    }
    Ok(exit::OK)
}

/// The answering replica, a table of the members (member, address, role, started), then the
/// leader, its epoch and the time left on its lease.
fn render(status: &ClusterStatus) -> String {
    let mut lines = vec![format!(
        "region {} · answered by {} ({}) as {}",
        status.region,
        or_unknown(&status.answered_by),
        status.endpoint,
        status.role
    )];
    if status.members.is_empty() {
        lines.push("no live members".to_string());
    } else {
        lines.push(members_table(status));
    }
    let leader = match &status.leader {
        Some(leader) => format!(
            "leader:   {} ({}), epoch {}",
            leader.member_id, leader.address, leader.epoch
        ),
        None => "leader:   none (an election is under way, or etcd is unreachable)".to_string(),
    };
    lines.push(leader);
    if let Some(lease) = lease_line(status.lease_ttl, status.lease_ttl_left) {
        lines.push(lease);
    }
    lines.join("\n")
}

fn members_table(status: &ClusterStatus) -> String {
    let mut out = Table::new();
    out.load_style(UTF8_FULL_CONDENSED)
        .set_header(vec!["MEMBER", "ADDRESS", "ROLE", "STARTED", "VERSION"]);
    if out.width().is_some_and(|width| width >= 80) {
        out.set_content_arrangement(ContentArrangement::Dynamic);
    }
    for member in &status.members {
        let role = if status.role == MemberRole::Standalone {
            MemberRole::Standalone.as_str()
        } else if member.is_leader {
            MemberRole::Leader.as_str()
        } else {
            MemberRole::Follower.as_str()
        };
        let mut member_id = member.member_id.clone();
        if member.member_id == status.answered_by {
            member_id.push_str(" *");
        }
        out.add_row(vec![
            member_id,
            member.address.clone(),
            role.to_string(),
            if member.started_at_unix_ms > 0 {
                table::format_timestamp(member.started_at_unix_ms)
            } else {
                "-".to_string()
            },
            or_unknown(&member.version).to_string(),
        ]);
    }
    format!("{out}\n* answered this request")
}

/// `lease:    TTL 5.000s, 4.000s left`, or `None` when nothing is known of the lease.
fn lease_line(ttl: Option<Duration>, left: Option<Duration>) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(ttl) = ttl {
        parts.push(format!("TTL {}", table::format_elapsed(ttl)));
    }
    if let Some(left) = left {
        parts.push(format!("{} left", table::format_elapsed(left)));
    }
    (!parts.is_empty()).then(|| format!("lease:    {}", parts.join(", ")))
}

fn or_unknown(text: &str) -> &str {
    if text.is_empty() { "?" } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_api::{ClusterLeader, ClusterMember};

    fn status(leader: bool) -> ClusterStatus {
        let member = |id: &str, port: u16, is_leader: bool| ClusterMember {
            member_id: id.to_string(),
            address: format!("http://127.0.0.1:{port}"),
            started_at_unix_ms: 1_700_000_000_000,
            version: "0.1.0".to_string(),
            is_leader,
        };
        ClusterStatus {
            region: "eu-west".to_string(),
            answered_by: "b".to_string(),
            endpoint: "http://127.0.0.1:7234".to_string(),
            role: MemberRole::Follower,
            members: vec![member("a", 7233, leader), member("b", 7234, false)],
            leader: leader.then(|| ClusterLeader {
                member_id: "a".to_string(),
                address: "http://127.0.0.1:7233".to_string(),
                epoch: 42,
            }),
            lease_ttl: leader.then_some(Duration::from_secs(5)),
            lease_ttl_left: leader.then_some(Duration::from_secs(4)),
        }
    }

    #[test]
    fn shows_members_leader_epoch_and_lease() {
        let text = render(&status(true));
        assert!(
            text.starts_with("region eu-west · answered by b (http://127.0.0.1:7234) as follower"),
            "{text}"
        );
        for needle in [
            "MEMBER",
            "http://127.0.0.1:7233",
            "leader",
            "follower",
            "2023-11-14T22:13:20.000Z",
            "b *",
            "leader:   a (http://127.0.0.1:7233), epoch 42",
            "lease:    TTL 5.000s, 4.000s left",
        ] {
            assert!(text.contains(needle), "`{needle}` missing from:\n{text}");
        }
    }

    #[test]
    fn without_a_leader_says_so() {
        let text = render(&status(false));
        assert!(text.contains("leader:   none"), "{text}");
        assert!(!text.contains("lease:"), "{text}");
        assert!(!text.contains("│ leader"), "no member leads: {text}");
    }

    #[test]
    fn a_standalone_replica_is_shown_as_such() {
        let mut standalone = status(true);
        standalone.role = MemberRole::Standalone;
        standalone.members.truncate(1);
        let text = render(&standalone);
        assert!(text.contains("standalone"), "{text}");
    }
}
