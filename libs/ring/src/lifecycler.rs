//! The lifecycler: registers this process's instance in a ring, claims its
//! tokens, heartbeats, forgets long-dead instances and leaves on shutdown.

use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::config::RingConfig;
use crate::desc::{now_secs, InstanceDesc, InstanceState, RingDesc};
use crate::error::RingError;
use crate::kv::{KvStore, KvStoreExt};
use crate::tokens::{complete_tokens, TokensFile};

/// One instance's membership of a ring.
///
/// [`Lifecycler::start`] registers the instance (PENDING), claims tokens
/// (JOINING) and starts heartbeating; the owner calls
/// [`Lifecycler::activate`] once it is ready to take traffic (an ingester
/// after replaying its WAL) and [`Lifecycler::stop`] on shutdown. Dropping a
/// lifecycler without `stop` behaves like a crash: the heartbeat stops and
/// the instance stays in the ring with its tokens.
#[derive(Debug)]
pub struct Lifecycler {
    shared: Arc<Shared>,
    heartbeat: Option<(JoinHandle<()>, oneshot::Sender<()>)>,
}

#[derive(Debug)]
struct Shared {
    config: RingConfig,
    kv: Arc<dyn KvStore>,
    key: String,
    local: Mutex<Local>,
}

/// What this instance believes about itself; written to the ring on every
/// heartbeat.
#[derive(Debug, Clone)]
struct Local {
    state: InstanceState,
    tokens: Vec<u32>,
    registered_timestamp: i64,
}

impl Lifecycler {
    /// Registers `config.instance_id` in the ring stored at `key` and claims
    /// its tokens, ending in state JOINING.
    ///
    /// Tokens are, in order of preference: the ones the ring already lists
    /// for this instance ID, the ones in `tokens_file_path`, fresh random
    /// ones. Tokens another instance owns meanwhile are replaced, and the
    /// set is topped up to `num_tokens`. Claiming happens in one
    /// compare-and-swap against the whole ring, so concurrent joiners never
    /// share a token.
    pub async fn start(
        config: &RingConfig,
        kv: Arc<dyn KvStore>,
        key: impl Into<String>,
    ) -> Result<Self, RingError> {
        config.validate_lifecycler()?;
        let shared = Arc::new(Shared {
            config: config.clone(),
            kv,
            key: key.into(),
            local: Mutex::new(Local {
                state: InstanceState::Pending,
                tokens: Vec::new(),
                registered_timestamp: now_secs(),
            }),
        });

        let file_tokens = match &config.tokens_file_path {
            Some(path) => match TokensFile::load(path).await {
                Ok(tokens) => tokens.unwrap_or_default(),
                Err(err) => {
                    tracing::warn!(error = %err, "ignoring the tokens file");
                    Vec::new()
                }
            },
            None => Vec::new(),
        };

        shared.register().await?;
        shared.claim_tokens(&file_tokens).await?;
        if let Some(path) = &config.tokens_file_path {
            let tokens = shared.local.lock().tokens.clone();
            TokensFile::store(path, &tokens).await?;
        }

        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(heartbeat_loop(shared.clone(), stop_rx));
        Ok(Self {
            shared,
            heartbeat: Some((task, stop_tx)),
        })
    }

    /// This instance's ID.
    pub fn instance_id(&self) -> &str {
        &self.shared.config.instance_id
    }

    /// The ring key it registers in.
    pub fn ring_key(&self) -> &str {
        &self.shared.key
    }

    /// Its current state.
    pub fn state(&self) -> InstanceState {
        self.shared.local.lock().state
    }

    /// Its tokens, sorted.
    pub fn tokens(&self) -> Vec<u32> {
        self.shared.local.lock().tokens.clone()
    }

    /// Moves to ACTIVE: the instance takes writes from now on.
    pub async fn activate(&self) -> Result<(), RingError> {
        self.set_state(InstanceState::Active).await
    }

