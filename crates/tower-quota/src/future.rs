//! The response future of [`RateLimit`](crate::RateLimit).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tokio::time::{Sleep, Timeout, sleep_until, timeout};
use tower_service::Service;

use crate::BoxError;
use crate::answer::{ResponseBody, Settlement, is_event_stream};
use crate::engine::{Attempt, Draws, Engine};
use crate::shared::DecisionFuture;
use crate::usage::UsageScan;

pin_project! {
    /// Waits for the request's quotas, readies the inner service, calls it,
    /// and reads the response for server feedback.
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State,
        // The inner service and the request stay here, never moved while
        // the request waits, and give their room to the call once sent.
        #[pin]
        call: Call<S, B, S::Future>,
        // The cells the request drew on, once granted.
        feedback: Option<Feedback>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State {
        Waiting {
            ticket: Ticket,
            sleep: Option<Pin<Box<Sleep>>>,
            asking: Option<Pin<Box<Timeout<DecisionFuture>>>>,
        },
        Ready,
        Calling,
        Failed {
            error: Option<BoxError>,
        },
    }
}

pin_project! {
    /// The request before it is sent, then the inner service's future.
    #[project = CallProj]
    enum Call<S, B, F> {
        Unsent {
            svc: Option<S>,
            req: Option<Request<B>>,
        },
        Sent {
            #[pin]
            fut: F,
        },
    }
}

/// A place in the queues; leaving it (on drop) consumes nothing.
struct Ticket {
    engine: Arc<Engine>,
    id: u64,
    live: bool,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.live {
            self.engine.cancel(self.id);
        }
    }
}

/// The cells a granted request drew on, to hold them if the server pushes back.
pub(crate) struct Feedback {
    engine: Arc<Engine>,
    cells: Draws,
}

impl Feedback {
    pub(crate) fn new(engine: Arc<Engine>, cells: Draws) -> Self {
        Feedback { engine, cells }
    }

    /// Reads the answer's head; what its body must settle, if anything.
    fn answered<T>(self, response: &Response<T>) -> Option<Box<Settlement>> {
        let streaming = is_event_stream(response.headers());
        let settle = self.engine.feedback(
            &self.cells,
            response.status(),
            response.headers(),
            streaming,
        );
        (!settle.is_empty()).then(|| {
            Box::new(Settlement {
                engine: self.engine,
                settle,
                scan: UsageScan::new(),
            })
        })
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    /// Free to go (granted at admission, with the cells for feedback, or
    /// on no quota): the future readies the inner service, then calls it.
    pub(crate) fn ready(svc: S, req: Request<B>, feedback: Option<Feedback>) -> Self {
        ResponseFuture {
            state: State::Ready,
            call: Call::Unsent {
                svc: Some(svc),
                req: Some(req),
            },
            feedback,
        }
    }

    pub(crate) fn waiting(engine: Arc<Engine>, id: u64, svc: S, req: Request<B>) -> Self {
        ResponseFuture {
            state: State::Waiting {
                ticket: Ticket {
                    engine,
                    id,
                    live: true,
                },
                sleep: None,
                asking: None,
            },
            call: Call::Unsent {
                svc: Some(svc),
                req: Some(req),
            },
            feedback: None,
        }
    }

    pub(crate) fn failed(error: BoxError) -> Self {
        ResponseFuture {
            state: State::Failed { error: Some(error) },
            call: Call::Unsent {
                svc: None,
                req: None,
            },
            feedback: None,
        }
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Waiting {
                    ticket,
                    sleep,
                    asking,
                } => match match asking {
                    // A store decision in flight: its answer comes first.
                    Some(ask) => {
                        let answer = ready!(ask.as_mut().poll(cx)).unwrap_or_else(|_| {
                            Err("the shared store did not answer within its timeout".into())
                        });
                        *asking = None;
                        ticket.engine.shared_decided(ticket.id, answer, cx.waker())
                    }
                    None => ticket.engine.attempt(ticket.id, cx.waker()),
                } {
                    Err(error) => {
                        ticket.live = false;
                        return Poll::Ready(Err(error));
                    }
                    Ok(Attempt::Queued) => return Poll::Pending,
                    Ok(Attempt::Ask(cells)) => {
                        let shared = ticket.engine.shared().expect("only shared engines ask");
                        let decision = shared.store.decide(cells, ticket.engine.limits.catch_up);
                        *asking = Some(Box::pin(timeout(shared.options.timeout, decision)));
                    }
                    Ok(Attempt::WaitUntil(until)) => {
                        match sleep {
                            Some(timer) => {
                                if timer.deadline() != until {
                                    timer.as_mut().reset(until);
                                }
                            }
                            None => *sleep = Some(Box::pin(sleep_until(until))),
                        }
                        let timer = sleep.as_mut().expect("set above");
                        ready!(timer.as_mut().poll(cx));
                    }
                    Ok(Attempt::Granted(cells)) => {
                        ticket.live = false;
                        *this.feedback = Some(Feedback::new(ticket.engine.clone(), cells));
                        this.state.set(State::Ready);
                    }
                },
                StateProj::Ready => {
                    let CallProj::Unsent { svc, req } = this.call.as_mut().project() else {
                        unreachable!("a request is sent once, leaving Ready");
                    };
                    let inner = svc.as_mut().expect("polled after completion");
                    ready!(inner.poll_ready(cx)).map_err(Into::into)?;
                    let fut = inner.call(req.take().expect("polled after completion"));
                    this.call.set(Call::Sent { fut });
                    this.state.set(State::Calling);
                }
                StateProj::Calling => {
                    let CallProj::Sent { fut } = this.call.as_mut().project() else {
                        unreachable!("Calling follows the send");
                    };
                    let answer = ready!(fut.poll(cx));
                    let fb = this.feedback.take();
                    let response = answer.map_err(Into::into)?;
                    let settlement = fb.and_then(|fb| fb.answered(&response));
                    return Poll::Ready(Ok(response.map(|b| ResponseBody::new(b, settlement))));
                }
                StateProj::Failed { error } => {
                    return Poll::Ready(Err(error.take().expect("polled after completion")));
                }
            }
        }
    }
}

impl<S, B> fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
