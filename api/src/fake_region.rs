//! Unit-test only: a region of fake replicas, each a real tonic server on a loopback port
//! built on the generated server traits, that answer like `tandem serve` replicas do as far as
//! leadership goes: the leader serves calls that need the leader, the others refuse them with
//! `not_leader` naming the leader; reads are served by every replica. Replicas may be made
//! those of a region that is not active (`region_not_active`). Nothing is stored: the
//! handlers return fixed replies and record who was called, so tests can check where the SDK
//! sent each call.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::Stream;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use crate::proto;
use crate::proto::cluster_service_server::{ClusterService, ClusterServiceServer};
use crate::proto::worker_service_server::{WorkerService, WorkerServiceServer};
use crate::proto::workflow_service_server::{WorkflowService, WorkflowServiceServer};

/// What happened to one call on one replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Call {
    pub(crate) replica: usize,
    pub(crate) method: &'static str,
    pub(crate) outcome: &'static str,
}

/// The shared state of the fake region.
#[derive(Debug, Default)]
pub(crate) struct Region {
    addresses: Mutex<Vec<String>>,
    leader: Mutex<Option<usize>>,
    /// `leader_starting` refusals the leader still gives.
    pub(crate) starting: AtomicU32,
    /// Replicas of a region that is not active: they refuse calls that need the leader with
    /// `region_not_active` naming `eu-west`, whoever leads.
    pub(crate) not_active: Mutex<Vec<usize>>,
    /// The leader's next StartRun waits past the client's request timeout (its reply is lost).
    pub(crate) hang_next_start: AtomicBool,
    /// Run states each replica's WatchRun sends before its stream ends.
    pub(crate) watch_plans: Mutex<BTreeMap<usize, Vec<proto::RunState>>>,
    /// Whether the one lease PollTasks hands out was given.
    lease_given: AtomicBool,
    /// Lease ids completed, with the replica that accepted each.
    pub(crate) completed: Mutex<Vec<(String, usize)>>,
    calls: Mutex<Vec<Call>>,
}

/// A running fake region.
pub(crate) struct FakeRegion {
    pub(crate) region: Arc<Region>,
    servers: Vec<tokio::task::JoinHandle<()>>,
}

impl FakeRegion {
    /// Starts `replicas` servers; replica `leader` (if any) leads.
    pub(crate) async fn start(replicas: usize, leader: Option<usize>) -> FakeRegion {
        let region = Arc::new(Region::default());
        *lock(&region.leader) = leader;
        let mut servers = Vec::new();
        for index in 0..replicas {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("a loopback port");
            let address = format!("http://{}", listener.local_addr().expect("a bound address"));
            lock(&region.addresses).push(address);
            let replica = Replica {
                index,
                region: region.clone(),
            };
            servers.push(tokio::spawn(async move {
                tonic::transport::Server::builder()
                    .add_service(WorkflowServiceServer::new(replica.clone()))
                    .add_service(WorkerServiceServer::new(replica.clone()))
                    .add_service(ClusterServiceServer::new(replica))
                    .serve_with_incoming(TcpIncoming::from(listener))
                    .await
                    .expect("the fake replica serves");
            }));
        }
        FakeRegion { region, servers }
    }

    /// The address of replica `index`.
    pub(crate) fn address(&self, index: usize) -> String {
        lock(&self.region.addresses)[index].clone()
    }

    /// Makes replica `leader` lead (`None`: an election is under way).
    pub(crate) fn set_leader(&self, leader: Option<usize>) {
        *lock(&self.region.leader) = leader;
    }

    /// Every call so far, in order.
    pub(crate) fn calls(&self) -> Vec<Call> {
        lock(&self.region.calls).clone()
    }

    /// The calls of `method` so far, as (replica, outcome).
    pub(crate) fn calls_of(&self, method: &str) -> Vec<(usize, &'static str)> {
        self.calls()
            .into_iter()
            .filter(|call| call.method == method)
            .map(|call| (call.replica, call.outcome))
            .collect()
    }
}

