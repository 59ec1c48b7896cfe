//! The connection to the state store: one Redis (or Valkey) node named by
//! `state.redis.url`, or the master of a group monitored by Redis Sentinel
//! (`state.redis.sentinel`).
//!
//! With a URL the node never changes: one lazy [`ConnectionManager`]
//! reconnects to it with backoff. With Sentinel the master is asked of the
//! sentinels (the client checks that the node answers `ROLE` as a master),
//! and asked again
//!
//! * after any failed command (a dead master refuses connections; a demoted
//!   one answers writes with `READONLY`), at most every
//!   [`MIN_RECHECK`], and
//! * when a sentinel announces `+switch-master` for the group (a
//!   subscription on one sentinel at a time), and
//! * every `reconcile_interval` as a backstop (a master that is still
//!   reachable from here after the sentinels replaced it).
//!
//! When the answer names another node, a new connection manager replaces
//! the old one and the generation counter moves on: the subscriber then
//! subscribes again on the new master and reconciles everything (anything
//! published or lost around the failover).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::sentinel::SentinelClient;
use ::redis::{Client, Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, Value};
use arc_swap::ArcSwapOption;
use futures_util::StreamExt;
use tokio::sync::watch;

/// Shortest time between two Sentinel look-ups triggered by errors.
pub const MIN_RECHECK: Duration = Duration::from_millis(200);

/// One resolved node and its connection.
struct Node {
    client: Client,
    conn: ConnectionManager,
    addr: String,
}

enum Mode {
    /// A fixed node.
    Direct,
    /// A Sentinel-monitored master.
    Sentinel {
        client: Box<tokio::sync::Mutex<SentinelClient>>,
        master_name: String,
    },
}

/// The connection to the state store, shared by every task of a replica.
pub struct Link {
    mode: Mode,
    node: ArcSwapOption<Node>,
    mgr_cfg: ConnectionManagerConfig,
    timeout: Duration,
    /// Moves on every change of node.
    generation: watch::Sender<u64>,
    /// Woken when a command failed (the master may have moved).
    suspect: tokio::sync::Notify,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("sentinel", &self.is_sentinel())
            .field("node", &self.address())
            .finish()
    }
}

fn addr_of(client: &Client) -> String {
    client.get_connection_info().addr().to_string()
}

