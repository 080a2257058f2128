//! Outbound delivery wiring: the services the dispatcher, the endpoint actors and the HTTP
//! handlers share, and start-up of the dispatcher and the endpoint manager.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use ractor::{ActorCell, ActorRef};
use tokio::sync::mpsc;

use super::dispatcher::{self, DispatchProgress};
use super::endpoint::{EndpointActor, EndpointMsg};
use super::manager::{ManagedKind, Registry, spawn_linked, start_manager};
use crate::app::App;
use crate::codec::EventBody;
use crate::delivery::{AttemptOutcome, ClientConfig, DeliveryClient, OutboundRequest};
use crate::domain::endpoint::{CATEGORY, EndpointCreated, EndpointDeleted};
use crate::journal::AppendTicket;

/// Performs one delivery attempt. [`DeliveryClient`] in production; tests substitute a scripted
/// transport to drive the endpoint actors under paused time.
pub trait Transport: Send + Sync + 'static {
    /// Sends `request` once and reports how it went (never fails).
    fn send<'a>(
        &'a self,
        request: &'a OutboundRequest,
    ) -> Pin<Box<dyn Future<Output = AttemptOutcome> + Send + 'a>>;
}

impl Transport for DeliveryClient {
    fn send<'a>(
        &'a self,
        request: &'a OutboundRequest,
    ) -> Pin<Box<dyn Future<Output = AttemptOutcome> + Send + 'a>> {
        Box::pin(DeliveryClient::send(self, request))
    }
}

/// Wall-clock time in µs that advances with tokio's clock: real time in production, virtual
/// time in tests that pause tokio's clock (so retry schedules can be tested without waiting).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall: i64,
    anchor: tokio::time::Instant,
}

impl Clock {
    /// A clock anchored at the current wall time. Call inside the runtime.
    pub fn start() -> Self {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        Self {
            wall,
            anchor: tokio::time::Instant::now(),
        }
    }

    /// Now, in µs since the Unix epoch.
    pub fn now(&self) -> i64 {
        let elapsed = i64::try_from(self.anchor.elapsed().as_micros()).unwrap_or(i64::MAX);
        self.wall.saturating_add(elapsed)
    }
}

/// A uniform draw from `[0, 1)` for the retry jitter.
pub type Jitter = Arc<dyn Fn() -> f64 + Send + Sync>;

/// Substitutes for the outbound machinery's I/O and randomness (tests only; `Default` is production).
#[derive(Default, Clone)]
pub struct OutboundOptions {
    /// Sends attempts; the pooled, SSRF-guarded [`DeliveryClient`] when `None`.
    pub transport: Option<Arc<dyn Transport>>,
    /// Retry jitter; uniform random when `None`.
    pub jitter: Option<Jitter>,
}

/// Shared outbound services.
pub struct Outbound {
    /// Sends attempts.
    pub transport: Arc<dyn Transport>,
    /// The clock of retry times and signatures.
    pub clock: Clock,
    /// Retry jitter.
    pub jitter: Jitter,
    /// Endpoint actors by endpoint id.
    pub endpoints: Registry<EndpointMsg>,
    /// How far the dispatcher got, and how many endpoints recent events matched.
    pub progress: DispatchProgress,
    /// Serialises publications that share an idempotency key.
    pub publish_locks: KeyLocks,
    /// Reports refused appends to the endpoint actors that made them.
    pub tickets: TicketWatcher,
}

impl Outbound {
    /// Builds the services from the operator's settings.
    pub fn new(allow_private_networks: bool, options: OutboundOptions) -> Result<Self, String> {
        let transport: Arc<dyn Transport> = match options.transport {
            Some(t) => t,
            None => Arc::new(
                DeliveryClient::new(&ClientConfig {
                    allow_private_networks,
                    ..ClientConfig::default()
                })
                .map_err(|e| e.to_string())?,
            ),
        };
        let jitter = options
            .jitter
            .unwrap_or_else(|| Arc::new(rand::random::<f64>));
        Ok(Self {
            transport,
            clock: Clock::start(),
            jitter,
            endpoints: Registry::default(),
            progress: DispatchProgress::default(),
            publish_locks: KeyLocks::default(),
            tickets: TicketWatcher::start(),
        })
    }
}

/// Watches the append tickets of endpoint actors, which never wait for their own appends (they
/// act once the fold shows them). One task for all actors, instead of one per append: under a
/// burst of 100,000 deliveries that is a few megabytes instead of a task each. A refused append
/// is reported to its actor, which then crashes and rebuilds from its stream.
#[derive(Clone)]
pub struct TicketWatcher {
    tx: mpsc::UnboundedSender<(AppendTicket, ActorRef<EndpointMsg>)>,
}

impl TicketWatcher {
    /// Starts the watching task. Call inside the runtime.
    pub fn start() -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<(AppendTicket, ActorRef<EndpointMsg>)>();
        tokio::spawn(async move {
            // The journal commits appends in order, so awaiting them in order loses no time.
            while let Some((ticket, actor)) = rx.recv().await {
                if let Err(e) = ticket.await {
                    let _ = actor.send_message(EndpointMsg::AppendFailed(e.to_string()));
                }
            }
        });
        Self { tx }
    }

    /// Watches `ticket` on behalf of `actor`.
    pub fn watch(&self, ticket: AppendTicket, actor: ActorRef<EndpointMsg>) {
        let _ = self.tx.send((ticket, actor));
    }
}

/// Striped locks: requests with the same key (organization, idempotency key) run one at a time,
/// requests with different keys almost never wait for each other.
pub struct KeyLocks {
    stripes: Vec<tokio::sync::Mutex<()>>,
}

impl Default for KeyLocks {
    fn default() -> Self {
        Self {
            stripes: (0..64).map(|_| tokio::sync::Mutex::new(())).collect(),
        }
    }
}

impl KeyLocks {
    /// Locks the stripe of `key`.
    pub async fn lock(&self, key: &(u64, String)) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::{BuildHasher, RandomState};
        static SEED: std::sync::LazyLock<RandomState> = std::sync::LazyLock::new(RandomState::new);
        let stripe = (SEED.hash_one(key) % self.stripes.len() as u64) as usize;
        self.stripes[stripe].lock().await
    }
}

/// The endpoint kind for the generic [`super::manager::Manager`].
pub struct Endpoints {
    app: Arc<App>,
}

impl ManagedKind for Endpoints {
    type Msg = EndpointMsg;
    const CATEGORY: &'static str = CATEGORY;
    const CREATED: &'static str = EndpointCreated::TYPE;
    const DELETED: &'static str = EndpointDeleted::TYPE;

    async fn spawn(
        self: Arc<Self>,
        id: u64,
        _registry: Registry<EndpointMsg>,
        supervisor: ActorCell,
    ) -> Result<ActorRef<EndpointMsg>, String> {
        let actor = EndpointActor {
            app: self.app.clone(),
            id,
        };
        spawn_linked(actor, supervisor).await
    }

    fn passivates(&self) -> bool {
        self.app.config.actors.idle().is_some()
    }

    fn now(&self) -> i64 {
        self.app.outbound.clock.now()
    }
}

/// Starts the dispatcher and the endpoint manager (which starts one actor per endpoint).
pub async fn start(app: &Arc<App>) -> Result<(), String> {
    start_manager(
        app,
        Arc::new(Endpoints { app: app.clone() }),
        app.outbound.endpoints.clone(),
    )
    .await?;
    dispatcher::start(app).await
}