impl Drop for FakeRegion {
    fn drop(&mut self) {
        for server in &self.servers {
            server.abort();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One replica's handlers.
#[derive(Debug, Clone)]
struct Replica {
    index: usize,
    region: Arc<Region>,
}

impl Replica {
    fn record(&self, method: &'static str, outcome: &'static str) {
        lock(&self.region.calls).push(Call {
            replica: self.index,
            method,
            outcome,
        });
    }

    /// Lets a call that needs the leader through on the leader; refuses it elsewhere the way
    /// the contract of `cluster_service.proto` says (literal wire values on purpose).
    fn lead(&self, method: &'static str) -> Result<(), Status> {
        if lock(&self.region.not_active).contains(&self.index) {
            self.record(method, "region_not_active");
            let mut status = Status::failed_precondition(format!(
                "region of member {} is standby, not active; the active region is eu-west",
                self.index
            ));
            let metadata = status.metadata_mut();
            metadata.insert(
                "tandem-error-code",
                "region_not_active".parse().expect("ASCII"),
            );
            metadata.insert("tandem-active-region", "eu-west".parse().expect("ASCII"));
            return Err(status);
        }
        let leader = *lock(&self.region.leader);
        if leader == Some(self.index) {
            let starting = self
                .region
                .starting
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                    left.checked_sub(1)
                })
                .is_ok();
            if starting {
                self.record(method, "leader_starting");
                let mut status = Status::unavailable("the leader is resuming the region's runs");
                status.metadata_mut().insert(
                    "tandem-error-code",
                    "leader_starting".parse().expect("ASCII"),
                );
                return Err(status);
            }
            self.record(method, "served");
            return Ok(());
        }
        self.record(method, "not_leader");
        let mut status = Status::unavailable(format!(
            "member {} of region test does not lead it",
            self.index
        ));
        status
            .metadata_mut()
            .insert("tandem-error-code", "not_leader".parse().expect("ASCII"));
        if let Some(leader) = leader {
            let address = lock(&self.region.addresses)[leader].clone();
            status.metadata_mut().insert(
                "tandem-leader-address",
                address.parse().expect("an ASCII address"),
            );
        }
        Err(status)
    }

    fn run(&self, run_id: &str, state: proto::RunState) -> proto::Run {
        proto::Run {
            run_id: run_id.to_string(),
            workflow: "fake".to_string(),
            version: format!("served-by-{}", self.index),
            state: state as i32,
            created_at_unix_ms: 1,
            ..proto::Run::default()
        }
    }
}

type UpdateStream = Pin<Box<dyn Stream<Item = Result<proto::RunUpdate, Status>> + Send>>;

#[tonic::async_trait]
impl WorkflowService for Replica {
    async fn register_workflow(
        &self,
        _request: Request<proto::RegisterWorkflowRequest>,
    ) -> Result<Response<proto::RegisterWorkflowResponse>, Status> {
        self.lead("RegisterWorkflow")?;
        Ok(Response::new(proto::RegisterWorkflowResponse {
            name: "fake".to_string(),
            version: format!("registered-on-{}", self.index),
            task_count: 1,
            created: true,
        }))
    }

