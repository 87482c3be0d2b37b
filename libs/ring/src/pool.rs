//! One client per instance address, made on first use and reused: what a
//! caller of the ring keeps to talk to the instances the ring returns. The
//! client type is the caller's (a gRPC stub, or the process's own module).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;

/// Makes the client for the instance at an address.
pub type ClientFactory<C, E> = Arc<dyn Fn(&str) -> Result<Arc<C>, E> + Send + Sync>;

/// Clients by instance address.
pub struct ClientPool<C: ?Sized, E> {
    factory: ClientFactory<C, E>,
    clients: Mutex<HashMap<String, Arc<C>>>,
}

impl<C: ?Sized, E> fmt::Debug for ClientPool<C, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientPool")
            .field("clients", &self.clients.lock().len())
            .finish()
    }
}

impl<C: ?Sized, E> ClientPool<C, E> {
    pub fn new(factory: ClientFactory<C, E>) -> Self {
        Self {
            factory,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The client for `addr`, made by the factory the first time.
    pub fn client(&self, addr: &str) -> Result<Arc<C>, E> {
        if let Some(client) = self.clients.lock().get(addr) {
            return Ok(client.clone());
        }
        // Made outside the lock: a factory may be slow (it builds a channel).
        let client = (self.factory)(addr)?;
        Ok(self
            .clients
            .lock()
            .entry(addr.to_string())
            .or_insert(client)
            .clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn one_client_per_address() {
        let made = Arc::new(AtomicUsize::new(0));
        let counter = made.clone();
        let pool: ClientPool<String, ()> = ClientPool::new(Arc::new(move |addr: &str| {
            counter.fetch_add(1, Ordering::Relaxed);
            Ok(Arc::new(addr.to_string()))
        }));
        let a = pool.client("a:1").unwrap();
        let again = pool.client("a:1").unwrap();
        assert!(Arc::ptr_eq(&a, &again));
        assert_eq!(*pool.client("b:2").unwrap(), "b:2");
        assert_eq!(made.load(Ordering::Relaxed), 2);
    }
}
