//! The application: journal, read models, actors and secrets wired together, and the one way
//! every state change is committed (append, await durability, await the read models).

use std::path::Path;
use std::sync::Arc;

use ractor::ActorRef;

use crate::actors::outbound::{Outbound, OutboundOptions};
use crate::actors::{ChildSpec, Projector, Supervisor, SupervisorMsg};
use crate::config::Config;
use crate::domain::Event;
use crate::http::ApiError;
use crate::journal::{Appended, ExpectedRevision, Journal, JournalOptions, Metadata, Position};
use crate::metrics::Metrics;
use crate::projections::{AuditView, OrganizationsView, OutboundView, Projection, TokensView, View};
use crate::secrets::{self, MasterKey};

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

/// Every read model.
#[derive(Clone, Default)]
pub struct Views {
    /// Organizations.
    pub organizations: Projection<OrganizationsView>,
    /// API tokens.
    pub tokens: Projection<TokensView>,
    /// The audit trail.
    pub audit: Projection<AuditView>,
    /// Outbound endpoints, deliveries, idempotency keys, custom event types.
    pub outbound: Projection<OutboundView>,
}

impl Views {
    /// Waits until every read model reflects `position`.
    pub async fn wait_for(&self, position: Position) {
        self.organizations.wait_for(position).await;
        self.tokens.wait_for(position).await;
        self.audit.wait_for(position).await;
        self.outbound.wait_for(position).await;
    }

    /// The lowest checkpoint among the read models, by name.
    pub fn checkpoints(&self) -> Vec<(&'static str, Position)> {
        vec![
            (OrganizationsView::NAME, self.organizations.checkpoint()),
            (TokensView::NAME, self.tokens.checkpoint()),
            (AuditView::NAME, self.audit.checkpoint()),
            (OutboundView::NAME, self.outbound.checkpoint()),
        ]
    }
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
    /// The root supervisor.
    pub supervisor: ActorRef<SupervisorMsg>,
    /// Serialises admin commands, so checks against read models (unique names) hold at append.
    pub commands: tokio::sync::Mutex<()>,
    /// Outbound delivery services (transport, clock, endpoint actors, dispatcher progress).
    pub outbound: Outbound,
    admin_digest: [u8; 32],
    /// Journal head when the server started: ready once every view has caught up to it.
    pub start_position: Position,
}

impl App {
    /// Opens the data directory and starts the journal, the supervisor and the projectors.
    pub async fn start(config: Config) -> Result<Arc<App>, StartError> {
        Self::start_with(config, OutboundOptions::default()).await
    }

    /// [`App::start`] with substitutes for the outbound transport and jitter (tests).
    pub async fn start_with(config: Config, outbound: OutboundOptions) -> Result<Arc<App>, StartError> {
        let data_dir = config.data_dir.clone();
        let dir_error = |source| StartError::DataDir { path: data_dir.display().to_string(), source };
        std::fs::create_dir_all(&data_dir).map_err(dir_error)?;
        let master_key = MasterKey::load(config.master_key.as_deref(), &data_dir)?;
        let admin_digest = bootstrap_admin_token(config.admin_token.as_deref(), &data_dir).map_err(dir_error)?;
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
            tracing::warn!("journal.sync = false: acknowledged events can be lost on power failure");
        }
        let start_position = journal.next_position();
        let outbound = Outbound::new(config.outbound.allow_private_networks, outbound).map_err(StartError::Actors)?;
        let supervisor_actor = Supervisor { restarts: metrics.actor_restarts.clone() };
        let (supervisor, _) = ractor::Actor::spawn(None, supervisor_actor, ())
            .await
            .map_err(|e| StartError::Actors(e.to_string()))?;
        let app = Arc::new(App {
            config,
            journal,
            master_key,
            metrics,
            views: Views::default(),
            supervisor,
            commands: tokio::sync::Mutex::new(()),
            outbound,
            admin_digest,
            start_position,
        });
        app.start_projector(app.views.organizations.clone()).await?;
        app.start_projector(app.views.tokens.clone()).await?;
        app.start_projector(app.views.audit.clone()).await?;
        app.start_projector(app.views.outbound.clone()).await?;
        crate::actors::outbound::start(&app).await.map_err(StartError::Actors)?;
        Ok(app)
    }

    async fn start_projector<V: View>(&self, projection: Projection<V>) -> Result<(), StartError> {
        let journal = self.journal.clone();
        let spec = ChildSpec {
            key: format!("projector:{}", V::NAME),
            kind: "projector",
            start: Arc::new(move |supervisor| {
                let actor = Projector { journal: journal.clone(), projection: projection.clone() };
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
            && self.views.checkpoints().iter().all(|(_, checkpoint)| *checkpoint >= self.start_position)
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
