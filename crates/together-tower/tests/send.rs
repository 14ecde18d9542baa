//! The bare stack (no boxing) moves into a spawned task.

use http::{Request, Response};
use tower::{Layer, Service, ServiceExt, service_fn};

/// A client service whose future is named `Send`.
fn client() -> impl Service<
    Request<String>,
    Response = Response<String>,
    Error = tower::BoxError,
    Future = impl Send,
> + Clone
+ Send {
    service_fn(|_: Request<String>| async {
        Ok::<_, tower::BoxError>(Response::new(String::from("[]")))
    })
}

#[tokio::test]
async fn the_whole_stack_spawns_without_boxing() {
    let layers = together_tower::TogetherClient::builder()
        .api_key("k")
        .layers()
        .unwrap();
    let stack = layers.layer(client());
    let req = Request::get("/v1/models").body(String::new()).unwrap();
    let status = tokio::spawn(async move { stack.oneshot(req).await.map(|r| r.status()) })
        .await
        .unwrap()
        .unwrap();
    assert!(status.is_success());
}
