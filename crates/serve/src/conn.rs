//! Connections: accepting under a cap, and the deadlines that keep a slow, stalled or
//! forgotten client from holding one.
//!
//! Every connection is in one of three phases, each with its own deadline:
//! - **head**: from accept, or from the first byte after a response, until the request's
//!   headers are complete; past [`ConnectionLimits::header_timeout`] the connection is closed
//!   (slowloris: headers sent a byte at a time).
//! - **busy**: a request is being answered; the handler reads the body within
//!   [`ConnectionLimits::body_timeout`] or answers 408 ([`crate::server`]).
//! - **idle**: between requests of a keep-alive connection; past
//!   [`ConnectionLimits::idle_timeout`] with no byte of a new request the connection is closed.
//!
//! At most [`ConnectionLimits::max_connections`] connections are served per listener; the
//! next one is not accepted until one closes, so it waits in the kernel's backlog while the
//! open ones are answered (the deadlines above make sure a slot frees up).
//!
//! # Caveats
//! A request pipelined behind another and read with it whose headers are still partial when
//! the first is answered counts as idle, so it is closed by the idle deadline, not the header
//! one.
//!
//! The hot path pays a relaxed atomic load per read, and a clock read and two atomic stores
//! per request: no allocation.

use crate::config::ConnectionLimits;
use axum::Router;
use axum::extract::Request;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

const HEAD: u8 = 0;
const BUSY: u8 = 1;
const IDLE: u8 = 2;

/// A connection's phase and since when (milliseconds after it was accepted).
struct Phase {
    accepted: Instant,
    phase: AtomicU8,
    since_ms: AtomicU64,
}

impl Phase {
    fn enter(&self, phase: u8) {
        self.since_ms
            .store(self.accepted.elapsed().as_millis() as u64, Relaxed);
        self.phase.store(phase, Relaxed);
    }

    /// When the current phase runs out (`None`: busy, no connection deadline).
    fn deadline(&self, limits: &ConnectionLimits) -> Option<Instant> {
        let limit = match self.phase.load(Relaxed) {
            HEAD => limits.header_timeout(),
            IDLE => limits.idle_timeout(),
            _ => return None,
        };
        let since = Duration::from_millis(self.since_ms.load(Relaxed));
        Some(self.accepted + since + limit)
    }
}

/// The socket, noting the first byte of a request that arrives on an idle connection.
struct Watched {
    io: TcpStream,
    phase: Arc<Phase>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before && self.phase.phase.load(Relaxed) == IDLE {
            self.phase.enter(HEAD);
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The router, marking the connection busy while a request is answered.
struct Tracked {
    router: Router,
    phase: Arc<Phase>,
}

impl hyper::service::Service<hyper::Request<Incoming>> for Tracked {
    type Response = Response;
    type Error = Infallible;
    type Future = Answering;

    fn call(&self, req: hyper::Request<Incoming>) -> Answering {
        self.phase.phase.store(BUSY, Relaxed);
        let mut router = self.router.clone();
        Answering {
            inner: tower_service::Service::<Request<Incoming>>::call(&mut router, req),
            idle: Idle(self.phase.clone()),
        }
    }
}

/// Back to idle when the answer is ready (or abandoned).
struct Idle(Arc<Phase>);

impl Drop for Idle {
    fn drop(&mut self) {
        self.0.enter(IDLE);
    }
}

pin_project_lite::pin_project! {
    /// The router's answer to one request.
    struct Answering {
        #[pin]
        inner: axum::routing::future::RouteFuture<Infallible>,
        idle: Idle,
    }
}

impl Future for Answering {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx)
    }
}

/// Serves `listener` until `stop` turns true, then waits for the open connections to finish
/// (each is asked to close after its current request).
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()> {
    let cap = limits.max_connections.max(1) as usize;
    let slots = Arc::new(Semaphore::new(cap));
    loop {
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => break,
            },
            _ = stop.wait_for(|s| *s) => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of file descriptors, most often: wait for some to close.
                tracing::warn!("accepting a connection failed: {e}");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(200)) => continue,
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            drive(stream, router, limits, stop).await;
            drop(slot);
        });
    }
    drop(listener);
    let _ = slots.acquire_many(cap as u32).await;
    Ok(())
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// One connection, until it ends, runs out of time, or the server stops.
async fn drive(
    stream: TcpStream,
    router: Router,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
) {
    let phase = Arc::new(Phase {
        accepted: Instant::now(),
        phase: AtomicU8::new(HEAD),
        since_ms: AtomicU64::new(0),
    });
    let io = TokioIo::new(Watched {
        io: stream,
        phase: phase.clone(),
    });
    let conn = hyper::server::conn::http1::Builder::new()
        // The phases above time headers and idleness; hyper's own header timer would also
        // run while a keep-alive connection is idle.
        .header_read_timeout(None)
        .serve_connection(
            io,
            Tracked {
                router,
                phase: phase.clone(),
            },
        );
    tokio::pin!(conn);
    // The phase changes without waking this task, so the timer also wakes at least every
    // `recheck` (the shorter deadline): a phase's deadline is then met exactly.
    let recheck = limits.header_timeout().min(limits.idle_timeout());
    let timer = tokio::time::sleep(recheck);
    tokio::pin!(timer);
    let mut stopping = false;
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = stop.wait_for(|s| *s), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            () = &mut timer => {
                let now = Instant::now();
                match phase.deadline(&limits) {
                    // Dropping the connection closes the socket.
                    Some(at) if at <= now => return,
                    Some(at) => timer.as_mut().reset(at.min(now + recheck).into()),
                    None => timer.as_mut().reset((now + recheck).into()),
                }
            }
        }
    }
}
