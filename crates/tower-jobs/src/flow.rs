//! What happens to a job request: wait for a slot, send, read, bind, release.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, Uri, header};
use http_body::Body;
use http_body_util::BodyExt;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tower_service::Service;

use crate::BoxError;
use crate::body::ResponseBody;
use crate::kind::Role;
use crate::state::{JobSlots, KindState};

pub(crate) async fn run<S, B, R>(
    shared: Arc<JobSlots>,
    k: usize,
    role: Role,
    mut svc: S,
    req: Request<B>,
) -> Result<Response<ResponseBody<R>>, BoxError>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Error: Into<BoxError>,
    B: Clone + Default,
    R: Body<Data = Bytes>,
    R::Error: Into<BoxError>,
{
    let kind = &shared.kinds[k];
    let path_id = match role {
        Role::Create => return create(&shared, k, svc, req).await,
        Role::Get(ref id) => id.clone(),
        _ => None,
    };
    let sent = Instant::now();
    let resp = send(&mut svc, req).await?;
    if !resp.status().is_success() {
        return Ok(resp.map(ResponseBody::inner));
    }
    let (parts, body) = resp.into_parts();
    let bytes = collect(body).await?;
    match role {
        Role::Get(_) => {
            if let Some(seen) = kind.spec.one(&bytes, path_id.as_deref()) {
                kind.observe(&[seen]);
            }
        }
        Role::List => match kind.spec.listed(&bytes) {
            Some(seen) => kind.reconcile(&seen, sent),
            None => tracing::warn!(kind = %kind.spec.kind.name, "list response has no job array"),
        },
        Role::Cancel(id) => {
            kind.release(&id, "cancelled");
        }
        Role::Create => unreachable!("handled above"),
    }
    Ok(Response::from_parts(parts, ResponseBody::buffered(bytes)))
}

/// The slot of a create in progress. Dropped with its permit: released if
/// no create was in flight, kept as an orphan if one was.
struct Slot {
    shared: Arc<JobSlots>,
    k: usize,
    permit: Option<OwnedSemaphorePermit>,
    in_flight: Option<Instant>,
}

impl Slot {
    fn kind(&self) -> &KindState {
        &self.shared.kinds[self.k]
    }

    fn release(&mut self, why: &'static str) {
        if self.permit.take().is_some() {
            tracing::debug!(kind = %self.kind().spec.kind.name, reason = why, "job slot released");
            self.kind().freed();
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Some(permit) = self.permit.take() else {
            return;
        };
        let Some(sent) = self.in_flight else {
            drop(permit);
            self.kind().freed();
            return;
        };
        let n = self.kind().orphan(permit, sent);
        if let Some(timeout) = self.shared.options.orphan_timeout
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let shared = self.shared.clone();
            let k = self.k;
            rt.spawn(async move {
                tokio::time::sleep(timeout).await;
                shared.kinds[k].drop_orphan(n);
            });
        }
    }
}

async fn create<S, B, R>(
    shared: &Arc<JobSlots>,
    k: usize,
    mut svc: S,
    req: Request<B>,
) -> Result<Response<ResponseBody<R>>, BoxError>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Error: Into<BoxError>,
    B: Clone + Default,
    R: Body<Data = Bytes>,
    R::Error: Into<BoxError>,
{
    let kind = &shared.kinds[k];
    let name = kind.spec.kind.name.as_str();
    let template = clone_request(&req);
    if shared.options.reconcile_on_start {
        let mut started = kind.started.lock().await;
        if !*started {
            match reconcile(kind, &mut svc, list_request(kind, &template)).await {
                Ok(()) => *started = true,
                Err(error) => tracing::warn!(kind = name, %error, "reconcile on start failed"),
            }
        }
    }
    let permit = kind.sem.clone().acquire_owned().await?;
    kind.show_in_use();
    tracing::debug!(
        kind = name,
        available = kind.sem.available_permits(),
        "job slot acquired"
    );
    let mut slot = Slot {
        shared: shared.clone(),
        k,
        permit: Some(permit),
        in_flight: None,
    };
    let deadline = Instant::now() + shared.options.max_conflict_wait;
    let mut first = Some(req);
    // Whether the server's jobs were listed since the last refusal.
    let mut polled = false;
    loop {
        let attempt = first.take().unwrap_or_else(|| clone_request(&template));
        slot.in_flight = Some(Instant::now());
        let resp = match send(&mut svc, attempt).await {
            Ok(resp) => resp,
            Err(error) => {
                slot.in_flight = None;
                slot.release("create failed");
                return Err(error);
            }
        };
        let status = resp.status();
        if status.is_success() {
            let (parts, body) = resp.into_parts();
            // A body error leaves the slot orphaned: the job may exist.
            let bytes = collect(body).await?;
            slot.in_flight = None;
            match kind.spec.created(&bytes) {
                Some(seen) => {
                    let permit = slot.permit.take().expect("held until bound");
                    kind.bind(seen.id.clone(), permit);
                    if seen
                        .status
                        .as_deref()
                        .is_some_and(|s| kind.spec.is_terminal(s))
                    {
                        kind.release(&seen.id, "terminal status");
                    }
                }
                None => {
                    tracing::warn!(kind = name, "no job id in the create response");
                    slot.release("no job id");
                }
            }
            return Ok(Response::from_parts(parts, ResponseBody::buffered(bytes)));
        }
        slot.in_flight = None;
        if status == kind.spec.kind.conflict && Instant::now() < deadline {
            tracing::info!(kind = name, %status, "server refused the create: its cap is reached; waiting");
            kind.metrics.absorbed();
            // Read the refusal to the end so the connection can be reused.
            let _ = collect(resp.into_body()).await;
            let released = kind.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            // Count what runs on the server (unless a poll just did).
            if !polled {
                try_reconcile(kind, &mut svc, list_request(kind, &template)).await;
            }
            let wait = shared
                .options
                .poll_interval
                .min(deadline.saturating_duration_since(Instant::now()));
            polled = tokio::select! {
                _ = released => false,
                _ = tokio::time::sleep(wait) => true,
            };
            // Nothing freed here: poll the server before trying again.
            if polled {
                try_reconcile(kind, &mut svc, list_request(kind, &template)).await;
            }
            continue;
        }
        if status == kind.spec.kind.conflict {
            tracing::info!(kind = name, %status, "server refused the create; conflict wait is over");
        }
        slot.release("create failed");
        return Ok(resp.map(ResponseBody::inner));
    }
}

