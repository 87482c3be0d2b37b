//! A service's place in a ring across its lifecycle: joined (and made ACTIVE)
//! while the service starts, left while it stops, and its state readable for
//! readiness in between.

use std::sync::Arc;

use parking_lot::Mutex;

use crate::{InstanceState, KvStore, Lifecycler, RingConfig, RingError};

/// Where an instance registers: its ring settings (identity, tokens,
/// heartbeats), the KV store and the ring's key in it.
#[derive(Debug, Clone)]
pub struct Registration {
    pub config: RingConfig,
    pub kv: Arc<dyn KvStore>,
    pub key: String,
}

/// Holds the lifecycler of one ring membership; empty before `join` and after
/// `leave`.
#[derive(Debug)]
pub struct Membership {
    registration: Registration,
    lifecycler: Mutex<Option<Arc<Lifecycler>>>,
}

impl Membership {
    pub fn new(registration: Registration) -> Self {
        Self {
            registration,
            lifecycler: Mutex::new(None),
        }
    }

    pub fn registration(&self) -> &Registration {
        &self.registration
    }

    /// Registers in the ring (state JOINING); [`Membership::activate`] makes
    /// the instance ACTIVE.
    pub async fn join(&self) -> Result<(), RingError> {
        let r = &self.registration;
        let lifecycler = Lifecycler::start(&r.config, r.kv.clone(), r.key.clone()).await?;
        *self.lifecycler.lock() = Some(Arc::new(lifecycler));
        Ok(())
    }

    pub async fn activate(&self) -> Result<(), RingError> {
        let lifecycler = self.lifecycler.lock().clone();
        match lifecycler {
            Some(l) => l.activate().await,
            None => Err(RingError::Stopped),
        }
    }

    /// The state in the ring; `None` when not joined.
    pub fn state(&self) -> Option<InstanceState> {
        self.lifecycler.lock().as_ref().map(|l| l.state())
    }

    /// Why this member does not take its share of the work yet, if it does not.
    pub fn not_active(&self) -> Option<String> {
        match self.state() {
            Some(InstanceState::Active) => None,
            Some(state) => Some(format!("{state} in the ring, not ACTIVE")),
            None => Some("not in the ring".to_string()),
        }
    }

    /// Leaves the ring (see [`Lifecycler::stop`]); nothing if not joined.
    pub async fn leave(&self) -> Result<(), RingError> {
        let Some(lifecycler) = self.lifecycler.lock().take() else {
            return Ok(());
        };
        match Arc::try_unwrap(lifecycler) {
            Ok(lifecycler) => lifecycler.stop().await,
            // An `activate` still in flight holds it; leaving waits for no one.
            Err(shared) => {
                shared.set_state(InstanceState::Leaving).await?;
                Ok(())
            }
        }
    }
}