    /// Changes the state and writes it to the ring now.
    pub async fn set_state(&self, state: InstanceState) -> Result<(), RingError> {
        if self.heartbeat.is_none() {
            return Err(RingError::Stopped);
        }
        self.shared.local.lock().state = state;
        self.shared.heartbeat().await
    }

    /// Heartbeats now (and forgets dead instances) instead of waiting for
    /// the next period.
    pub async fn heartbeat(&self) -> Result<(), RingError> {
        self.shared.heartbeat().await
    }

    /// Leaves the ring: stops heartbeating, switches to LEAVING, then
    /// removes the instance unless `unregister_on_shutdown` is false (it then
    /// stays, LEAVING, with its tokens, to take them back on restart).
    pub async fn stop(mut self) -> Result<(), RingError> {
        if let Some((task, stop)) = self.heartbeat.take() {
            let _ = stop.send(());
            let _ = task.await;
        }
        self.shared.local.lock().state = InstanceState::Leaving;
        self.shared.heartbeat().await?;
        if self.shared.config.unregister_on_shutdown {
            forget_instance(
                self.shared.kv.as_ref(),
                &self.shared.key,
                &self.shared.config.instance_id,
            )
            .await?;
            tracing::info!(instance = %self.shared.config.instance_id, "unregistered from the ring");
        }
        Ok(())
    }
}

impl Drop for Lifecycler {
    fn drop(&mut self) {
        if let Some((task, _)) = self.heartbeat.take() {
            task.abort();
        }
    }
}

/// Removes `instance_id` from the ring at `key` (the "forget" operator
/// action, and what a leaving instance does). Returns whether it was there.
pub async fn forget_instance(
    kv: &dyn KvStore,
    key: &str,
    instance_id: &str,
) -> Result<bool, RingError> {
    let removed = kv
        .cas::<RingDesc, _>(key, |desc| {
            let mut desc = desc?;
            desc.instances.remove(instance_id)?;
            Some(desc)
        })
        .await?;
    Ok(removed.is_some())
}

impl Shared {
    fn instance_desc(&self, local: &Local, now: i64) -> InstanceDesc {
        InstanceDesc {
            id: self.config.instance_id.clone(),
            addr: self.config.instance_addr.clone(),
            zone: self.config.instance_availability_zone.clone(),
            state: local.state,
            tokens: local.tokens.clone(),
            registered_timestamp: local.registered_timestamp,
            heartbeat_timestamp: now,
        }
    }

    /// Step 1: appear in the ring as PENDING (keeping tokens and the
    /// registration time an earlier run left there).
    async fn register(&self) -> Result<(), RingError> {
        let id = self.config.instance_id.as_str();
        self.kv
            .cas::<RingDesc, _>(&self.key, |desc| {
                let mut desc = desc.unwrap_or_default();
                let now = now_secs();
                let mut local = self.local.lock();
                local.state = InstanceState::Pending;
                let previous = desc.instances.get(id);
                // Tokens found in the ring stay listed until step 2 re-claims them.
                local.tokens = previous.map(|p| p.tokens.clone()).unwrap_or_default();
                if let Some(registered) =
                    previous.map(|p| p.registered_timestamp).filter(|&t| t > 0)
                {
                    local.registered_timestamp = registered;
                }
                let instance = self.instance_desc(&local, now);
                desc.instances.insert(id.to_string(), instance);
                Some(desc)
            })
            .await?;
        tracing::info!(instance = id, key = %self.key, "registered in the ring (PENDING)");
        Ok(())
    }

