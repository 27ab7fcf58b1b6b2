//! The ticker against a real store (SQLite in a temp dir), with a fake clock: ticks from
//! registration, no tick skipped while watching, catch-up after a leader change, one run per
//! tick with two tickers, retries after target and store failures, and stopping.

mod flaky;

use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tandem_dsl::WorkflowSpec;

use super::{Clock, ScheduleError, ScheduleTarget, TickerConfig, TickerHandle, spawn};
use crate::checkpoint::{Event, RunId, UnixMillis, now_millis};
use crate::runner::current_owner;
use crate::store::sqlite::SqliteStore;
use crate::store::{CheckpointStore, CreateOutcome, RunFilter, StoreError, StoredWorkflow};
use flaky::FlakyStore;

const MINUTE: i64 = 60_000;

/// A clock the test sets.
struct ManualClock(AtomicI64);

impl ManualClock {
    fn set(&self, now: UnixMillis) {
        self.0.store(now, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixMillis {
        self.0.load(Ordering::SeqCst)
    }
}

/// A clock `offset` ms ahead of the wall clock.
struct OffsetClock(i64);

impl Clock for OffsetClock {
    fn now(&self) -> UnixMillis {
        now_millis() + self.0
    }
}

/// What one call of [`StoreTarget::fire`] got.
#[derive(Debug, Clone, PartialEq)]
struct Fired {
    workflow: String,
    tick: UnixMillis,
    /// `Some(true)`: created; `Some(false)`: existed; `None`: failed.
    created: Option<bool>,
}

/// Starts runs like the region does, without driving them: `create_scheduled_run` with the
/// params' defaults. Its first `fail` calls (for workflow `fail_only`, when set) fail with
/// `failure`.
struct StoreTarget {
    store: Arc<dyn CheckpointStore>,
    calls: Mutex<Vec<Fired>>,
    fail: AtomicU32,
    fail_only: Option<String>,
    failure: ScheduleError,
}

impl StoreTarget {
    fn new(store: Arc<dyn CheckpointStore>) -> Arc<StoreTarget> {
        Self::failing(store, 0, ScheduleError::Unavailable("unused".into()))
    }

    fn failing(
        store: Arc<dyn CheckpointStore>,
        fail: u32,
        failure: ScheduleError,
    ) -> Arc<StoreTarget> {
        Arc::new(StoreTarget {
            store,
            calls: Mutex::new(Vec::new()),
            fail: AtomicU32::new(fail),
            fail_only: None,
            failure,
        })
    }

    /// Fails every call for `workflow` with `failure`.
    fn failing_for(
        store: Arc<dyn CheckpointStore>,
        workflow: &str,
        failure: ScheduleError,
    ) -> Arc<StoreTarget> {
        Arc::new(StoreTarget {
            store,
            calls: Mutex::new(Vec::new()),
            fail: AtomicU32::new(u32::MAX),
            fail_only: Some(workflow.to_string()),
            failure,
        })
    }

    fn calls(&self) -> Vec<Fired> {
        self.calls.lock().unwrap().clone()
    }

    /// The ticks this target created runs for, in call order.
    fn created(&self) -> Vec<UnixMillis> {
        self.calls()
            .iter()
            .filter(|call| call.created == Some(true))
            .map(|call| call.tick)
            .collect()
    }
}

#[async_trait]
impl ScheduleTarget for StoreTarget {
    async fn fire(
        &self,
        workflow: &StoredWorkflow,
        spec: Arc<WorkflowSpec>,
        tick: UnixMillis,
    ) -> Result<CreateOutcome, ScheduleError> {
        let record = |created| {
            self.calls.lock().unwrap().push(Fired {
                workflow: workflow.name.clone(),
                tick,
                created,
            });
        };
        let concerned = self
            .fail_only
            .as_ref()
            .is_none_or(|only| *only == workflow.name);
        let failing = concerned
            && self
                .fail
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                    left.checked_sub(1)
                })
                .is_ok();
        if failing {
            record(None);
            return Err(self.failure.clone());
        }
        let params = spec
            .resolve_params(&[])
            .map_err(|error| ScheduleError::Invalid(error.to_string()))?;
        let created = Event::RunCreated {
            workflow: spec.name.clone(),
            version: spec.version.clone(),
            source_path: workflow.file_name.clone(),
            source: workflow.source.clone(),
            params,
            at: tick,
        };
        let outcome = self
            .store
            .create_scheduled_run(
                &workflow.name,
                tick,
                RunId::new(),
                &current_owner(),
                created,
            )
            .await;
        record(match &outcome {
            Ok(CreateOutcome::Created(_)) => Some(true),
            Ok(CreateOutcome::Existing(_)) => Some(false),
            Err(_) => None,
        });
        Ok(outcome?)
    }
}

