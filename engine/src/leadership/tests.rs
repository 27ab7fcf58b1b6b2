//! Elections against a real etcd ([`TempEtcd`]), with a 2 s lease TTL (8 s for hand-overs,
//! see [`HANDOVER_TTL`]): one leader among
//! three, fail-over on shutdown, drop and step-down, the role withdrawn in time when etcd
//! dies, a leader again after etcd is back, and what `cluster_status` reports.

use std::time::Duration;

use etcd_client::{Client, GetOptions, SortOrder, SortTarget};
use tokio::time::Instant;

use super::*;
use crate::testing::TempEtcd;

const TTL: Duration = Duration::from_secs(2);

/// The lease TTL of the hand-over tests. A hand-over by resignation must take less than half
/// of it, while one that waited for the lease to expire would take at least three quarters
/// (keep-alives go out every TTL/4), so a slow etcd on a loaded machine cannot blur the two.
const HANDOVER_TTL: Duration = Duration::from_secs(8);

async fn etcd() -> TempEtcd {
    TempEtcd::start()
        .await
        .unwrap_or_else(|error| panic!("starting a temp etcd: {error}"))
}

fn config(etcd: &TempEtcd, region: &str, member: &str, lease_ttl: Duration) -> ElectionConfig {
    ElectionConfig {
        lease_ttl,
        connect_timeout: Duration::from_secs(1),
        ..ElectionConfig::new(
            etcd.endpoints(),
            region,
            member,
            format!("http://{member}.test:7233"),
        )
    }
}

fn start(etcd: &TempEtcd, region: &str, members: &[&str]) -> Vec<Election> {
    start_with_ttl(etcd, region, members, TTL)
}

fn start_with_ttl(
    etcd: &TempEtcd,
    region: &str,
    members: &[&str],
    lease_ttl: Duration,
) -> Vec<Election> {
    members
        .iter()
        .map(|member| {
            let config = config(etcd, region, member, lease_ttl);
            config.validate().expect("a valid test config");
            Election::start(config)
        })
        .collect()
}

/// Polls `check` every 10 ms until it gives `Some`, for at most `within`.
async fn eventually<T>(within: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `(index, epoch)` of the one leader among `elections` when exactly one leads and every
/// other follows it by name and epoch.
fn settled(elections: &[Election]) -> Option<(usize, u64)> {
    let roles: Vec<Role> = elections.iter().map(Election::role).collect();
    let leaders: Vec<(usize, u64)> = roles
        .iter()
        .enumerate()
        .filter_map(|(index, role)| match role {
            Role::Leader { epoch, .. } => Some((index, *epoch)),
            Role::Follower { .. } => None,
        })
        .collect();
    let [(index, epoch)] = leaders[..] else {
        return None;
    };
    let leader_id = &elections[index].config().member_id;
    let all_follow = roles.iter().enumerate().all(|(other, role)| {
        other == index
            || matches!(role, Role::Follower { leader: Some(info) }
                if &info.member_id == leader_id && info.epoch == epoch)
    });
    all_follow.then_some((index, epoch))
}

async fn client(etcd: &TempEtcd) -> Client {
    Client::connect(etcd.endpoints(), None).await.unwrap()
}

/// The election keys of `region`, lowest create revision first.
async fn leader_keys(etcd: &TempEtcd, region: &str) -> Vec<etcd_client::KeyValue> {
    let options = GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Create, SortOrder::Ascend);
    client(etcd)
        .await
        .get(format!("/tandem/{region}/leader/"), Some(options))
        .await
        .unwrap()
        .kvs()
        .to_vec()
}

