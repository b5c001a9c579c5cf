//! Feeding an actor's mailbox from a broadcast channel (the store's watch stream, the sandboxes'
//! notices): the supervisors turn what others publish into their own messages this way.

use ractor::{ActorRef, Message};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::task::JoinHandle;

/// Spawns a task that casts to `actor` the message `to_message` makes of each value `receiver`
/// gets (`None` skips the value), until the channel closes or the actor is gone. A receiver that
/// lagged logs `lagged` with the number of values it missed, and carries on.
pub(crate) fn forward<T, M>(
    mut receiver: broadcast::Receiver<T>,
    actor: ActorRef<M>,
    lagged: &'static str,
    to_message: impl Fn(T) -> Option<M> + Send + 'static,
) -> JoinHandle<()>
where
    T: Clone + Send + 'static,
    M: Message,
{
    tokio::spawn(async move {
        loop {
            match receiver.recv().await {
                Ok(value) => {
                    if let Some(message) = to_message(value)
                        && actor.cast(message).is_err()
                    {
                        return;
                    }
                }
                Err(RecvError::Lagged(n)) => tracing::warn!(missed = n, "{lagged}"),
                Err(RecvError::Closed) => return,
            }
        }
    })
}