/// A temp dir with a SQLite store.
struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
    clock: Arc<ManualClock>,
}

impl Fixture {
    fn new(now: UnixMillis) -> Fixture {
        let dir = tempfile::tempdir().expect("a temp dir");
        let store = SqliteStore::open(&dir.path().join("tandem.db")).expect("a store");
        Fixture {
            _dir: dir,
            store: Arc::new(store),
            clock: Arc::new(ManualClock(AtomicI64::new(now))),
        }
    }

    fn config(&self) -> TickerConfig {
        TickerConfig {
            clock: self.clock.clone(),
            retry_initial: Duration::from_millis(10),
            retry_max: Duration::from_millis(50),
            ..TickerConfig::default()
        }
    }

    /// Registers `text` (a workflow named `name`) at `registered_at`.
    async fn register(&self, text: &str, registered_at: UnixMillis) -> StoredWorkflow {
        let spec = tandem_dsl::compile("w.yaml", text).unwrap_or_else(|errors| panic!("{errors}"));
        let workflow = StoredWorkflow {
            name: spec.name.clone(),
            version: spec.version.clone(),
            source: text.to_string(),
            file_name: format!("{}.yaml", spec.name),
            registered_at,
        };
        self.store
            .put_workflow(&workflow)
            .await
            .expect("registered");
        workflow
    }

    /// The ticks of `workflow` that have a run, from the store.
    async fn runs(&self, workflow: &str) -> usize {
        let filter = RunFilter {
            workflow: Some(workflow.to_string()),
            ..RunFilter::default()
        };
        self.store.list_runs(&filter).await.expect("runs").len()
    }
}

/// Ms since the Unix epoch of an RFC 3339 time.
fn at(text: &str) -> UnixMillis {
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|error| panic!("{text}: {error}"))
        .timestamp_millis()
}

fn workflow(name: &str, schedule: &str) -> String {
    format!(
        "name: {name}\nparams: {{ day: today }}\nschedule: {schedule}\n\
         tasks: {{ t: {{ run: 'echo ${{{{ params.day }}}}' }} }}\n"
    )
}

/// Waits until the ticker has completed a look at the workflows that started after this
/// call (so it saw everything set before it).
async fn settle(ticker: &TickerHandle) {
    let mut status = ticker.status();
    let before = status.borrow().passes;
    for round in 1..=2 {
        ticker.notify_registered();
        tokio::time::timeout(
            Duration::from_secs(10),
            status.wait_for(|status| status.passes >= before + round),
        )
        .await
        .expect("the ticker looks at the workflows within 10 s")
        .expect("the ticker is running");
    }
}

/// Waits (up to 10 s) until `condition` holds.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn fires_each_tick_from_registration_on_and_skips_none_while_watching() {
    let registered = at("2024-05-01T10:00:30Z");
    let fixture = Fixture::new(registered + 10_000);
    fixture
        .register(
            &workflow("every-minute", "{ cron: '* * * * *' }"),
            registered,
        )
        .await;
    let target = StoreTarget::new(fixture.store.clone());
    let ticker = spawn(fixture.store.clone(), target.clone(), fixture.config());

    settle(&ticker).await;
    assert_eq!(target.calls(), []);
    let status = ticker.status().borrow().clone();
    assert_eq!(status.next_tick, Some(at("2024-05-01T10:01:00Z")));
    assert_eq!(status.scheduled, 1);
    assert_eq!(status.last_error, None);

    fixture.clock.set(at("2024-05-01T10:01:00.004Z"));
    settle(&ticker).await;
    assert_eq!(target.created(), [at("2024-05-01T10:01:00Z")]);

    // Three minutes late (a slow store, a paused process): with `catchup: latest` still
    // every tick since the ticker started is fired, oldest first.
    fixture.clock.set(at("2024-05-01T10:04:20Z"));
    settle(&ticker).await;
    assert_eq!(
        target.created(),
        [
            at("2024-05-01T10:01:00Z"),
            at("2024-05-01T10:02:00Z"),
            at("2024-05-01T10:03:00Z"),
            at("2024-05-01T10:04:00Z")
        ]
    );
    assert_eq!(target.calls().len(), 4, "no tick fired twice");
    assert_eq!(fixture.runs("every-minute").await, 4);
    assert_eq!(
        fixture
            .store
            .last_schedule_tick("every-minute")
            .await
            .unwrap(),
        Some(at("2024-05-01T10:04:00Z"))
    );
    assert_eq!(
        ticker.status().borrow().next_tick,
        Some(at("2024-05-01T10:05:00Z"))
    );
}

