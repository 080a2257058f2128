//! The application: journal, read models, actors and secrets wired together, and the one way
//! every state change is committed (append, await durability, await the read models).

use std::path::Path;
use std::sync::Arc;

use ractor::ActorRef;

use crate::actors::rule::{ActionLauncher, NoLauncher, RuleActor, RuleMsg};
use crate::actors::{ChildSpec, Projector, Supervisor, SupervisorMsg};
use crate::config::Config;
use crate::domain::Event;
use crate::http::ApiError;
use crate::http::ingress::IngressState;
use crate::journal::{Appended, ExpectedRevision, Journal, JournalOptions, Metadata, Position};
use crate::metrics::Metrics;
use crate::projections::{
    AuditView, DedupView, EventLogsView, OrganizationsView, Projection, RulesView, TokensView, View,
};
use crate::secrets::{self, MasterKey};
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

/// Declares the read models: one field per view, each run by its own projector.
macro_rules! views {
    ($($field:ident: $view:ty => $doc:literal),* $(,)?) => {
        /// Every read model.
        #[derive(Clone, Default)]
        pub struct Views {
            $(
                #[doc = $doc]
                pub $field: Projection<$view>,
            )*
        }

        impl Views {
            /// Waits until every read model reflects `position`.
            pub async fn wait_for(&self, position: Position) {
                $(self.$field.wait_for(position).await;)*
            }

            /// Each read model's checkpoint, by name.
            pub fn checkpoints(&self) -> Vec<(&'static str, Position)> {
                vec![$((<$view as View>::NAME, self.$field.checkpoint()),)*]
            }

            async fn start_projectors(&self, app: &App) -> Result<(), StartError> {
                $(app.start_projector(self.$field.clone()).await?;)*
                Ok(())
            }
        }
    };
}

views! {
    organizations: OrganizationsView => "Organizations.",
    tokens: TokensView => "API tokens.",
    audit: AuditView => "The audit trail.",
    rules: RulesView => "Event rules, routing by webhook path.",
    event_logs: EventLogsView => "Inbound event logs.",
    dedup: DedupView => "The ingress's delivery-id index.",
}

/// The running application, shared by every request handler and actor.
pub struct App {
    /// Validated configuration.
    pub config: Config,
    /// The event journal.
    pub journal: Journal,
    /// Seals stored secrets.
    pub master_key: MasterKey,
    /// Prometheus collectors.
    pub metrics: Metrics,
    /// Read models.
    pub views: Views,
    /// SNS signing certificates, for CloudWatch rules.
    pub sns_certs: CertCache,
    /// Fires rule actions.
    pub launcher: Arc<dyn ActionLauncher>,
    /// In-flight webhook bookkeeping.
    pub ingress: IngressState,
    rule_actors: Arc<std::sync::Mutex<std::collections::HashMap<u64, ActorRef<RuleMsg>>>>,
    /// The root supervisor.
    pub supervisor: ActorRef<SupervisorMsg>,
    /// Serialises admin commands, so checks against read models (unique names) hold at append.
    pub commands: tokio::sync::Mutex<()>,
    admin_digest: [u8; 32],
    /// Journal head when the server started: ready once every view has caught up to it.
    pub start_position: Position,
}

impl App {
    /// Opens the data directory and starts the journal, the supervisor and the projectors.
    pub async fn start(config: Config) -> Result<Arc<App>, StartError> {
        let data_dir = config.data_dir.clone();
        let dir_error = |source| StartError::DataDir {
            path: data_dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(&data_dir).map_err(dir_error)?;
        let master_key = MasterKey::load(config.master_key.as_deref(), &data_dir)?;
        let admin_digest =
            bootstrap_admin_token(config.admin_token.as_deref(), &data_dir).map_err(dir_error)?;
        let metrics = Metrics::new();
        let options = JournalOptions {
            sync: config.journal.sync,
            segment_bytes: config.journal.segment_mib * 1024 * 1024,
            max_batch_events: config.journal.max_batch_events,
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
        let supervisor_actor = Supervisor {
            restarts: metrics.actor_restarts.clone(),
        };
        let (supervisor, _) = ractor::Actor::spawn(None, supervisor_actor, ())
            .await
            .map_err(|e| StartError::Actors(e.to_string()))?;
        let app = Arc::new(App {
            config,
            journal,
            master_key,
            metrics,
            views: Views::default(),
            sns_certs: CertCache::over_https().map_err(|e| StartError::Actors(e.to_string()))?,
            launcher: Arc::new(NoLauncher),
            ingress: IngressState::default(),
            rule_actors: Arc::default(),
            supervisor,
            commands: tokio::sync::Mutex::new(()),
            admin_digest,
            start_position,
        });
        app.views.start_projectors(&app).await?;
        // Rule actors start from the rules read model, so it must have caught up first.
        if start_position > 0 {
            app.views.rules.wait_for(start_position - 1).await;
        }
        let rules: Vec<u64> = app.views.rules.read().all().map(|r| r.id).collect();
        for id in rules {
            app.start_rule(id).await.map_err(StartError::Actors)?;
        }
        Ok(app)
    }

    async fn start_projector<V: View>(&self, projection: Projection<V>) -> Result<(), StartError> {
        let journal = self.journal.clone();
        let spec = ChildSpec {
            key: format!("projector:{}", V::NAME),
            kind: "projector",
            start: Arc::new(move |supervisor| {
                let actor = Projector {
                    journal: journal.clone(),
                    projection: projection.clone(),
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

    /// Starts the actor of rule `id` (no-op if it runs).
    pub async fn start_rule(&self, id: u64) -> Result<(), String> {
        let journal = self.journal.clone();
        let launcher = self.launcher.clone();
        let metrics = self.metrics.inbound.clone();
        let running = self.rule_actors.clone();
        let spec = ChildSpec {
            key: format!("rule:{id}"),
            kind: "rule",
            start: Arc::new(move |supervisor| {
                let actor = RuleActor {
                    id,
                    journal: journal.clone(),
                    launcher: launcher.clone(),
                    metrics: metrics.clone(),
                };
                let running = running.clone();
                Box::pin(async move {
                    let (actor, _) = ractor::Actor::spawn_linked(None, actor, (), supervisor)
                        .await
                        .map_err(|e| e.to_string())?;
                    running
                        .lock()
                        .expect("rule actor map poisoned")
                        .insert(id, actor.clone());
                    Ok(actor.get_cell())
                })
            }),
        };
        self.start_child(spec).await
    }

    /// Stops the actor of rule `id` for good (the rule was deleted).
    pub fn stop_rule(&self, id: u64) {
        self.rule_actors
            .lock()
            .expect("rule actor map poisoned")
            .remove(&id);
        let _ = self
            .supervisor
            .cast(SupervisorMsg::Stop(format!("rule:{id}")));
    }

    /// The latest actor of rule `id` (it may be restarting).
    pub fn rule_actor(&self, id: u64) -> Option<ActorRef<RuleMsg>> {
        self.rule_actors
            .lock()
            .expect("rule actor map poisoned")
            .get(&id)
            .cloned()
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
    ) -> Result<Appended, ApiError> {
        let encoded = events.iter().map(|e| e.encode(metadata.clone())).collect();
        let appended = self.journal.append(stream, expected, encoded).await?;
        self.views.wait_for(appended.last_position).await;
        Ok(appended)
    }

    /// Stops the actors (projectors snapshot on the way out) and closes the journal.
    pub async fn shutdown(&self) {
        let _ = ractor::call!(self.supervisor, SupervisorMsg::Shutdown);
        self.supervisor.stop(Some("shutdown".into()));
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
