//! The multipart parser over a request body, fed one frame at a time.
//!
//! `multer` (what axum's `Multipart` wraps) reads every frame of the body that is ready into its
//! own buffer before it hands out a part's next chunk. A client on a fast link sends faster than
//! the server writes a file to disk and to the database, so the whole file ends up in that
//! buffer: 50 MB of memory for a 50 MB upload (measured by `benches/upload.rs`, where the body
//! is always ready). Fed through [`Paced`], the parser sees at most one frame per chunk asked
//! for, so what an upload holds in memory is a frame, not the file.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use futures_util::Stream;

use super::MAX_FILES;
use crate::server::error::ApiError;

/// A stream that answers `Pending` (and wakes its task at once) after each item, so a reader
/// that loops "while ready" stops after one item.
pub struct Paced<S> {
    inner: S,
    gave: bool,
}

impl<S: Stream + Unpin> Stream for Paced<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        if self.gave {
            self.gave = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let next = Pin::new(&mut self.inner).poll_next(cx);
        if matches!(next, Poll::Ready(Some(_))) {
            self.gave = true;
        }
        next
    }
}

/// An upload's parts, read from the body frame by frame.
pub type Parts = multer::Multipart<'static>;

/// A part of an upload.
pub type Part = multer::Field<'static>;

/// The parts of a `multipart/form-data` body; `max_file` bounds the whole body at
/// [`MAX_FILES`] files of that size (each file's own limit is checked as it arrives).
pub fn parts(headers: &HeaderMap, body: Body, max_file: u64) -> Result<Parts, ApiError> {
    let boundary = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| multer::parse_boundary(ct).ok())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "bad_multipart",
                "上传文件须以 multipart/form-data 发送，文件放在名为 file 的字段中。",
            )
        })?;
    let whole = max_file
        .saturating_mul(MAX_FILES as u64)
        .saturating_add(1 << 20);
    let limits =
        multer::Constraints::new().size_limit(multer::SizeLimit::new().whole_stream(whole));
    let stream = Paced {
        inner: body.into_data_stream(),
        gave: false,
    };
    Ok(multer::Multipart::with_constraints(
        stream, boundary, limits,
    ))
}

/// A body that cannot be read as multipart, in the API's terms.
pub fn refused(e: multer::Error) -> ApiError {
    let status = match e {
        multer::Error::StreamSizeExceeded { .. } | multer::Error::FieldSizeExceeded { .. } => {
            StatusCode::PAYLOAD_TOO_LARGE
        }
        _ => StatusCode::BAD_REQUEST,
    };
    ApiError::new(
        status,
        "bad_multipart",
        format!("上传内容无法读取（须为 multipart/form-data）：{e}"),
    )
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    #[tokio::test]
    async fn a_paced_stream_gives_every_item_in_order_with_a_pause_between() {
        let items = futures_util::stream::iter([1, 2, 3]);
        let mut paced = Paced {
            inner: items,
            gave: false,
        };
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert_eq!(paced.poll_next_unpin(&mut cx), Poll::Ready(Some(1)));
        assert_eq!(paced.poll_next_unpin(&mut cx), Poll::Pending);
        assert_eq!(paced.poll_next_unpin(&mut cx), Poll::Ready(Some(2)));
        let all: Vec<i32> = paced.collect().await;
        assert_eq!(all, vec![3]);
    }
}
