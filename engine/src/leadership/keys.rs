//! Where a region's election and members live in etcd.
//!
//! - `/tandem/<region>/leader`: the election name. The election recipe keeps one key per
//!   candidate under it (`/tandem/<region>/leader/<lease id in hex>`, on the candidate's
//!   lease, value = JSON `{"member_id", "address"}`); the key with the lowest create revision
//!   is the leader, and that revision is its epoch.
//! - `/tandem/<region>/members/<member_id>`: one key per running replica (JSON
//!   [`Member`](super::Member)), on the replica's lease, so it disappears with the replica.

/// The election name of `region`: `/tandem/<region>/leader`.
pub(super) fn election_name(region: &str) -> String {
    format!("/tandem/{region}/leader")
}

/// The prefix of `region`'s member keys: `/tandem/<region>/members/`.
pub(super) fn members_prefix(region: &str) -> String {
    format!("/tandem/{region}/members/")
}

/// The key of one member: `/tandem/<region>/members/<member_id>`.
pub(super) fn member_key(region: &str, member_id: &str) -> String {
    format!("{}{member_id}", members_prefix(region))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leadership_keys_keep_leader_and_members_apart() {
        assert_eq!(election_name("eu-west"), "/tandem/eu-west/leader");
        assert_eq!(
            member_key("eu-west", "host-1"),
            "/tandem/eu-west/members/host-1"
        );
        // The election recipe puts candidates under `<name>/`: never inside the members.
        assert!(!member_key("eu-west", "x").starts_with(&format!("{}/", election_name("eu-west"))));
    }
}
