//! One connection, from its first byte to its close, with a deadline in every phase: the first
//! bytes that say which protocol it speaks (a client that connects and sends nothing, or half of
//! the HTTP/2 preface, is closed), a request's headers (hyper's HTTP/1 timer), the first request of
//! an HTTP/2 connection, and idleness between requests. A request in flight (its response still
//! streaming) is never cut; shutdown asks the connection to finish and close.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::server::graceful::GracefulConnection;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// The HTTP/2 connection preface (RFC 9113, section 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the first bytes say, once they say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    Http1,
    Http2,
}

/// Pure: the protocol `first` bytes announce, or `None` while they are still a prefix of the
/// HTTP/2 preface (more bytes are needed).
pub fn classify(first: &[u8]) -> Option<Sniffed> {
    let n = first.len().min(H2_PREFACE.len());
    if first[..n] != H2_PREFACE[..n] {
        Some(Sniffed::Http1)
    } else if n == H2_PREFACE.len() {
        Some(Sniffed::Http2)
    } else {
        None
    }
}

/// Why a connection closed before it was served.
#[derive(Debug)]
pub enum SniffError {
    /// Nothing (or not enough to tell the protocol) arrived in time.
    TimedOut,
    /// The client closed first.
    Closed,
    Io(io::Error),
}

/// Reads until the protocol is known, within `deadline`; the bytes read are handed back to be
/// read again by the server.
pub async fn sniff<T: AsyncRead + Unpin>(
    io: T,
    deadline: Duration,
) -> Result<(Sniffed, Rewind<T>), SniffError> {
    let mut io = io;
    let mut first = Vec::with_capacity(H2_PREFACE.len());
    let reading = async {
        loop {
            let mut chunk = [0u8; 24];
            let want = H2_PREFACE.len() - first.len();
            let n = io
                .read(&mut chunk[..want.max(1)])
                .await
                .map_err(SniffError::Io)?;
            if n == 0 {
                return Err(SniffError::Closed);
            }
            first.extend_from_slice(&chunk[..n]);
            if let Some(protocol) = classify(&first) {
                return Ok(protocol);
            }
        }
    };
    let protocol = tokio::time::timeout(deadline, reading)
        .await
        .map_err(|_| SniffError::TimedOut)??;
    Ok((
        protocol,
        Rewind {
            first,
            at: 0,
            inner: io,
        },
    ))
}

/// A stream whose first bytes, already read, are read again.
pub struct Rewind<T> {
    first: Vec<u8>,
    at: usize,
    inner: T,
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewind<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.at < this.first.len() {
            let n = (this.first.len() - this.at).min(buf.remaining());
            buf.put_slice(&this.first[this.at..this.at + n]);
            this.at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Rewind<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Requests of one connection: how many are in flight (a response still streaming counts) and
/// when the last one ended.
#[derive(Default)]
pub struct Requests {
    in_flight: AtomicUsize,
    started: AtomicUsize,
    last_ended: Mutex<Option<Instant>>,
}

impl Requests {
    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.started.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// When the connection turns idle, if it is idle: `opened` when no request came yet.
    fn idle_since(&self, opened: Instant) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let ended = *self
            .last_ended
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Some(ended.unwrap_or(opened))
    }

    fn any_started(&self) -> bool {
        self.started.load(Ordering::Acquire) > 0
    }
}

/// One request in flight; dropped when its response ended (or was abandoned).
pub struct InFlight(Arc<Requests>);

impl Drop for InFlight {
    fn drop(&mut self) {
        *self
            .0
            .last_ended
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A service whose requests are counted in flight until their response body is done.
#[derive(Clone)]
pub struct Counted<S> {
    pub inner: S,
    pub requests: Arc<Requests>,
}

impl<S, B> hyper::service::Service<http::Request<Incoming>> for Counted<S>
where
    S: hyper::service::Service<http::Request<Incoming>, Response = http::Response<B>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<CountedBody<B>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn call(&self, request: http::Request<Incoming>) -> Self::Future {
        let in_flight = self.requests.begin();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            Ok(response.map(|body| CountedBody {
                body,
                _in_flight: in_flight,
            }))
        })
    }
}

/// A response body that keeps its request in flight until it is sent or dropped.
pub struct CountedBody<B> {
    body: B,
    _in_flight: InFlight,
}

impl<B: Body + Unpin> Body for CountedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// How a served connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The client closed it, or it finished after being asked to.
    Done,
    /// Closed for idleness: no first request within `first_request`, or none since `idle`.
    Idle,
}

/// Drives `connection` until it ends. With no request in flight, it is asked to close once it
/// has been idle for `idle` (for `first_request` before its first request); when `stop` turns
/// true, it is asked to finish what is in flight and close.
pub async fn drive<C>(
    connection: C,
    requests: Arc<Requests>,
    first_request: Duration,
    idle: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> (Ended, Result<(), C::Error>)
where
    C: GracefulConnection,
{
    let opened = Instant::now();
    let mut connection = std::pin::pin!(connection);
    let mut ended = Ended::Done;
    let mut asked = false;
    // An idle connection asked to close has this long to do it: an HTTP/2 client that never
    // answers the GOAWAY's ping would otherwise keep it open.
    let mut cut_at: Option<Instant> = None;
    loop {
        let limit = if requests.any_started() {
            idle
        } else {
            first_request
        };
        // Checked again at least this often while a request is in flight.
        let next = match requests.idle_since(opened) {
            Some(since) => since + limit,
            None => Instant::now() + limit,
        };
        tokio::select! {
            result = connection.as_mut() => return (ended, result),
            _ = tokio::time::sleep_until(cut_at.unwrap_or(next)), if cut_at.is_some() => {
                return (ended, Ok(()));
            }
            _ = stop.wait_for(|s| *s), if !asked => {
                connection.as_mut().graceful_shutdown();
                asked = true;
            }
            _ = tokio::time::sleep_until(next), if !asked => {
                if let Some(since) = requests.idle_since(opened) {
                    if since.elapsed() >= limit {
                        connection.as_mut().graceful_shutdown();
                        asked = true;
                        ended = Ended::Idle;
                        cut_at = Some(Instant::now() + first_request);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preface_decides_only_once_it_is_whole_or_broken() {
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Some(Sniffed::Http1));
        assert_eq!(classify(b"P"), None);
        assert_eq!(classify(b"PRI * HTTP/2.0"), None, "half a preface waits");
        assert_eq!(classify(b"POST /v1"), Some(Sniffed::Http1));
        assert_eq!(classify(H2_PREFACE), Some(Sniffed::Http2));
    }

    #[tokio::test]
    async fn the_sniffed_bytes_are_read_again_and_silence_times_out() {
        let (mut client, server) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut client, b"GET / HTTP/1.1\r\n")
            .await
            .unwrap();
        let (protocol, mut rewound) = sniff(server, Duration::from_secs(1)).await.unwrap();
        assert_eq!(protocol, Sniffed::Http1);
        let mut again = [0u8; 16];
        rewound.read_exact(&mut again).await.unwrap();
        assert_eq!(&again, b"GET / HTTP/1.1\r\n");

        let (mut half, server) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut half, b"PRI * HTTP/2.0")
            .await
            .unwrap();
        assert!(matches!(
            sniff(server, Duration::from_millis(50)).await,
            Err(SniffError::TimedOut)
        ));
    }
}