/// [`reconcile`] if the kind has a list route; failures are logged.
async fn try_reconcile<S, B, R>(kind: &KindState, svc: &mut S, list: Request<B>)
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Error: Into<BoxError>,
    B: Default,
    R: Body<Data = Bytes>,
    R::Error: Into<BoxError>,
{
    if kind.spec.list.is_none() {
        return;
    }
    if let Err(error) = reconcile(kind, svc, list).await {
        tracing::warn!(kind = %kind.spec.kind.name, %error, "reconcile after a conflict failed");
    }
}

/// Lists the server's jobs of `kind` and counts them.
async fn reconcile<S, B, R>(kind: &KindState, svc: &mut S, list: Request<B>) -> Result<(), BoxError>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Error: Into<BoxError>,
    R: Body<Data = Bytes>,
    R::Error: Into<BoxError>,
{
    let sent = Instant::now();
    let resp = send(svc, list).await?;
    let status = resp.status();
    let bytes = collect(resp.into_body()).await?;
    if !status.is_success() {
        return Err(format!("listing jobs answered {status}").into());
    }
    let seen = kind
        .spec
        .listed(&bytes)
        .ok_or("the list response has no job array at the configured pointer")?;
    kind.reconcile(&seen, sent);
    Ok(())
}

/// `GET` the kind's list route on the create request's scheme and
/// authority, with its headers (authorization...).
fn list_request<B: Default>(kind: &KindState, create: &Request<B>) -> Request<B> {
    let path = kind
        .spec
        .list
        .as_ref()
        .map_or_else(String::new, |(p, _)| p.to_string());
    let mut uri = Uri::builder();
    if let Some(scheme) = create.uri().scheme() {
        uri = uri.scheme(scheme.clone());
    }
    if let Some(authority) = create.uri().authority() {
        uri = uri.authority(authority.clone());
    }
    let mut req = Request::new(B::default());
    *req.uri_mut() = uri.path_and_query(path).build().unwrap_or_default();
    *req.version_mut() = create.version();
    *req.headers_mut() = create.headers().clone();
    for h in [
        header::CONTENT_TYPE,
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
    ] {
        req.headers_mut().remove(h);
    }
    req
}

/// Method, URI, version, headers, extensions and body.
fn clone_request<B: Clone>(req: &Request<B>) -> Request<B> {
    let mut out = Request::new(req.body().clone());
    *out.method_mut() = req.method().clone();
    *out.uri_mut() = req.uri().clone();
    *out.version_mut() = req.version();
    *out.headers_mut() = req.headers().clone();
    // The caller's extensions (a retry counter, a trace context) ride along.
    *out.extensions_mut() = req.extensions().clone();
    out
}

async fn send<S, B, R>(svc: &mut S, req: Request<B>) -> Result<Response<R>, BoxError>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Error: Into<BoxError>,
{
    std::future::poll_fn(|cx| svc.poll_ready(cx))
        .await
        .map_err(Into::into)?;
    svc.call(req).await.map_err(Into::into)
}

async fn collect<R>(body: R) -> Result<Bytes, BoxError>
where
    R: Body<Data = Bytes>,
    R::Error: Into<BoxError>,
{
    Ok(body.collect().await.map_err(Into::into)?.to_bytes())
}
