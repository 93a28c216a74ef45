//! The REST listener: HTTP/1.1 connections with a header-read timeout, a limit on open
//! connections, and a graceful drain that answers every accepted request before returning.

use std::{pin::pin, sync::Arc, time::Duration};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{
    io::AsyncWriteExt,
    net::{TcpListener, TcpStream},
    sync::{watch, Semaphore},
};
use tracing::{debug, warn};

/// How the listener treats connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections open at once; one more is answered 503 and closed.
    pub max_connections: usize,
    /// Time a client may take to send a request's headers, idle keep-alive time included.
    pub header_read_timeout: Duration,
}

/// The answer to a connection over the limit. Written by hand because the connection is never
/// given to the HTTP server: refusing it must cost no more than accepting it.
const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: text/plain; charset=utf-8\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 47\r\n\
\r\n\
too many open connections; retry in one second\n";

/// Serves `app` on `listener` until `stop` turns true, then stops accepting, lets every open
/// connection finish the request it is serving, and returns once all are closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let http = Arc::new(http);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stopped(&mut stop) => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                warn!(error = %e, "accepting a REST connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tokio::spawn(refuse(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let http = Arc::clone(&http);
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let mut connection = pin!(http.serve_connection(TokioIo::new(stream), service));
            let outcome = tokio::select! {
                outcome = connection.as_mut() => outcome,
                () = stopped(&mut stop) => {
                    // Finish the request in progress, take no further one.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = outcome {
                debug!(error = %e, "REST connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    // Every connection holds a slot until it is closed: all slots back means all answered.
    let _ = slots.acquire_many(limits.max_connections as u32).await;
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: drop it here.
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Answers a connection over the limit with 503 and closes it, bounded in time.
async fn refuse(mut stream: TcpStream) {
    let write = async {
        stream.write_all(TOO_MANY_CONNECTIONS).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_a_complete_http_response() {
        let text = std::str::from_utf8(TOO_MANY_CONNECTIONS).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(body.len(), length);
        assert!(head.starts_with("HTTP/1.1 503 "));
    }
}
