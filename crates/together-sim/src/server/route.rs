//! Which endpoint a request is for.

use http::Method;

use crate::config::{CHAT, COMPLETIONS, EMBEDDINGS, IMAGES};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route<'a> {
    Chat,
    Completions,
    Embeddings,
    Images,
    Models,
    FineTunes(bool),
    FineTune(&'a str),
    FineTuneCancel(&'a str),
    Files(bool),
    File(&'a str),
    FileContent(&'a str),
    Batches(bool),
    Batch(&'a str),
    BatchCancel(&'a str),
    Stats,
}

impl<'a> Route<'a> {
    pub(super) fn parse(method: &Method, path: &'a str) -> Option<Self> {
        let post = method == Method::POST;
        let get = method == Method::GET;
        let path = path.trim_end_matches('/');
        let segs: Vec<&str> = path.split('/').skip(1).collect();
        Some(match (segs.as_slice(), post, get) {
            (["v1", "chat", "completions"], true, _) => Route::Chat,
            (["v1", "completions"], true, _) => Route::Completions,
            (["v1", "embeddings"], true, _) => Route::Embeddings,
            (["v1", "images", "generations"], true, _) => Route::Images,
            (["v1", "models"], _, true) => Route::Models,
            (["v1", "fine-tunes"], p, g) if p || g => Route::FineTunes(p),
            (["v1", "fine-tunes", id], _, true) => Route::FineTune(id),
            (["v1", "fine-tunes", id, "cancel"], true, _) => Route::FineTuneCancel(id),
            (["v1", "files"], p, g) if p || g => Route::Files(p),
            (["v1", "files", id], _, true) => Route::File(id),
            (["v1", "files", id, "content"], _, true) => Route::FileContent(id),
            (["v1", "batches"], p, g) if p || g => Route::Batches(p),
            (["v1", "batches", id], _, true) => Route::Batch(id),
            (["v1", "batches", id, "cancel"], true, _) => Route::BatchCancel(id),
            (["sim", "stats"], _, true) => Route::Stats,
            _ => return None,
        })
    }

    pub(super) fn pattern(self) -> &'static str {
        match self {
            Route::Chat => CHAT,
            Route::Completions => COMPLETIONS,
            Route::Embeddings => EMBEDDINGS,
            Route::Images => IMAGES,
            Route::Models => "/v1/models",
            Route::FineTunes(_) => "/v1/fine-tunes",
            Route::FineTune(_) => "/v1/fine-tunes/{id}",
            Route::FineTuneCancel(_) => "/v1/fine-tunes/{id}/cancel",
            Route::Files(_) => "/v1/files",
            Route::File(_) => "/v1/files/{id}",
            Route::FileContent(_) => "/v1/files/{id}/content",
            Route::Batches(_) => "/v1/batches",
            Route::Batch(_) => "/v1/batches/{id}",
            Route::BatchCancel(_) => "/v1/batches/{id}/cancel",
            Route::Stats => "/sim/stats",
        }
    }

    pub(super) fn inference(self) -> bool {
        matches!(
            self,
            Route::Chat | Route::Completions | Route::Embeddings | Route::Images
        )
    }

    pub(super) fn takes_json(self) -> bool {
        matches!(
            self,
            Route::FineTunes(true) | Route::Files(true) | Route::Batches(true)
        ) || self.inference()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            Route::parse(&Method::GET, "/v1/fine-tunes/ft-1"),
            Some(Route::FineTune("ft-1"))
        );
        assert_eq!(Route::parse(&Method::GET, "/v1/chat/completions"), None);
        assert_eq!(
            Route::parse(&Method::POST, "/v1/batches"),
            Some(Route::Batches(true))
        );
    }
}