async fn status(etcd: &TempEtcd, region: &str) -> ClusterStatus {
    cluster_status(&etcd.endpoints(), region, Duration::from_secs(2))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_elect_one_leader_and_hand_over_on_shutdown_and_drop() {
    let etcd = etcd().await;
    let mut elections = start_with_ttl(&etcd, "three", &["m1", "m2", "m3"], HANDOVER_TTL);
    let (index, epoch) = eventually(Duration::from_secs(10), "one leader, two followers", || {
        settled(&elections)
    })
    .await;
    let leader_id = elections[index].config().member_id.clone();

    // The epoch is the create revision of the leader key, which names the leader. Followers
    // learn the leader by observing, which can come before their own campaign has put its
    // candidate key, so wait for all three keys.
    let keys = eventually_async(
        Duration::from_secs(5),
        "one candidate key per member",
        || {
            let etcd = &etcd;
            async move {
                let keys = leader_keys(etcd, "three").await;
                (keys.len() == 3).then_some(keys)
            }
        },
    )
    .await;
    assert_eq!(keys[0].create_revision(), i64::try_from(epoch).unwrap());
    let value: serde_json::Value = serde_json::from_slice(keys[0].value()).unwrap();
    assert_eq!(value["member_id"], leader_id.as_str());
    assert_eq!(value["address"], format!("http://{leader_id}.test:7233"));

    let Role::Leader { valid_until, .. } = elections[index].role() else {
        panic!("the leader's role changed");
    };
    // A loaded machine may run the local withdrawal timer late, so only the upper bound holds.
    assert!(
        valid_until <= Instant::now() + HANDOVER_TTL,
        "{valid_until:?}"
    );

    // Members register on their own leases, possibly after the election settled.
    let status = eventually_async(Duration::from_secs(5), "three registered members", || {
        let etcd = &etcd;
        async move {
            let status = status(etcd, "three").await;
            (status.members.len() == 3).then_some(status)
        }
    })
    .await;
    assert_eq!(status.region, "three");
    let ids: Vec<&str> = status
        .members
        .iter()
        .map(|m| m.member_id.as_str())
        .collect();
    assert_eq!(ids, ["m1", "m2", "m3"]);
    for member in &status.members {
        assert_eq!(
            member.address,
            format!("http://{}.test:7233", member.member_id)
        );
        assert_eq!(member.version, env!("CARGO_PKG_VERSION"));
        assert!(member.started_at > 1_700_000_000_000, "{member:?}");
    }
    assert_eq!(
        status.leader,
        Some(LeaderInfo {
            member_id: leader_id.clone(),
            address: format!("http://{leader_id}.test:7233"),
            epoch,
        })
    );
    assert_eq!(status.lease_ttl, Some(HANDOVER_TTL));
    let left = status.lease_ttl_left.expect("the leader's lease is alive");
    assert!(left <= HANDOVER_TTL, "{left:?}");

    // Shutdown: resign and revoke; another member leads with a higher epoch at once.
    let stopped = elections.remove(index);
    let began = Instant::now();
    stopped.shutdown().await;
    assert_eq!(stopped.role(), Role::Follower { leader: None });
    let (next, next_epoch) =
        eventually(HANDOVER_TTL / 2, "a new leader", || settled(&elections)).await;
    assert!(next_epoch > epoch, "{next_epoch} > {epoch}");
    assert!(began.elapsed() < HANDOVER_TTL / 2);
    stopped.shutdown().await; // idempotent
    let status = cluster_status(&etcd.endpoints(), "three", Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(
        status.members.len(),
        2,
        "the stopped member is deregistered"
    );
    assert!(!status.members.iter().any(|m| m.member_id == leader_id));

    // Dropping the last handle hands over too.
    let dropped = elections.remove(next);
    let mut dropped_role = dropped.subscribe();
    let began = Instant::now();
    drop(dropped);
    let (_, last_epoch) = eventually(HANDOVER_TTL / 2, "the last member leads", || {
        settled(&elections)
    })
    .await;
    assert!(last_epoch > next_epoch, "{last_epoch} > {next_epoch}");
    assert!(began.elapsed() < HANDOVER_TTL / 2);
    // The dropped election's task ended (its sender is gone) as a follower.
    while dropped_role.changed().await.is_ok() {}
    assert!(!dropped_role.borrow().is_leader());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_steps_down_lets_another_lead_and_campaigns_again_after_a_pause() {
    let etcd = etcd().await;
    let elections = start_with_ttl(&etcd, "stepdown", &["s1", "s2"], HANDOVER_TTL);
    let (index, epoch) = eventually(Duration::from_secs(10), "one leader", || {
        settled(&elections)
    })
    .await;
    let (leader, other) = (&elections[index], &elections[1 - index]);
    let old_lease = leader_keys(&etcd, "stepdown").await[0].lease();

    let stepped_at = Instant::now();
    leader.step_down("the store refused its epoch");
    assert!(
        !leader.role().is_leader(),
        "a member is a follower as soon as step_down returns"
    );
    let (new_index, new_epoch) = eventually(HANDOVER_TTL / 2, "the other member leads", || {
        settled(&elections)
    })
    .await;
    assert_eq!(new_index, 1 - index);
    assert!(new_epoch > epoch);

    // It registers again, on a fresh lease.
    let member_key = format!("/tandem/stepdown/members/{}", leader.config().member_id);
    let kv = client(&etcd).await;
    let lease = eventually_async(HANDOVER_TTL / 2, "registered again", || {
        let mut kv = kv.clone();
        let key = member_key.clone();
        async move {
            let found = kv.get(key, None).await.ok()?;
            found.kvs().first().map(|kv| kv.lease())
        }
    })
    .await;
    assert_ne!(lease, old_lease);
    assert_eq!(status(&etcd, "stepdown").await.members.len(), 2);

    // With the other gone during the pause, it waits out the pause, then leads.
    other.shutdown().await;
    let led_at = eventually(
        HANDOVER_TTL + Duration::from_secs(4),
        "the stepped-down member leads",
        || leader.role().is_leader().then(Instant::now),
    )
    .await;
    assert!(
        led_at >= stepped_at + leader.config().step_down_pause(),
        "campaigned again {:?} after stepping down, before the pause of {:?}",
        led_at - stepped_at,
        leader.config().step_down_pause()
    );
}

/// Polls the async `check` every 20 ms until it gives `Some`, for at most `within`.
async fn eventually_async<T, F, C>(within: Duration, what: &str, mut check: C) -> T
where
    C: FnMut() -> F,
    F: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Lets `leader` renew its lease for a while, applies `fault` to etcd, and checks that the
/// leader publishes `Follower` before a TTL has passed, and no later than the last
/// `valid_until` it published.
async fn withdraws_in_time(leader: &Election, fault: impl FnOnce()) {
    let mut role = leader.subscribe();
    // Let a few keep-alives be answered.
    tokio::time::sleep(TTL / 2).await;
    let Role::Leader {
        mut valid_until, ..
    } = role.borrow_and_update().clone()
    else {
        panic!("the leader's role changed");
    };
    let fault_at = Instant::now();
    fault();
    let withdrawn_at = loop {
        tokio::time::timeout(TTL, role.changed())
            .await
            .expect("the role changes within the TTL")
            .expect("the election runs");
        match role.borrow_and_update().clone() {
            Role::Leader {
                valid_until: until, ..
            } => valid_until = until,
            Role::Follower { .. } => break Instant::now(),
        }
    };
    assert!(
        withdrawn_at - fault_at < TTL,
        "withdrawn {:?} after the fault: not before the lease could expire",
        withdrawn_at - fault_at
    );
    // The local timer fires at `valid_until`; the margin covers the test task waking up late
    // on a loaded machine, far below the seconds a withdrawal that waited on etcd would take.
    assert!(
        withdrawn_at <= valid_until + Duration::from_millis(250),
        "withdrawn {:?} after valid_until",
        withdrawn_at - valid_until
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_withdraws_before_its_lease_can_expire_when_etcd_dies_and_one_leads_after_restart()
{
    let etcd = etcd().await;
    let elections = start(&etcd, "outage", &["o1", "o2"]);
    let (index, epoch) = eventually(Duration::from_secs(10), "one leader", || {
        settled(&elections)
    })
    .await;
    withdraws_in_time(&elections[index], || etcd.kill().unwrap()).await;
    assert!(
        elections
            .iter()
            .all(|election| !election.role().is_leader())
    );

    etcd.start_again().await.unwrap();
    let (_, new_epoch) = eventually(TTL * 3, "a leader once etcd is back", || {
        settled(&elections)
    })
    .await;
    assert!(new_epoch > epoch, "{new_epoch} > {epoch}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_withdraws_in_time_when_etcd_freezes_and_one_leads_after_it_thaws() {
    let etcd = etcd().await;
    let elections = start(&etcd, "frozen", &["f1", "f2"]);
    let (index, epoch) = eventually(Duration::from_secs(10), "one leader", || {
        settled(&elections)
    })
    .await;
    let frozen_at = Instant::now();
    withdraws_in_time(&elections[index], || etcd.pause().unwrap()).await;
    // Frozen past the TTL: on etcd's clock every lease has expired when it thaws.
    tokio::time::sleep_until(frozen_at + TTL + TTL / 2).await;
    etcd.resume().unwrap();
    let (_, new_epoch) =
        eventually(TTL * 3, "a leader once etcd thaws", || settled(&elections)).await;
    assert!(new_epoch > epoch, "{new_epoch} > {epoch}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_key_is_deleted_follows_then_leads_with_a_new_epoch() {
    let etcd = etcd().await;
    let elections = start(&etcd, "deleted", &["d1"]);
    let (_, epoch) = eventually(Duration::from_secs(10), "a leader", || settled(&elections)).await;
    let mut role = elections[0].subscribe();
    role.borrow_and_update();
    client(&etcd)
        .await
        .delete(
            "/tandem/deleted/leader/",
            Some(etcd_client::DeleteOptions::new().with_prefix()),
        )
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(1), async {
        while role.borrow_and_update().is_leader() {
            role.changed().await.unwrap();
        }
    })
    .await
    .expect("a follower within a second of losing its key");
    let (_, new_epoch) = eventually(Duration::from_secs(5), "leads again", || {
        settled(&elections)
    })
    .await;
    assert!(new_epoch > epoch, "{new_epoch} > {epoch}");
    elections[0].shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_status_of_an_empty_region_and_errors() {
    let etcd = etcd().await;
    let empty = status(&etcd, "nobody").await;
    assert_eq!(
        empty,
        ClusterStatus {
            region: "nobody".into(),
            members: vec![],
            leader: None,
            lease_ttl: None,
            lease_ttl_left: None,
        }
    );

    let invalid = cluster_status(&etcd.endpoints(), "a/b", Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(
        matches!(invalid, LeadershipError::InvalidConfig { .. }),
        "{invalid}"
    );

    client(&etcd)
        .await
        .put("/tandem/broken/members/x", "not json", None)
        .await
        .unwrap();
    let broken = cluster_status(&etcd.endpoints(), "broken", Duration::from_secs(2))
        .await
        .unwrap_err();
    let message = broken.to_string();
    assert!(message.contains("/tandem/broken/members/x"), "{message}");
    assert!(message.contains("not json"), "{message}");

    etcd.kill().unwrap();
    let began = Instant::now();
    let down = cluster_status(&etcd.endpoints(), "nobody", Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "bounded by the timeout"
    );
    let message = down.to_string();
    assert!(message.contains(&etcd.endpoint()), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_election_without_etcd_stays_a_follower_and_leads_once_etcd_answers() {
    let etcd = etcd().await;
    etcd.kill().unwrap();
    let elections = start(&etcd, "late", &["l1"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(elections[0].role(), Role::Follower { leader: None });
    etcd.start_again().await.unwrap();
    eventually(Duration::from_secs(5), "leads once etcd answers", || {
        settled(&elections)
    })
    .await;
}
