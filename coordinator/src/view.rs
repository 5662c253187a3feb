//! The cluster as the admin API, the REST API and the console read it: one snapshot for the
//! whole process, kept current from watch events on the coordinator's ZooKeeper session
//! instead of a whole read per request (at 100,000 partitions a whole read takes seconds).

use std::sync::Arc;

use tokio::sync::Mutex;
use tributary_common::snapshot::{ClusterSnapshot, LoadError, Tracker};
use tributary_common::znode;
use zookeeper_client::{AddWatchMode, Client, EventType, PersistentWatcher, StateWatcher};

use crate::controller::ZkSlot;

/// Why no snapshot could be read.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// The coordinator has no ZooKeeper session.
    #[error("the coordinator has no ZooKeeper session; check that ZooKeeper is running")]
    NoSession,
    /// Reading failed.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The reading task ended without an answer (a bug: its panic is logged).
    #[error("reading the cluster failed unexpectedly ({0}); the next request tries again")]
    Failed(String),
}

/// The process's view of the cluster (see the module docs).
pub struct ClusterView {
    zk: ZkSlot,
    watched: Mutex<Option<Watched>>,
}

/// The watches of one session and what they have kept current.
struct Watched {
    session: zookeeper_client::SessionId,
    state: StateWatcher,
    watches: [PersistentWatcher; 3],
    tracker: Tracker,
    /// The snapshot last handed out, while nothing has changed since.
    published: Option<Arc<ClusterSnapshot>>,
}

impl Watched {
    async fn set(client: &Client) -> Result<Watched, LoadError> {
        let watch = |path: &'static str| async move {
            client
                .watch(path, AddWatchMode::PersistentRecursive)
                .await
                .map_err(|source| LoadError { path: path.to_string(), source })
        };
        let watches = [watch("/brokers").await?, watch("/config").await?, watch(znode::DELETE_TOPICS).await?];
        let mut state = client.state_watcher();
        state.state();
        Ok(Watched { session: client.session_id(), state, watches, tracker: Tracker::default(), published: None })
    }

    /// Notes the events waiting on the watches (those of a write this session made are
    /// there before its answer, so a read after a write sees it). `false` when the
    /// session's state moved since the watches were set (a disconnection, even one already
    /// over, may have lost events) or it ended: the watches are then set again.
    async fn drain(&mut self) -> bool {
        let moved = tokio::select! {
            biased;
            _ = self.state.changed() => true,
            _ = std::future::ready(()) => false,
        };
        if moved {
            return false;
        }
        for w in &mut self.watches {
            loop {
                let event = tokio::select! {
                    biased;
                    e = w.changed() => e,
                    _ = std::future::ready(()) => break,
                };
                if event.event_type == EventType::Session {
                    if event.session_state.is_terminated() {
                        return false;
                    }
                    continue;
                }
                if self.tracker.note(&event.path) {
                    self.published = None;
                }
            }
        }
        true
    }
}

impl ClusterView {
    /// A view reading through the session in `zk`.
    pub fn new(zk: ZkSlot) -> Arc<ClusterView> {
        Arc::new(ClusterView { zk, watched: Mutex::new(None) })
    }

    /// The session the view reads through.
    ///
    /// # Errors
    /// [`ViewError::NoSession`].
    pub fn client(&self) -> Result<Client, ViewError> {
        self.zk.read().expect("zk slot lock").clone().ok_or(ViewError::NoSession)
    }

    /// The cluster now, with every change this session has been told of read in. The
    /// reading runs in a task of its own: a caller that goes away (an HTTP client that
    /// timed out during the whole read of a large cluster, say) does not cancel it, so
    /// the next caller finds it done instead of starting it over.
    ///
    /// # Errors
    /// [`ViewError`]; the next call starts over with a whole read.
    pub async fn snapshot(self: &Arc<Self>) -> Result<(Client, Arc<ClusterSnapshot>), ViewError> {
        let view = self.clone();
        tokio::spawn(async move { view.read().await }).await.map_err(|e| ViewError::Failed(e.to_string()))?
    }

    async fn read(&self) -> Result<(Client, Arc<ClusterSnapshot>), ViewError> {
        let client = self.client()?;
        let mut slot = self.watched.lock().await;
        let usable = match slot.as_mut() {
            Some(w) if w.session == client.session_id() => w.drain().await,
            _ => false,
        };
        if !usable {
            *slot = None;
            *slot = Some(Watched::set(&client).await?);
        }
        let w = slot.as_mut().expect("set above");
        if let Some(s) = &w.published {
            return Ok((client, s.clone()));
        }
        match w.tracker.current(&client).await {
            Ok(s) => {
                let s = Arc::new(s.clone());
                w.published = Some(s.clone());
                Ok((client, s))
            }
            Err(e) => {
                *slot = None;
                Err(e.into())
            }
        }
    }
}