#[tokio::test]
async fn a_new_ticker_catches_up_by_the_workflows_policy() {
    let registered = at("2024-05-01T09:59:00Z");
    let fixture = Fixture::new(at("2024-05-01T10:00:10Z"));
    fixture
        .register(&workflow("latest", "{ cron: '*/10 * * * *' }"), registered)
        .await;
    fixture
        .register(
            &workflow("all", "{ cron: '*/10 * * * *', catchup: all }"),
            registered,
        )
        .await;
    fixture
        .register(
            &workflow(
                "windowed",
                "{ cron: '*/10 * * * *', catchup: all, catchup_window: 25m }",
            ),
            registered,
        )
        .await;
    let target = StoreTarget::new(fixture.store.clone());
    let first = spawn(fixture.store.clone(), target.clone(), fixture.config());
    settle(&first).await;
    // The 10:00 tick, missed by a few seconds before the ticker started, is fired for all.
    assert_eq!(target.created().len(), 3, "{:?}", target.calls());
    first.stop().await;

    // No leader from 10:00:10 to 11:05: the next ticker fires per policy.
    fixture.clock.set(at("2024-05-01T11:05:00Z"));
    let target = StoreTarget::new(fixture.store.clone());
    let second = spawn(fixture.store.clone(), target.clone(), fixture.config());
    settle(&second).await;
    let ticks = |name: &str| -> Vec<UnixMillis> {
        target
            .calls()
            .iter()
            .filter(|call| call.workflow == name && call.created == Some(true))
            .map(|call| call.tick)
            .collect()
    };
    assert_eq!(ticks("latest"), [at("2024-05-01T11:00:00Z")]);
    let all: Vec<UnixMillis> = (1..=6)
        .map(|i| at("2024-05-01T10:00:00Z") + i * 10 * MINUTE)
        .collect();
    assert_eq!(ticks("all"), all);
    assert_eq!(
        ticks("windowed"),
        [
            at("2024-05-01T10:40:00Z"),
            at("2024-05-01T10:50:00Z"),
            at("2024-05-01T11:00:00Z")
        ]
    );
    assert_eq!(fixture.runs("latest").await, 2);
    assert_eq!(fixture.runs("all").await, 7);
    assert_eq!(fixture.runs("windowed").await, 4);
}

#[tokio::test]
async fn two_tickers_on_one_store_start_each_tick_once() {
    let registered = at("2024-05-01T10:00:30Z");
    let fixture = Fixture::new(registered + 1_000);
    fixture
        .register(
            &workflow("shared", "{ cron: '* * * * *', catchup: all }"),
            registered,
        )
        .await;
    let target_a = StoreTarget::new(fixture.store.clone());
    let target_b = StoreTarget::new(fixture.store.clone());
    let a = spawn(fixture.store.clone(), target_a.clone(), fixture.config());
    let b = spawn(fixture.store.clone(), target_b.clone(), fixture.config());
    for minute in 1..=5 {
        fixture
            .clock
            .set(at("2024-05-01T10:00:00Z") + minute * MINUTE + 50);
        a.notify_registered();
        b.notify_registered();
        settle(&a).await;
        settle(&b).await;
    }
    let mut created = target_a.created();
    created.extend(target_b.created());
    created.sort_unstable();
    let expected: Vec<UnixMillis> = (1..=5)
        .map(|m| at("2024-05-01T10:00:00Z") + m * MINUTE)
        .collect();
    assert_eq!(created, expected, "each tick created once, by one of them");
    assert_eq!(fixture.runs("shared").await, 5);
}

#[tokio::test]
async fn wakes_up_by_itself_at_the_next_tick() {
    // A clock 400 ms before a whole minute, moving with the wall clock.
    let wall = now_millis();
    let minute_start = wall - wall.rem_euclid(MINUTE) + 10 * MINUTE;
    let clock = Arc::new(OffsetClock(minute_start - 400 - wall));
    let fixture = Fixture::new(0);
    fixture
        .register(
            &workflow("soon", "{ cron: '* * * * *' }"),
            clock.now() - 1_000,
        )
        .await;
    let target = StoreTarget::new(fixture.store.clone());
    let config = TickerConfig {
        clock: clock.clone(),
        ..fixture.config()
    };
    let ticker = spawn(fixture.store.clone(), target.clone(), config);
    eventually("the tick is fired without a notification", || {
        target.created().len() == 1
    })
    .await;
    assert_eq!(target.created(), [minute_start]);
    assert!(clock.now() >= minute_start, "not fired early");
    drop(ticker);
}

