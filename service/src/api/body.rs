//! Reading request bodies of the embedding routes: at most `limits.max_body_bytes` (else 413)
//! within `server.body_read_timeout_seconds` (else 408), so that neither a huge body nor a
//! client trickling one byte at a time can hold a connection and memory.

use std::time::Duration;

use axum::{
    body::{Body, BodyDataStream, Bytes},
    extract::{Request, State},
    http::{header, StatusCode},
    middleware::Next,
    response::Response,
};
use tokio_stream::StreamExt;

use super::{error::client_error, AppState};
use crate::failure::FailureKind;

/// Why a body was not read.
enum Unread {
    TooLarge,
    TooSlow,
    Broken(String),
}

/// Middleware: buffers the request body under the size and time limits, then hands the
/// buffered request on.
pub async fn read_body(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limit = state.infer.limits().max_body_bytes;
    let timeout = state.body_timeout;
    let path = request.uri().path().to_string();
    // A declared length over the limit is refused before a byte of the body is read.
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let (parts, body) = request.into_parts();
    let mut stream = body.into_data_stream();
    let read = if declared.is_some_and(|n| n > limit as u64) {
        Err(Unread::TooLarge)
    } else {
        read_limited(&mut stream, limit, timeout).await
    };
    match read {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(Unread::TooLarge) => {
            linger(stream, timeout);
            state.count_error(FailureKind::PayloadTooLarge);
            client_error(
                &path,
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("Failed to buffer the request body: length limit exceeded ({limit} bytes)"),
                "payload_too_large",
            )
        }
        Err(Unread::TooSlow) => {
            state.count_error(FailureKind::Timeout);
            client_error(
                &path,
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body was not received within {} s",
                    timeout.as_secs()
                ),
                "request_timeout",
            )
        }
        Err(Unread::Broken(reason)) => {
            state.count_error(FailureKind::BadRequest);
            client_error(
                &path,
                StatusCode::BAD_REQUEST,
                format!("Failed to buffer the request body: {reason}"),
                "invalid_body",
            )
        }
    }
}

/// Bytes of a refused body still read (and dropped) after the 413, so that a client that
/// sends its whole body before reading the answer gets the 413 instead of a reset connection.
const LINGER_BYTES: usize = 64 * 1024 * 1024;

/// Reads and drops the rest of a refused body in the background, for at most `timeout` and
/// [`LINGER_BYTES`]; past either the connection is closed.
fn linger(mut stream: BodyDataStream, timeout: Duration) {
    tokio::spawn(async move {
        let drain = async {
            let mut drained = 0;
            while let Some(Ok(chunk)) = stream.next().await {
                drained += chunk.len();
                if drained > LINGER_BYTES {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(timeout, drain).await;
    });
}

async fn read_limited(
    stream: &mut BodyDataStream,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, Unread> {
    let read = async {
        let mut buffer = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| Unread::Broken(e.to_string()))?;
            if buffer.len() + chunk.len() > limit {
                return Err(Unread::TooLarge);
            }
            buffer.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(buffer))
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| Unread::TooSlow)?
}