    /// Step 2: claim tokens and move to JOINING.
    async fn claim_tokens(&self, file_tokens: &[u32]) -> Result<(), RingError> {
        let id = self.config.instance_id.as_str();
        let wanted = self.config.num_tokens;
        self.kv
            .cas::<RingDesc, _>(&self.key, |desc| {
                let mut desc = desc.unwrap_or_default();
                let taken = desc.tokens_taken_by_others(id);
                let now = now_secs();
                let mut local = self.local.lock();
                let previous: &[u32] = match desc.instances.get(id) {
                    Some(instance) if !instance.tokens.is_empty() => &instance.tokens,
                    _ if !local.tokens.is_empty() => &local.tokens,
                    _ => file_tokens,
                };
                let tokens = complete_tokens(previous, wanted, &taken, &mut rand::rng());
                local.tokens = tokens;
                local.state = InstanceState::Joining;
                desc.instances
                    .insert(id.to_string(), self.instance_desc(&local, now));
                Some(desc)
            })
            .await?;
        tracing::info!(
            instance = id,
            tokens = self.local.lock().tokens.len(),
            "claimed tokens (JOINING)"
        );
        Ok(())
    }

    /// Writes this instance's state, tokens and a fresh heartbeat, and
    /// removes instances dead for longer than the auto-forget period.
    async fn heartbeat(&self) -> Result<(), RingError> {
        let id = self.config.instance_id.as_str();
        let forget_after = self.config.auto_forget_after();
        let mut forgotten = Vec::new();
        self.kv
            .cas::<RingDesc, _>(&self.key, |desc| {
                let mut desc = desc.unwrap_or_default();
                let now = now_secs();
                let instance = self.instance_desc(&self.local.lock(), now);
                desc.instances.insert(id.to_string(), instance);
                forgotten = match forget_after {
                    Some(after) => desc.remove_stale(now, after.as_secs(), id),
                    None => Vec::new(),
                };
                Some(desc)
            })
            .await?;
        for other in forgotten {
            tracing::warn!(
                instance = %other,
                "forgot an instance whose heartbeat is older than auto_forget_unhealthy_periods × heartbeat_timeout"
            );
        }
        Ok(())
    }
}

