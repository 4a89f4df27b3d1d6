//! A value the running server reads on every use and `gatehouse reload`
//! replaces whole: readers take the current `Arc` and keep it for what
//! they are doing (a request verified with the secrets it began with, a
//! job sent with the route it was claimed under), so a swap never tears
//! anything in flight.

use std::sync::{Arc, RwLock};

pub struct Live<T: ?Sized>(Arc<RwLock<Arc<T>>>);

impl<T: ?Sized> Clone for Live<T> {
    fn clone(&self) -> Self {
        Live(self.0.clone())
    }
}

impl<T> Live<T> {
    pub fn new(value: T) -> Live<T> {
        Live(Arc::new(RwLock::new(Arc::new(value))))
    }

    /// Replaces the value; readers holding the old one keep it.
    pub fn set(&self, value: T) {
        *self.0.write().expect("live value lock") = Arc::new(value);
    }
}

impl<T: ?Sized> Live<T> {
    /// The current value.
    pub fn get(&self) -> Arc<T> {
        self.0.read().expect("live value lock").clone()
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Live<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}
