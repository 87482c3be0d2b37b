//! [`Slot`]: a component that exists only once its service has started, held
//! by the routes and clients built before that.

/// A component that exists once its service has started (an ingester after
/// its WAL replay): routes and clients built before the start hold the slot
/// and answer "not ready yet" while it is empty.
#[derive(Debug)]
pub struct Slot<T>(std::sync::Arc<std::sync::OnceLock<std::sync::Arc<T>>>);

impl<T> Clone for Slot<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Self(std::sync::Arc::default())
    }
}

impl<T> Slot<T> {
    /// A slot that holds `value` from the start.
    pub fn filled(value: std::sync::Arc<T>) -> Self {
        let slot = Self::default();
        slot.fill(value);
        slot
    }

    pub fn get(&self) -> Option<std::sync::Arc<T>> {
        self.0.get().cloned()
    }

    /// Puts the component in; a slot is filled once (later calls are ignored
    /// and return false).
    pub fn fill(&self, value: std::sync::Arc<T>) -> bool {
        self.0.set(value).is_ok()
    }
}
