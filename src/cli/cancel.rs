//! `tandem cancel RUN_ID`: ask a run on a Tandem server to stop.

use clap::Args;
use tandem_api::RunState;

use super::{Failure, exit, remote, runtime};

/// Arguments of `tandem cancel`.
#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The run to cancel.
    #[arg(value_name = "RUN_ID")]
    run_id: String,
    /// Why (recorded in the run; at most 1024 bytes).
    #[arg(
        long,
        default_value = "cancelled with `tandem cancel`",
        value_name = "TEXT"
    )]
    reason: String,
}

/// `tandem cancel RUN_ID`: exit 0 when the request was taken (also for a run that had already
/// finished, which it leaves as it was); an unknown run is exit 2.
pub fn cancel(server: Option<&str>, args: CancelArgs) -> Result<u8, Failure> {
    let server = remote::server_address(server);
    let state = runtime()?.block_on(async {
        let client = remote::connect(server).await?;
        client
            .cancel_run(&args.run_id, &args.reason)
            .await
            .map_err(Failure::from)
    })?;
    let run_id = &args.run_id;
    match state {
        RunState::Running => println!(
            "run {run_id} is being cancelled: running attempts are stopped, nothing new starts (`tandem watch {run_id}` follows it to the end)"
        ),
        RunState::Cancelled => println!("run {run_id} cancelled"),
        finished => println!("run {run_id} had already finished: {finished} (nothing changed)"),
    }
    Ok(exit::OK)
}