#[tokio::test]
async fn retries_a_tick_the_target_could_not_start() {
    let registered = at("2024-05-01T10:00:30Z");
    let fixture = Fixture::new(at("2024-05-01T10:01:00.010Z"));
    fixture
        .register(&workflow("flaky", "{ cron: '* * * * *' }"), registered)
        .await;
    let failure = ScheduleError::Store(StoreError::Backend {
        location: "test".into(),
        detail: "database is locked".into(),
    });
    let target = StoreTarget::failing(fixture.store.clone(), 3, failure);
    let ticker = spawn(fixture.store.clone(), target.clone(), fixture.config());
    // No notification: the backoff (10 ms, 20 ms, 40 ms) brings the retries.
    eventually("the tick is started after 3 failures", || {
        target.created().len() == 1
    })
    .await;
    let calls = target.calls();
    assert_eq!(
        calls.iter().map(|call| call.created).collect::<Vec<_>>(),
        [None, None, None, Some(true)]
    );
    assert!(
        calls
            .iter()
            .all(|call| call.tick == at("2024-05-01T10:01:00Z"))
    );
    settle(&ticker).await;
    assert_eq!(ticker.status().borrow().last_error, None);
    assert_eq!(fixture.runs("flaky").await, 1);
}

#[tokio::test]
async fn a_failing_workflow_does_not_hold_up_the_others() {
    let registered = at("2024-05-01T10:00:30Z");
    let fixture = Fixture::new(at("2024-05-01T10:01:00.010Z"));
    for name in ["a-first", "b-second"] {
        fixture
            .register(
                &workflow(name, "{ cron: '* * * * *', catchup: all }"),
                registered,
            )
            .await;
    }
    let failure = ScheduleError::Unavailable("not leading".into());
    let target = StoreTarget::failing_for(fixture.store.clone(), "a-first", failure);
    let ticker = spawn(fixture.store.clone(), target.clone(), fixture.config());
    fixture.clock.set(at("2024-05-01T10:03:00.010Z"));
    settle(&ticker).await;
    let error = ticker
        .status()
        .borrow()
        .last_error
        .clone()
        .expect("an error");
    assert!(
        error.contains("workflow `a-first`, tick 2024-05-01T10:01:00Z")
            && error.contains("not leading"),
        "{error}"
    );
    let calls = target.calls();
    // `a-first` stops at its first tick each time (no later tick overtakes it); `b-second`
    // gets all of its ticks.
    assert!(
        calls
            .iter()
            .filter(|call| call.workflow == "a-first")
            .all(|call| call.tick == at("2024-05-01T10:01:00Z") && call.created.is_none()),
        "{calls:?}"
    );
    assert_eq!(fixture.runs("a-first").await, 0);
    assert_eq!(fixture.runs("b-second").await, 3);
}

#[tokio::test]
async fn an_invalid_version_is_left_alone_until_another_is_registered() {
    let registered = at("2024-05-01T10:00:30Z");
    let fixture = Fixture::new(at("2024-05-01T10:01:00.010Z"));
    fixture
        .register(&workflow("broken", "{ cron: '* * * * *' }"), registered)
        .await;
    let target = StoreTarget::failing(
        fixture.store.clone(),
        1,
        ScheduleError::Invalid("params cannot be resolved".into()),
    );
    let ticker = spawn(fixture.store.clone(), target.clone(), fixture.config());
    settle(&ticker).await;
    fixture.clock.set(at("2024-05-01T10:03:00.010Z"));
    settle(&ticker).await;
    assert_eq!(target.calls().len(), 1, "{:?}", target.calls());
    assert_eq!(ticker.status().borrow().scheduled, 0);

    // A new version is scheduled again, from its own registration on.
    fixture
        .register(
            &workflow("broken", "{ cron: '* * * * *', timezone: UTC }"),
            at("2024-05-01T10:03:00.020Z"),
        )
        .await;
    fixture.clock.set(at("2024-05-01T10:04:00.010Z"));
    settle(&ticker).await;
    assert_eq!(target.created(), [at("2024-05-01T10:04:00Z")]);
}

