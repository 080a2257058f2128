//! The application: journal, read models, actors and secrets wired together, and the one way
//! every state change is committed (append, await durability, await the read models).

use std::path::Path;
use std::sync::Arc;

use ractor::ActorRef;

use crate::actors::manager::Registry;
use crate::actors::outbound::{Outbound, OutboundOptions};
use crate::actors::rule::RuleMsg;
use crate::actors::rule_store::RuleStore;
use crate::actors::runner::{Runner, RunnerSettings};
use crate::actors::{ChildSpec, Parking, Projector, StoredProjector, Supervisor, SupervisorMsg};
use crate::conditions::EvalPool;
use crate::config::Config;
use crate::delivery::client::{ClientConfig, DeliveryClient};
use crate::domain::Event;
use crate::intake::Intake;
use crate::jobs::LiveOutput;
use crate::jobs::launch::Launcher;
use crate::jobs::notify::Notifier;
use crate::journal::{
    AppendError, Appended, ExpectedRevision, Journal, JournalOptions, Metadata, Position,
};
use crate::metrics::Metrics;
use crate::projections::{
    AuditView, DeliveriesView, EventLogsView, JobRunsView, JobsView, NotificationsView,
    OrganizationsView, OutboundView, Projection, PublicationsView, RulesView, Stored, StoredView,
    TokensView, View, WorkflowRunsView, WorkflowsView, open_stored,
};
use crate::secrets::{self, DataKeys, MasterKey};
use crate::store::Store;
use crate::verify::sns::CertCache;

