//! The future a [`RetryPolicy`](crate::RetryPolicy) returns to wait before a retry.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Sleep;

pin_project! {
    /// Waits the delay chosen for a retry (a server hint or backoff), on
    /// tokio's timer, so paused-time tests run instantly.
    ///
    /// A zero delay completes at once without touching the timer.
    ///
    /// # Panics
    ///
    /// Polling a non-zero wait outside a tokio runtime with the time driver
    /// enabled panics, as [`tokio::time::sleep`] does.
    pub struct RetryWait {
        #[pin]
        state: State,
    }
}

pin_project! {
    #[project = StateProj]
    enum State {
        Done,
        Sleeping { #[pin] sleep: Sleep },
    }
}

impl RetryWait {
    pub(crate) fn new(delay: Duration) -> Self {
        let state = if delay.is_zero() {
            State::Done
        } else {
            State::Sleeping {
                sleep: tokio::time::sleep(delay),
            }
        };
        RetryWait { state }
    }
}

impl Future for RetryWait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        match this.state.as_mut().project() {
            StateProj::Done => Poll::Ready(()),
            StateProj::Sleeping { sleep } => {
                std::task::ready!(sleep.poll(cx));
                this.state.set(State::Done);
                Poll::Ready(())
            }
        }
    }
}

impl fmt::Debug for RetryWait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RetryWait");
        if let State::Sleeping { sleep } = &self.state {
            d.field("deadline", &sleep.deadline());
        }
        d.finish()
    }
}