async fn heartbeat_loop(shared: Arc<Shared>, mut stop: oneshot::Receiver<()>) {
    let mut ticker = tokio::time::interval(shared.config.heartbeat_period.0);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker.tick().await; // the first tick is immediate; start() just wrote the ring
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                if let Err(err) = shared.heartbeat().await {
                    tracing::warn!(instance = %shared.config.instance_id, error = %err, "ring heartbeat failed");
                }
            }
            _ = &mut stop => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::KvError;
    use crate::kv::MemoryKv;
    use std::collections::HashSet;
    use std::time::Duration;
    use strata_model::ConfigDuration;

    const KEY: &str = "strata/rings/ingester";

    fn config(id: &str) -> RingConfig {
        RingConfig {
            instance_id: id.into(),
            instance_addr: format!("{id}:9095"),
            heartbeat_period: ConfigDuration(Duration::from_millis(50)),
            num_tokens: 32,
            ..RingConfig::default()
        }
    }

    /// Polls `check` until it holds (5 s at most): heartbeats run on their own clock.
    async fn eventually<F, Fut>(what: &str, check: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !check().await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn ring_desc(kv: &MemoryKv) -> RingDesc {
        kv.get_value::<RingDesc>(KEY).await.unwrap().unwrap().0
    }

    #[tokio::test]
    async fn joins_activates_and_leaves() {
        let kv = Arc::new(MemoryKv::new());
        let lc = Lifecycler::start(&config("ing-1"), kv.clone(), KEY)
            .await
            .unwrap();
        assert_eq!(lc.state(), InstanceState::Joining);
        let tokens = lc.tokens();
        assert_eq!(tokens.len(), 32);
        assert!(tokens.windows(2).all(|w| w[0] < w[1]));

        let desc = ring_desc(&kv).await;
        let me = &desc.instances["ing-1"];
        assert_eq!(me.state, InstanceState::Joining);
        assert_eq!(me.tokens, tokens);
        assert_eq!(me.addr, "ing-1:9095");
        assert!(me.heartbeat_timestamp >= now_secs() - 1);

        lc.activate().await.unwrap();
        assert_eq!(lc.state(), InstanceState::Active);
        assert_eq!(
            ring_desc(&kv).await.instances["ing-1"].state,
            InstanceState::Active
        );

        lc.stop().await.unwrap();
        assert!(ring_desc(&kv).await.instances.is_empty());
    }

    #[tokio::test]
    async fn heartbeats_periodically_and_re_registers_if_forgotten() {
        let kv = Arc::new(MemoryKv::new());
        let lc = Lifecycler::start(&config("ing-1"), kv.clone(), KEY)
            .await
            .unwrap();
        kv.cas::<RingDesc, _>(KEY, |desc| {
            let mut desc = desc?;
            desc.instances.get_mut("ing-1")?.heartbeat_timestamp = 0;
            Some(desc)
        })
        .await
        .unwrap();
        eventually("a fresh heartbeat", || async {
            ring_desc(&kv).await.instances["ing-1"].heartbeat_timestamp >= now_secs() - 1
        })
        .await;

        assert!(forget_instance(kv.as_ref(), KEY, "ing-1").await.unwrap());
        assert!(!forget_instance(kv.as_ref(), KEY, "ing-1").await.unwrap());
        eventually("re-registration", || async {
            ring_desc(&kv).await.instances.contains_key("ing-1")
        })
        .await;
        let desc = ring_desc(&kv).await;
        assert_eq!(desc.instances["ing-1"].tokens, lc.tokens());
        lc.stop().await.unwrap();
    }

    #[tokio::test]
    async fn keeps_its_tokens_in_the_ring_when_not_unregistering() {
        let kv = Arc::new(MemoryKv::new());
        let mut cfg = config("ing-1");
        cfg.unregister_on_shutdown = false;
        let lc = Lifecycler::start(&cfg, kv.clone(), KEY).await.unwrap();
        lc.activate().await.unwrap();
        let tokens = lc.tokens();
        let registered = ring_desc(&kv).await.instances["ing-1"].registered_timestamp;
        lc.stop().await.unwrap();

        let desc = ring_desc(&kv).await;
        assert_eq!(desc.instances["ing-1"].state, InstanceState::Leaving);
        assert_eq!(desc.instances["ing-1"].tokens, tokens);

        // Restart: same tokens, same registration time, no tokens file needed.
        let lc = Lifecycler::start(&cfg, kv.clone(), KEY).await.unwrap();
        assert_eq!(lc.tokens(), tokens);
        assert_eq!(lc.state(), InstanceState::Joining);
        let desc = ring_desc(&kv).await;
        assert_eq!(desc.instances["ing-1"].registered_timestamp, registered);
        drop(lc);
    }

    #[tokio::test]
    async fn rejoins_with_the_tokens_from_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let kv = Arc::new(MemoryKv::new());
        let mut cfg = config("ing-1");
        cfg.tokens_file_path = Some(dir.path().join("tokens"));
        let lc = Lifecycler::start(&cfg, kv.clone(), KEY).await.unwrap();
        let tokens = lc.tokens();
        assert_eq!(
            TokensFile::load(&dir.path().join("tokens")).await.unwrap(),
            Some(tokens.clone())
        );
        lc.stop().await.unwrap();
        assert!(ring_desc(&kv).await.instances.is_empty());

        let lc = Lifecycler::start(&cfg, kv.clone(), KEY).await.unwrap();
        assert_eq!(lc.tokens(), tokens);
        lc.stop().await.unwrap();
    }

    #[tokio::test]
    async fn file_tokens_owned_by_someone_else_are_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        let kv = Arc::new(MemoryKv::new());
        let other = Lifecycler::start(&config("ing-2"), kv.clone(), KEY)
            .await
            .unwrap();
        let theirs = other.tokens();
        let stale: Vec<u32> = theirs[..4].iter().copied().chain([1, 2, 3]).collect();
        TokensFile::store(&path, &stale).await.unwrap();

        let mut cfg = config("ing-1");
        cfg.tokens_file_path = Some(path.clone());
        let lc = Lifecycler::start(&cfg, kv.clone(), KEY).await.unwrap();
        let mine = lc.tokens();
        assert_eq!(mine.len(), 32);
        assert!(mine.contains(&1) && mine.contains(&2) && mine.contains(&3));
        assert!(mine.iter().all(|t| !theirs.contains(t)));
        assert_eq!(TokensFile::load(&path).await.unwrap(), Some(mine));
    }

    #[tokio::test]
    async fn corrupt_tokens_file_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, b"garbage").unwrap();
        let mut cfg = config("ing-1");
        cfg.tokens_file_path = Some(path.clone());
        let lc = Lifecycler::start(&cfg, Arc::new(MemoryKv::new()), KEY)
            .await
            .unwrap();
        assert_eq!(lc.tokens().len(), 32);
        assert_eq!(TokensFile::load(&path).await.unwrap(), Some(lc.tokens()));
    }

    #[tokio::test]
    async fn forgets_instances_dead_for_too_long() {
        let kv = Arc::new(MemoryKv::new());
        let now = now_secs();
        kv.cas::<RingDesc, _>(KEY, |_| {
            let mut desc = RingDesc::new();
            for (id, age) in [("dead", 601), ("sick", 120)] {
                desc.instances.insert(
                    id.into(),
                    InstanceDesc {
                        id: id.into(),
                        addr: String::new(),
                        zone: String::new(),
                        state: InstanceState::Active,
                        tokens: vec![age as u32],
                        registered_timestamp: 0,
                        heartbeat_timestamp: now - age,
                    },
                );
            }
            Some(desc)
        })
        .await
        .unwrap();

        // auto_forget_unhealthy_periods 0 disables it.
        let mut cfg = config("keeper");
        cfg.auto_forget_unhealthy_periods = 0;
        let lc = Lifecycler::start(&cfg, kv.clone(), KEY).await.unwrap();
        lc.heartbeat().await.unwrap();
        assert_eq!(ring_desc(&kv).await.instances.len(), 3);
        lc.stop().await.unwrap();

        // Default: 10 × 1m.
        let lc = Lifecycler::start(&config("forgetter"), kv.clone(), KEY)
            .await
            .unwrap();
        lc.heartbeat().await.unwrap();
        let desc = ring_desc(&kv).await;
        let ids: Vec<&str> = desc.instances.keys().map(String::as_str).collect();
        assert_eq!(ids, ["forgetter", "sick"]);
        lc.stop().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_joins_get_disjoint_tokens() {
        let kv: Arc<dyn KvStore> = Arc::new(MemoryKv::new());
        let mut tasks = Vec::new();
        for n in 0..6 {
            let kv = kv.clone();
            tasks.push(tokio::spawn(async move {
                let lc = Lifecycler::start(&config(&format!("ing-{n}")), kv, KEY)
                    .await
                    .unwrap();
                lc.activate().await.unwrap();
                lc
            }));
        }
        let mut lifecyclers = Vec::new();
        for t in tasks {
            lifecyclers.push(t.await.unwrap());
        }
        let (desc, _) = kv.get_value::<RingDesc>(KEY).await.unwrap().unwrap();
        assert_eq!(desc.instances.len(), 6);
        let mut all = HashSet::new();
        for instance in desc.instances.values() {
            assert_eq!(instance.state, InstanceState::Active);
            assert_eq!(instance.tokens.len(), 32);
            for t in &instance.tokens {
                assert!(all.insert(*t), "token {t} owned twice");
            }
        }
    }

    #[tokio::test]
    async fn invalid_config_and_corrupt_ring_are_errors() {
        let kv = Arc::new(MemoryKv::new());
        let err = Lifecycler::start(&RingConfig::default(), kv.clone(), KEY)
            .await
            .unwrap_err();
        assert!(matches!(err, RingError::Config(_)), "{err}");

        kv.put(KEY, b"{\"instances\": 7}".to_vec()).await.unwrap();
        let err = Lifecycler::start(&config("ing-1"), kv.clone(), KEY)
            .await
            .unwrap_err();
        assert!(
            matches!(err, RingError::Kv(KvError::Decode { .. })),
            "{err}"
        );
    }
}