    async fn start_run(
        &self,
        request: Request<proto::StartRunRequest>,
    ) -> Result<Response<proto::StartRunResponse>, Status> {
        self.lead("StartRun")?;
        if self.region.hang_next_start.swap(false, Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        Ok(Response::new(proto::StartRunResponse {
            run_id: format!("run-on-{}", self.index),
            created: true,
            version: request.into_inner().idempotency_key,
        }))
    }

    async fn get_run(
        &self,
        request: Request<proto::GetRunRequest>,
    ) -> Result<Response<proto::GetRunResponse>, Status> {
        self.record("GetRun", "served");
        Ok(Response::new(proto::GetRunResponse {
            run: Some(self.run(&request.into_inner().run_id, proto::RunState::Running)),
        }))
    }

    async fn list_runs(
        &self,
        _request: Request<proto::ListRunsRequest>,
    ) -> Result<Response<proto::ListRunsResponse>, Status> {
        self.record("ListRuns", "served");
        Ok(Response::new(proto::ListRunsResponse::default()))
    }

    async fn cancel_run(
        &self,
        _request: Request<proto::CancelRunRequest>,
    ) -> Result<Response<proto::CancelRunResponse>, Status> {
        self.lead("CancelRun")?;
        Ok(Response::new(proto::CancelRunResponse {
            state: proto::RunState::Cancelled as i32,
        }))
    }

    type WatchRunStream = UpdateStream;

    async fn watch_run(
        &self,
        request: Request<proto::WatchRunRequest>,
    ) -> Result<Response<UpdateStream>, Status> {
        self.record("WatchRun", "served");
        let run_id = request.into_inner().run_id;
        let plan = lock(&self.region.watch_plans)
            .get(&self.index)
            .cloned()
            .unwrap_or_default();
        let updates: Vec<Result<proto::RunUpdate, Status>> = plan
            .into_iter()
            .map(|state| {
                Ok(proto::RunUpdate {
                    run: Some(self.run(&run_id, state)),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(futures::stream::iter(updates))))
    }
}

#[tonic::async_trait]
impl WorkerService for Replica {
    async fn poll_tasks(
        &self,
        request: Request<proto::PollTasksRequest>,
    ) -> Result<Response<proto::PollTasksResponse>, Status> {
        self.lead("PollTasks")?;
        if self.region.lease_given.swap(true, Ordering::SeqCst) {
            let wait = Duration::from_millis(u64::from(request.into_inner().wait_ms));
            tokio::time::sleep(wait.min(Duration::from_millis(100))).await;
            return Ok(Response::new(proto::PollTasksResponse::default()));
        }
        Ok(Response::new(proto::PollTasksResponse {
            tasks: vec![proto::TaskLease {
                lease_id: "run-1:0:1".to_string(),
                run_id: "run-1".to_string(),
                task_id: "load".to_string(),
                attempt: 1,
                task_type: "load".to_string(),
                input_json: "{}".to_string(),
                idempotency_key: "run-1/load".to_string(),
                heartbeat_timeout_ms: 600,
                timeout_ms: 0,
                traceparent: String::new(),
                workflow: "fake".to_string(),
            }],
        }))
    }

    async fn heartbeat(
        &self,
        _request: Request<proto::HeartbeatRequest>,
    ) -> Result<Response<proto::HeartbeatResponse>, Status> {
        self.lead("Heartbeat")?;
        Ok(Response::new(proto::HeartbeatResponse {
            cancel_requested: false,
        }))
    }

    async fn complete_task(
        &self,
        request: Request<proto::CompleteTaskRequest>,
    ) -> Result<Response<proto::CompleteTaskResponse>, Status> {
        self.lead("CompleteTask")?;
        lock(&self.region.completed).push((request.into_inner().lease_id, self.index));
        Ok(Response::new(proto::CompleteTaskResponse {}))
    }

    async fn fail_task(
        &self,
        _request: Request<proto::FailTaskRequest>,
    ) -> Result<Response<proto::FailTaskResponse>, Status> {
        self.lead("FailTask")?;
        Ok(Response::new(proto::FailTaskResponse {}))
    }
}

#[tonic::async_trait]
impl ClusterService for Replica {
    async fn get_cluster_status(
        &self,
        _request: Request<proto::GetClusterStatusRequest>,
    ) -> Result<Response<proto::GetClusterStatusResponse>, Status> {
        self.record("GetClusterStatus", "served");
        let leader = *lock(&self.region.leader);
        let addresses = lock(&self.region.addresses).clone();
        let members = addresses
            .iter()
            .enumerate()
            .map(|(index, address)| proto::ClusterMember {
                member_id: format!("member-{index}"),
                address: address.clone(),
                started_at_unix_ms: 1_700_000_000_000 + index as i64,
                version: "0.1.0".to_string(),
                is_leader: leader == Some(index),
            })
            .collect();
        let role = if leader == Some(self.index) {
            proto::MemberRole::Leader
        } else {
            proto::MemberRole::Follower
        };
        Ok(Response::new(proto::GetClusterStatusResponse {
            region: "test".to_string(),
            role: role as i32,
            members,
            leader: leader.map(|index| proto::ClusterLeader {
                member_id: format!("member-{index}"),
                address: addresses[index].clone(),
                epoch: 7,
            }),
            lease_ttl_ms: leader.map(|_| 5000),
            lease_ttl_left_ms: leader.map(|_| 4000),
            answered_by: format!("member-{}", self.index),
        }))
    }
}
