//! Each service's turns at the node's one Redis connection (see the
//! module docs' Fairness).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::IN_FLIGHT_PER_SERVICE;

/// Each service's turns at the connection: at most
/// [`IN_FLIGHT_PER_SERVICE`] commands in flight, the rest waiting in order.
#[derive(Debug, Default)]
pub(super) struct Turns {
    /// One gate per service that ever used the store (as many as service
    /// folders); a `std` mutex, held for a map look-up only.
    gates: Mutex<HashMap<Arc<str>, Arc<Semaphore>>>,
}

impl Turns {
    /// Waits for a turn of `service`; the turn ends when the permit drops.
    pub(super) async fn take(&self, service: &str) -> OwnedSemaphorePermit {
        let gate = {
            let mut gates = self.gates.lock().unwrap_or_else(PoisonError::into_inner);
            match gates.get(service) {
                Some(gate) => gate.clone(),
                None => {
                    let gate = Arc::new(Semaphore::new(IN_FLIGHT_PER_SERVICE));
                    gates.insert(service.into(), gate.clone());
                    gate
                }
            }
        };
        gate.acquire_owned()
            .await
            .expect("a service's gate is never closed")
    }
}