#[tokio::test]
async fn a_new_version_does_not_fire_ticks_before_its_registration() {
    let fixture = Fixture::new(at("2024-05-01T10:00:10Z"));
    fixture
        .register(
            &workflow("changed", "{ cron: '0 * * * *', catchup: all }"),
            at("2024-05-01T09:30:00Z"),
        )
        .await;
    let target = StoreTarget::new(fixture.store.clone());
    let ticker = spawn(fixture.store.clone(), target.clone(), fixture.config());
    settle(&ticker).await;
    assert_eq!(target.created(), [at("2024-05-01T10:00:00Z")]);
    // Registered at 10:40 with ticks every 15 minutes: 10:15 and 10:30 were not its ticks.
    fixture
        .register(
            &workflow("changed", "{ cron: '*/15 * * * *', catchup: all }"),
            at("2024-05-01T10:40:00Z"),
        )
        .await;
    fixture.clock.set(at("2024-05-01T10:45:01Z"));
    settle(&ticker).await;
    assert_eq!(
        target.created(),
        [at("2024-05-01T10:00:00Z"), at("2024-05-01T10:45:00Z")]
    );
}

#[tokio::test]
async fn ignores_workflows_without_a_schedule_and_stored_text_that_does_not_compile() {
    let fixture = Fixture::new(at("2024-05-01T10:05:00Z"));
    fixture
        .register(
            "name: plain\ntasks: { t: {} }\n",
            at("2024-05-01T09:00:00Z"),
        )
        .await;
    // Text that a newer, stricter build would refuse: stored directly.
    let bad = StoredWorkflow {
        name: "stale".into(),
        version: "0".repeat(64),
        source: "name: stale\nschedule: { cron: '* * * * * *' }\ntasks: { t: {} }\n".into(),
        file_name: "stale.yaml".into(),
        registered_at: at("2024-05-01T09:00:00Z"),
    };
    fixture.store.put_workflow(&bad).await.unwrap();
    fixture
        .register(
            &workflow("good", "{ cron: '0 10 * * *' }"),
            at("2024-05-01T09:00:00Z"),
        )
        .await;
    let target = StoreTarget::new(fixture.store.clone());
    let ticker = spawn(fixture.store.clone(), target.clone(), fixture.config());
    settle(&ticker).await;
    let status = ticker.status().borrow().clone();
    assert_eq!(status.scheduled, 1);
    assert_eq!(status.last_error, None);
    assert_eq!(target.created(), [at("2024-05-01T10:00:00Z")]);
}

#[tokio::test]
async fn survives_store_errors_and_fires_once_the_store_is_back() {
    let registered = at("2024-05-01T10:00:30Z");
    let fixture = Fixture::new(at("2024-05-01T10:01:00.010Z"));
    fixture
        .register(&workflow("patient", "{ cron: '* * * * *' }"), registered)
        .await;
    let flaky = Arc::new(FlakyStore::new(fixture.store.clone(), 4));
    let target = StoreTarget::new(fixture.store.clone());
    let ticker = spawn(flaky.clone(), target.clone(), fixture.config());
    eventually("the tick is fired after the store comes back", || {
        target.created().len() == 1
    })
    .await;
    assert_eq!(flaky.failures(), 4);
    assert_eq!(target.created(), [at("2024-05-01T10:01:00Z")]);
    settle(&ticker).await;
    assert_eq!(ticker.status().borrow().last_error, None);
}

#[tokio::test]
async fn stops_when_its_handle_is_dropped_or_stopped() {
    let registered = at("2024-05-01T10:00:30Z");
    let fixture = Fixture::new(registered + 1_000);
    fixture
        .register(&workflow("stopped", "{ cron: '* * * * *' }"), registered)
        .await;
    let target = StoreTarget::new(fixture.store.clone());
    let ticker = spawn(fixture.store.clone(), target.clone(), fixture.config());
    settle(&ticker).await;
    let mut status = ticker.status();
    drop(ticker);
    tokio::time::timeout(Duration::from_secs(10), async {
        while status.changed().await.is_ok() {}
    })
    .await
    .expect("the ticker's task ends");
    fixture.clock.set(at("2024-05-01T10:05:00Z"));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(target.calls(), []);

    let ticker = spawn(fixture.store.clone(), target.clone(), fixture.config());
    settle(&ticker).await;
    let mut status = ticker.status();
    ticker.stop().await;
    tokio::time::timeout(Duration::from_secs(1), async {
        while status.changed().await.is_ok() {}
    })
    .await
    .expect("stopped");
}