/// Errors that stop the server from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory is unusable.
    #[error("data dir {path}: {source}")]
    DataDir {
        /// The directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The journal did not open.
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
    /// The master key did not load.
    #[error(transparent)]
    Secrets(#[from] crate::secrets::SecretError),
    /// The actor system did not start.
    #[error("actor system: {0}")]
    Actors(String),
}

/// Declares the read models: one field per view, each run by its own projector. `memory` views
/// are small (configuration) and snapshotted; `stored` views keep their rows in the store.
macro_rules! views {
    (
        memory { $($field:ident: $view:ty => $doc:literal),* $(,)? }
        stored { $($sfield:ident: $sview:ty => $sdoc:literal),* $(,)? }
    ) => {
        /// Every read model.
        #[derive(Clone)]
        pub struct Views {
            $(
                #[doc = $doc]
                pub $field: Projection<$view>,
            )*
            $(
                #[doc = $sdoc]
                pub $sfield: Stored<$sview>,
            )*
        }

        impl Views {
            /// Opens the stored views in `store` (the memory ones start empty).
            pub fn open(store: &Store) -> Result<Self, crate::store::StoreError> {
                Ok(Self {
                    $($field: Projection::default(),)*
                    $($sfield: Stored::new(open_stored::<$sview>(store)?)?,)*
                })
            }

            /// Waits until every read model reflects `position`.
            pub async fn wait_for(&self, position: Position) {
                $(self.$field.wait_for(position).await;)*
                $(self.$sfield.wait_for(position).await;)*
            }

            /// Waits until every read model that follows `stream` reflects `position`: a
            /// write to it changes no other, so a busy view of other streams (the delivery
            /// history under load) does not hold the writer up.
            pub async fn wait_for_stream(&self, stream: &str, position: Position) {
                $(if <$view as View>::filter().admits(stream) {
                    self.$field.wait_for(position).await;
                })*
                $(if <$sview as StoredView>::filter().admits(stream) {
                    self.$sfield.wait_for(position).await;
                })*
            }

            /// Each read model's checkpoint, by name.
            pub fn checkpoints(&self) -> Vec<(&'static str, Position)> {
                vec![
                    $((<$view as View>::NAME, self.$field.checkpoint()),)*
                    $((<$sview as StoredView>::NAME, self.$sfield.checkpoint()),)*
                ]
            }

            async fn start_projectors(&self, app: &App) -> Result<(), StartError> {
                $(app.start_projector(self.$field.clone()).await?;)*
                $(app.start_stored_projector(self.$sfield.clone()).await?;)*
                Ok(())
            }
        }
    };
}

views! {
    memory {
        organizations: OrganizationsView => "Organizations.",
        tokens: TokensView => "API tokens.",
        rules: RulesView => "Event rules, routing by webhook path.",
        jobs: JobsView => "Job templates and jobs.",
        workflows: WorkflowsView => "Workflow job templates and workflow jobs.",
        notifications: NotificationsView => "Notification templates.",
        outbound: OutboundView => "Outbound endpoints (counters, pending deliveries), custom event types.",
    }
    stored {
        event_logs: EventLogsView => "Inbound event logs.",
        audit: AuditView => "The audit trail.",
        deliveries: DeliveriesView => "Outbound deliveries and their attempts.",
        publications: PublicationsView => "Idempotency keys of published events.",
        job_runs: JobRunsView => "Jobs (runs of job templates).",
        workflow_runs: WorkflowRunsView => "Workflow jobs.",
    }
}

/// The running application, shared by every request handler and actor.
pub struct App {
    /// Validated configuration.
    pub config: Config,
    /// The event journal.
    pub journal: Journal,
    /// Seals stored secrets.
    pub master_key: Arc<MasterKey>,
    /// Seals each organization's payloads; destroying them is erasure.
    pub data_keys: Arc<DataKeys>,
    /// Prometheus collectors.
    pub metrics: Metrics,
    /// Read models.
    pub views: Views,
    /// Where the stored read models keep their rows.
    pub store: Store,
    /// Where rule actors keep their state and seen keys.
    pub rule_store: RuleStore,
    /// SNS signing certificates, for CloudWatch rules.
    pub sns_certs: CertCache,
    /// Launches jobs, workflows and notifications (rule actions included).
    pub launcher: Arc<Launcher>,
    /// Live output of running jobs.
    pub live_output: LiveOutput,
    /// The outbound HTTP client (SSRF-guarded).
    pub delivery: DeliveryClient,
    /// In-flight webhook bookkeeping.
    pub intake: Intake,
    /// Threads for expensive expression evaluations, shared fairly between organizations.
    pub eval_pool: EvalPool,
    /// Sets aside journal records a consumer cannot process.
    pub parking: Parking,
    /// The rule actors, by rule id.
    pub rules: Registry<RuleMsg>,
    /// The root supervisor.
    pub supervisor: ActorRef<SupervisorMsg>,
    /// Serialises admin commands, so checks against read models (unique names) hold at append.
    pub commands: tokio::sync::Mutex<()>,
    /// Outbound delivery services (transport, clock, endpoint actors, dispatcher progress).
    pub outbound: Outbound,
    admin_digest: [u8; 32],
    /// Journal head when the server started: ready once every view has caught up to it.
    pub start_position: Position,
    retention_sweeper: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl App {
    /// Opens the data directory and starts the journal, the supervisor and the projectors.
    pub async fn start(config: Config) -> Result<Arc<App>, StartError> {
        Self::start_with(config, OutboundOptions::default()).await
    }

    /// [`App::start`] with substitutes for the outbound transport and jitter (tests).
    pub async fn start_with(
        config: Config,
        outbound: OutboundOptions,
    ) -> Result<Arc<App>, StartError> {
        let data_dir = config.data_dir.clone();
        let dir_error = |source| StartError::DataDir {
            path: data_dir.display().to_string(),
            source,
        };
        crate::data_dir::prepare(&data_dir).map_err(dir_error)?;
        let master_key = Arc::new(MasterKey::load(config.master_key.as_deref(), &data_dir)?);
        let data_keys = Arc::new(DataKeys::load(&data_dir.join("keys"), master_key.clone())?);
        let admin_digest =
            bootstrap_admin_token(config.admin_token.as_deref(), &data_dir).map_err(dir_error)?;
        let metrics = Metrics::new();
        let options = JournalOptions {
            sync: config.journal.sync,
            segment_bytes: config.journal.segment_mib * 1024 * 1024,
            max_batch_events: config.journal.max_batch_events,
            index_cache_bytes: config.journal.index_cache_mib * 1024 * 1024,
            metrics: metrics.journal.clone(),
            ..JournalOptions::default()
        };
        let journal_dir = data_dir.join("journal");
        let journal = tokio::task::spawn_blocking(move || Journal::open(&journal_dir, options))
            .await
            .map_err(|e| StartError::Actors(e.to_string()))??;
        if !config.journal.sync {
            tracing::warn!(
                "journal.sync = false: acknowledged events can be lost on power failure"
            );
        }
        let start_position = journal.next_position();
        let outbound = Outbound::new(config.outbound.allow_private_networks, outbound)
            .map_err(StartError::Actors)?;
        let supervisor_actor = Supervisor {
            restarts: metrics.actor_restarts.clone(),
        };
        let (supervisor, _) = ractor::Actor::spawn(None, supervisor_actor, ())
            .await
            .map_err(|e| StartError::Actors(e.to_string()))?;
        let store = Store::open(
            &data_dir.join("views"),
            config.journal.index_cache_mib * 1024 * 1024,
        )
        .map_err(|e| StartError::Actors(e.to_string()))?;
        let views = Views::open(&store).map_err(|e| StartError::Actors(e.to_string()))?;
        let rule_store = RuleStore::open(&store).map_err(|e| StartError::Actors(e.to_string()))?;
        let delivery = DeliveryClient::new(&ClientConfig {
            allow_private_networks: config.outbound.allow_private_networks,
            ..ClientConfig::default()
        })
        .map_err(|e| StartError::Actors(e.to_string()))?;
        let notifier = Notifier::new(
            journal.clone(),
            views.notifications.clone(),
            master_key.clone(),
            delivery.clone(),
            config.public_base_url(),
        );
        let launcher = Arc::new(Launcher::new(
            journal.clone(),
            views.jobs.clone(),
            views.workflows.clone(),
            notifier,
            config.jobs.allow_commands,
            master_key.clone(),
            data_keys.clone(),
        ));
        let eval_pool = EvalPool::new(config.conditions.threads()).map_err(dir_error)?;
        let parking = Parking::new(
            journal.clone(),
            metrics.parked.clone(),
            metrics.parked_now.clone(),
        );
        let app = Arc::new(App {
            config,
            journal,
            master_key,
            data_keys,
            metrics,
            views,
            store,
            rule_store,
            sns_certs: CertCache::over_https().map_err(|e| StartError::Actors(e.to_string()))?,
            launcher,
            live_output: LiveOutput::default(),
            delivery,
            intake: Intake::default(),
            eval_pool,
            parking,
            rules: Registry::default(),
            supervisor,
            commands: tokio::sync::Mutex::new(()),
            outbound,
            admin_digest,
            start_position,
            retention_sweeper: std::sync::Mutex::default(),
        });
        app.views.start_projectors(&app).await?;
        // Actors and id sequences start from the read models, so they must have caught up first.
        if start_position > 0 {
            app.views.wait_for(start_position - 1).await;
        }
        app.finish_erasures()?;
        {
            let (jobs, workflows) = (app.views.jobs.read(), app.views.workflows.read());
            app.launcher
                .ids
                .resume(jobs.max_job_id, workflows.max_job_id);
        }
        app.start_runner().await.map_err(StartError::Actors)?;
        crate::actors::rules::start(&app)
            .await
            .map_err(StartError::Actors)?;
        crate::actors::outbound::start(&app)
            .await
            .map_err(StartError::Actors)?;
        *app.retention_sweeper.lock().expect("not poisoned") = Some(crate::retention::spawn(&app));
        Ok(app)
    }

    /// Destroys the data keys of every journaled erasure (a no-op unless a crash came between
    /// journaling an erasure and destroying its keys), before any actor could open them.
    fn finish_erasures(&self) -> Result<(), StartError> {
        let erased: Vec<(u64, u32)> = self
            .views
            .organizations
            .read()
            .all()
            .filter_map(|o| o.erased.map(|e| (o.id, e.through_generation)))
            .collect();
        for (org, through) in erased {
            self.data_keys.erase_through(org, through)?;
        }
        Ok(())
    }

    async fn start_projector<V: View>(&self, projection: Projection<V>) -> Result<(), StartError> {
        let journal = self.journal.clone();
        let parking = self.parking.clone();
        let spec = ChildSpec {
            key: format!("projector:{}", V::NAME),
            kind: "projector",
            start: Arc::new(move |supervisor| {
                let actor = Projector {
                    journal: journal.clone(),
                    projection: projection.clone(),
                    parking: parking.clone(),
                };
                Box::pin(async move {
                    ractor::Actor::spawn_linked(None, actor, (), supervisor)
                        .await
                        .map(|(actor, _)| actor.get_cell())
                        .map_err(|e| e.to_string())
                })
            }),
        };
        self.start_child(spec).await.map_err(StartError::Actors)
    }

    async fn start_stored_projector<V: StoredView>(
        &self,
        projection: Stored<V>,
    ) -> Result<(), StartError> {
        let journal = self.journal.clone();
        let parking = self.parking.clone();
        let spec = ChildSpec {
            key: format!("projector:{}", V::NAME),
            kind: "projector",
            start: Arc::new(move |supervisor| {
                let actor = StoredProjector {
                    journal: journal.clone(),
                    projection: projection.clone(),
                    parking: parking.clone(),
                };
                Box::pin(async move {
                    ractor::Actor::spawn_linked(None, actor, (), supervisor)
                        .await
                        .map(|(actor, _)| actor.get_cell())
                        .map_err(|e| e.to_string())
                })
            }),
        };
        self.start_child(spec).await.map_err(StartError::Actors)
    }

    async fn start_runner(&self) -> Result<(), String> {
        let runner = Runner {
            journal: self.journal.clone(),
            launcher: self.launcher.clone(),
            master_key: self.master_key.clone(),
            settings: RunnerSettings {
                kill_grace: std::time::Duration::from_secs(self.config.jobs.kill_grace_seconds),
                controller_poll: std::time::Duration::from_millis(
                    self.config.jobs.controller_poll_millis,
                ),
                allow_private_networks: self.config.outbound.allow_private_networks,
                allow_commands: self.config.jobs.allow_commands,
                notification_retry: crate::delivery::retry::RetryPolicy {
                    initial_delay: std::time::Duration::from_millis(
                        self.config.jobs.notification_retry_initial_millis,
                    ),
                    min_delay: std::time::Duration::from_millis(
                        self.config.jobs.notification_retry_initial_millis.min(1000),
                    ),
                    ..Default::default()
                },
            },
            live_output: self.live_output.clone(),
            parking: self.parking.clone(),
        };
        let runner = Arc::new(runner);
        let spec = ChildSpec {
            key: "runner".into(),
            kind: "runner",
            start: Arc::new(move |supervisor| {
                let actor = Runner {
                    journal: runner.journal.clone(),
                    launcher: runner.launcher.clone(),
                    master_key: runner.master_key.clone(),
                    settings: runner.settings.clone(),
                    live_output: runner.live_output.clone(),
                    parking: runner.parking.clone(),
                };
                Box::pin(async move {
                    ractor::Actor::spawn_linked(None, actor, (), supervisor)
                        .await
                        .map(|(actor, _)| actor.get_cell())
                        .map_err(|e| e.to_string())
                })
            }),
        };
        self.start_child(spec).await
    }

    /// Starts a supervised child and waits until it runs.
    pub async fn start_child(&self, spec: ChildSpec) -> Result<(), String> {
        ractor::call!(self.supervisor, SupervisorMsg::Start, spec).map_err(|e| e.to_string())?
    }

    /// The digest of the bootstrap system-admin token.
    pub fn admin_token_digest(&self) -> &[u8; 32] {
        &self.admin_digest
    }

    /// Whether the journal is open and every read model has caught up with the start-up head.
    pub fn is_ready(&self) -> bool {
        self.journal.stopped().is_none()
            && self
                .views
                .checkpoints()
                .iter()
                .all(|(_, checkpoint)| *checkpoint >= self.start_position)
    }

    /// Waits (up to `timeout`) until the read models have caught up with the journal as it was
    /// at start-up, so that no request is answered from a half-rebuilt view.
    pub async fn wait_ready(&self, timeout: std::time::Duration) -> bool {
        if self.is_ready() {
            return true;
        }
        tokio::time::timeout(timeout, async {
            if self.start_position > 0 {
                self.views.wait_for(self.start_position - 1).await;
            }
        })
        .await
        .is_ok()
            && self.is_ready()
    }

    /// Appends `events` to `stream`, waits until they are durable and until the read models
    /// show them: when this returns, a 2xx is safe and a following read sees the change.
    pub async fn commit(
        &self,
        metadata: &Metadata,
        stream: String,
        expected: ExpectedRevision,
        events: Vec<Event>,
    ) -> Result<Appended, AppendError> {
        let encoded = events.iter().map(|e| e.encode(metadata.clone())).collect();
        let appended = self
            .journal
            .append(stream.clone(), expected, encoded)
            .await?;
        self.views
            .wait_for_stream(&stream, appended.last_position)
            .await;
        Ok(appended)
    }

    /// Stops the actors (projectors snapshot on the way out) and closes the journal.
    pub async fn shutdown(&self) {
        if let Some(sweeper) = self.retention_sweeper.lock().expect("not poisoned").take() {
            sweeper.abort();
        }
        let _ = ractor::call!(self.supervisor, SupervisorMsg::Shutdown);
        self.supervisor.stop(Some("shutdown".into()));
        self.eval_pool.close();
        if let Err(e) = self.store.flush() {
            tracing::warn!(error = %e, "the read-model store did not flush; it catches up from the journal");
        }
        self.journal.close().await;
    }
}

/// The bootstrap admin token's digest: from config, else `<data_dir>/admin.token`, generated
/// (mode 0600) on first start. The token itself is never logged.
fn bootstrap_admin_token(configured: Option<&str>, data_dir: &Path) -> std::io::Result<[u8; 32]> {
    if let Some(token) = configured {
        return Ok(secrets::token_digest(token));
    }
    let path = data_dir.join("admin.token");
    match std::fs::read_to_string(&path) {
        Ok(token) => Ok(secrets::token_digest(token.trim())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = secrets::generate_token();
            secrets::write_private_file(&path, format!("{token}\n").as_bytes())?;
            tracing::info!(path = %path.display(), "generated a system-admin token; read it from this file");
            Ok(secrets::token_digest(&token))
        }
        Err(e) => Err(e),
    }
}
