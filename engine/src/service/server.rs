//! The gRPC server of a region replica: `tandem.v1.WorkflowService`,
//! `tandem.v1.WorkerService`, `tandem.v1.ClusterService`, `tandem.v1.ReplicationService` and
//! `tandem.v1.DrService` (which refuse every call without disaster recovery), the
//! standard `grpc.health.v1.Health` service and server reflection (v1 and v1alpha), so stock
//! tools (grpcurl, grpc_health_probe) work against it.

use std::future::Future;

use tandem_api::proto::cluster_service_server::ClusterServiceServer;
use tandem_api::proto::dr_service_server::DrServiceServer;
use tandem_api::proto::replication_service_server::ReplicationServiceServer;
use tandem_api::proto::worker_service_server::WorkerServiceServer;
use tandem_api::proto::workflow_service_server::WorkflowServiceServer;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

use super::cluster_api::ClusterApi;
use super::dr::{DrApi, ReplicationApi};
use super::limits::MAX_MESSAGE_BYTES;
use super::region::Region;
use super::worker_api::WorkerApi;
use super::workflow_api::WorkflowApi;

/// Errors of [`serve`].
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The reflection service could not load the API's descriptors (a build problem).
    #[error("cannot build the gRPC reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The server failed (e.g. the listener broke).
    #[error("the gRPC server of region {region} failed: {source}")]
    Transport {
        /// The region.
        region: String,
        /// The transport's error.
        source: tonic::transport::Error,
    },
}

/// Serves `region`'s API on `listener` until `shutdown` completes, then stops accepting calls
/// and returns once in-flight calls end.
pub async fn serve(
    region: Region,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<WorkflowServiceServer<WorkflowApi>>()
        .await;
    health.set_serving::<WorkerServiceServer<WorkerApi>>().await;
    health
        .set_serving::<ClusterServiceServer<ClusterApi>>()
        .await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tandem_api::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tandem_api::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let workflows = WorkflowServiceServer::new(WorkflowApi::new(region.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let workers = WorkerServiceServer::new(WorkerApi::new(region.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let cluster = ClusterServiceServer::new(ClusterApi::new(region.clone()));
    // Served without disaster recovery too, refusing every call with `dr_not_configured`.
    let replication = ReplicationServiceServer::new(ReplicationApi::new(region.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let dr = DrServiceServer::new(DrApi::new(region.clone()));
    if region.dr().is_some() {
        health
            .set_serving::<ReplicationServiceServer<ReplicationApi>>()
            .await;
        health.set_serving::<DrServiceServer<DrApi>>().await;
    }
    let name = region.name().to_string();
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(workflows)
        .add_service(workers)
        .add_service(cluster)
        .add_service(replication)
        .add_service(dr)
        .serve_with_incoming_shutdown(
            // Small replies (a watch update, a lease) must not wait for Nagle's algorithm.
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
        .map_err(|source| ServeError::Transport {
            region: name,
            source,
        })
}