impl Link {
    /// A fixed node (connection made lazily, never waits for Redis).
    pub fn direct(
        client: Client,
        mgr_cfg: ConnectionManagerConfig,
        timeout: Duration,
    ) -> Result<Link, RedisError> {
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), mgr_cfg.clone())?;
        let addr = addr_of(&client);
        Ok(Link {
            mode: Mode::Direct,
            node: ArcSwapOption::from_pointee(Node { client, conn, addr }),
            mgr_cfg,
            timeout,
            generation: watch::channel(0).0,
            suspect: tokio::sync::Notify::new(),
        })
    }

    /// The master of `master_name` as the sentinels of `client` say;
    /// unresolved until [`Link::resolve`] first succeeds.
    pub fn sentinel(
        client: SentinelClient,
        master_name: &str,
        mgr_cfg: ConnectionManagerConfig,
        timeout: Duration,
    ) -> Link {
        Link {
            mode: Mode::Sentinel {
                client: Box::new(tokio::sync::Mutex::new(client)),
                master_name: master_name.to_string(),
            },
            node: ArcSwapOption::empty(),
            mgr_cfg,
            timeout,
            generation: watch::channel(0).0,
            suspect: tokio::sync::Notify::new(),
        }
    }

    /// True in Sentinel mode.
    pub fn is_sentinel(&self) -> bool {
        matches!(self.mode, Mode::Sentinel { .. })
    }

    /// `host:port` of the node in use (`None`: no master resolved yet).
    pub fn address(&self) -> Option<String> {
        self.node.load().as_ref().map(|n| n.addr.clone())
    }

    /// A connection to the node in use (cheap: clones a handle).
    pub fn conn(&self) -> Conn {
        Conn {
            inner: self.node.load().as_ref().map(|n| n.conn.clone()),
        }
    }

    /// A client for the node in use (for pub/sub).
    pub fn client(&self) -> Option<Client> {
        self.node.load().as_ref().map(|n| n.client.clone())
    }

    /// Follows every change of node.
    pub fn generation(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// A command failed: in Sentinel mode, ask the sentinels again soon.
    pub fn suspect(&self) {
        if self.is_sentinel() {
            self.suspect.notify_one();
        }
    }

    /// Ask the sentinels for the master; switch to it when it is another
    /// node. `Ok(true)`: switched. A fixed node never switches.
    pub async fn resolve(&self) -> Result<bool, RedisError> {
        let Mode::Sentinel {
            client,
            master_name,
        } = &self.mode
        else {
            return Ok(false);
        };
        let master = tokio::time::timeout(self.timeout * 2, async {
            client.lock().await.async_get_client().await
        })
        .await
        .map_err(|_| RedisError::from((ErrorKind::Io, "sentinel look-up timed out")))??;
        let addr = addr_of(&master);
        if self.address().as_deref() == Some(addr.as_str()) {
            return Ok(false);
        }
        let conn = ConnectionManager::new_lazy_with_config(master.clone(), self.mgr_cfg.clone())?;
        let old = self.node.swap(Some(Arc::new(Node {
            client: master,
            conn,
            addr: addr.clone(),
        })));
        match old {
            None => {
                tracing::info!(master = %addr, name = %master_name, "state store master found through Sentinel")
            }
            Some(old) => tracing::warn!(master = %addr, previous = %old.addr, name = %master_name,
                "state store master changed (Sentinel failover); switched to the new master"),
        }
        self.generation.send_modify(|g| *g += 1);
        Ok(true)
    }

    /// Sentinel mode: resolve now, then after every suspect command (at most
    /// every [`MIN_RECHECK`]) and every `every`. Returns at once for a
    /// fixed node.
    pub async fn watch(self: Arc<Self>, every: Duration, mut shutdown: watch::Receiver<bool>) {
        if !self.is_sentinel() {
            return;
        }
        let announcements = tokio::spawn(Arc::clone(&self).switch_master(shutdown.clone()));
        let _abort = AbortOnDrop(announcements);
        let mut failures = 0u32;
        loop {
            let started = Instant::now();
            match self.resolve().await {
                Ok(_) => failures = 0,
                Err(e) => {
                    failures = failures.saturating_add(1);
                    if failures == 1 {
                        tracing::warn!(error = %e, "cannot resolve the state store master through Sentinel; retrying");
                    } else {
                        tracing::debug!(error = %e, "Sentinel look-up failed");
                    }
                }
            }
            // Unresolved: retry soon; resolved: wait for a suspect command
            // or the backstop interval.
            let wait = if self.address().is_none() || failures > 0 {
                MIN_RECHECK * failures.clamp(1, 10)
            } else {
                every
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.suspect.notified() => {}
                r = shutdown.changed() => if r.is_err() || *shutdown.borrow() { return },
            }
            let since = started.elapsed();
            if since < MIN_RECHECK {
                tokio::time::sleep(MIN_RECHECK - since).await;
            }
        }
    }
}

impl Link {
    /// Listen for `+switch-master` on a sentinel; every announcement for
    /// this group wakes the look-up at once.
    async fn switch_master(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let Mode::Sentinel {
            client,
            master_name,
        } = &self.mode
        else {
            return;
        };
        let mut backoff = MIN_RECHECK;
        loop {
            let subscribed = tokio::time::timeout(self.timeout * 2, async {
                let sentinel = client.lock().await.async_get_sentinel_client().await?;
                let mut ps = sentinel.get_async_pubsub().await?;
                ps.subscribe("+switch-master").await?;
                Ok::<_, RedisError>(ps)
            })
            .await;
            if let Ok(Ok(mut ps)) = subscribed {
                backoff = MIN_RECHECK;
                let mut stream = ps.on_message();
                loop {
                    tokio::select! {
                        msg = stream.next() => match msg {
                            // "<name> <old ip> <old port> <new ip> <new port>"
                            Some(msg) => {
                                let payload = msg.get_payload_bytes();
                                if payload.split(|b| *b == b' ').next() == Some(master_name.as_bytes()) {
                                    tracing::info!(name = %master_name, "Sentinel announced a new master");
                                    self.suspect.notify_one();
                                }
                            }
                            None => break,
                        },
                        r = shutdown.changed() => if r.is_err() || *shutdown.borrow() { return },
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                r = shutdown.changed() => if r.is_err() || *shutdown.borrow() { return },
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A connection handle on the node in use; every command fails while no
/// master is resolved.
#[derive(Clone)]
pub struct Conn {
    inner: Option<ConnectionManager>,
}

fn unresolved() -> RedisError {
    RedisError::from((ErrorKind::Io, "no state store master resolved yet"))
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.inner {
            Some(c) => c.req_packed_command(cmd),
            None => Box::pin(async { Err(unresolved()) }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.inner {
            Some(c) => c.req_packed_commands(pipeline, offset, count),
            None => Box::pin(async { Err(unresolved()) }),
        }
    }

    fn get_db(&self) -> i64 {
        self.inner.as_ref().map_or(0, |c| c.get_db())
    }
}
