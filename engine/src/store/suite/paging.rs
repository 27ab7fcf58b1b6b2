//! Paging through the run list with `RunFilter::before`.

use super::fixtures::{append_ok, batch, finished, new_run};
use crate::checkpoint::{RunEnd, RunId};
use crate::store::{CheckpointStore, RunFilter, RunStatus};

async fn list(store: &dyn CheckpointStore, filter: &RunFilter) -> Vec<RunId> {
    store
        .list_runs(filter)
        .await
        .unwrap_or_else(|error| panic!("list_runs({filter:?}) failed: {error}"))
        .iter()
        .map(|run| run.run_id)
        .collect()
}

/// Pages of `limit` runs, each starting `before` the last run of the previous one, until a
/// short page.
async fn all_pages(store: &dyn CheckpointStore, filter: &RunFilter) -> Vec<Vec<RunId>> {
    let mut pages = Vec::new();
    let mut before = filter.before;
    loop {
        let page = list(
            store,
            &RunFilter {
                before,
                ..filter.clone()
            },
        )
        .await;
        let done = page.len() < filter.limit;
        before = page.last().copied();
        if !page.is_empty() {
            pages.push(page);
        }
        if done || before.is_none() {
            return pages;
        }
        assert!(pages.len() <= 20, "paging does not end: {pages:?}");
    }
}

/// `before` returns only runs created before the given one, newest first, so paging with
/// the last id of each page visits every run once, in order, with or without other filters.
pub async fn test_list_runs_pages(store: &dyn CheckpointStore) {
    let mut all = Vec::new();
    let mut alpha = Vec::new();
    for seq in 0..8 {
        let workflow = if seq % 3 == 0 { "beta" } else { "alpha" };
        let (run_id, epoch) = new_run(store, workflow, seq).await;
        if seq == 4 {
            append_ok(store, epoch, batch(run_id, &[finished(RunEnd::Failed, 9)])).await;
        }
        all.push(run_id);
        if workflow == "alpha" {
            alpha.push(run_id);
        }
    }
    all.reverse();
    alpha.reverse();

    let pages = all_pages(store, &filter(None, None, 3, None)).await;
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![3, 3, 2],
        "8 runs in pages of 3: {pages:?}"
    );
    assert_eq!(
        pages.concat(),
        all,
        "pages visit every run once, newest first"
    );

    let pages = all_pages(store, &filter(Some("alpha"), None, 2, None)).await;
    assert_eq!(pages.concat(), alpha, "paging within a workflow");

    let running: Vec<RunId> = all.iter().copied().filter(|run| *run != all[3]).collect();
    let pages = all_pages(store, &filter(None, Some(RunStatus::Running), 4, None)).await;
    assert_eq!(pages.concat(), running, "paging within a status");

    for (index, run) in all.iter().enumerate() {
        assert_eq!(
            list(store, &filter(None, None, 0, Some(*run))).await,
            all[index + 1..].to_vec(),
            "before the {index}-th newest run: every older run, without a limit"
        );
    }
    let newer = RunId::new();
    assert_eq!(
        list(store, &filter(None, None, 0, Some(newer))).await,
        all,
        "before an id newer than every run (not a run itself): all runs"
    );
    let oldest = RunId(uuid::Uuid::nil());
    assert!(
        list(store, &filter(None, None, 0, Some(oldest)))
            .await
            .is_empty(),
        "nothing sorts before the nil id"
    );
    assert_eq!(
        list(store, &filter(Some("beta"), None, 1, Some(all[0]))).await,
        vec![all[1]],
        "filters, before and limit combine"
    );
}

fn filter(
    workflow: Option<&str>,
    status: Option<RunStatus>,
    limit: usize,
    before: Option<RunId>,
) -> RunFilter {
    RunFilter {
        workflow: workflow.map(str::to_string),
        status,
        limit,
        before,
    }
}
