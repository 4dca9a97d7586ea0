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

/// Single-threaded runtimes, one per thread, that accepted connections are handed to in
/// turn (thread per core): a connection's task then never moves between threads, and no
/// thread wakes another to share its work, which costs a request more than its parsing.
pub(crate) struct Pool {
    workers: Vec<Worker>,
    next: std::sync::atomic::AtomicUsize,
}

struct Worker {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Pool {
    /// Starts `threads` runtimes.
    pub(crate) fn start(threads: usize) -> io::Result<Pool> {
        let mut workers = Vec::with_capacity(threads);
        for i in 0..threads {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let handle = rt.handle().clone();
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("mlctl-serve-{i}"))
                .spawn(move || {
                    // Until the pool stops; dropping the runtime here ends what is left.
                    let _ = rt.block_on(rx);
                })?;
            workers.push(Worker {
                handle,
                stop: Some(tx),
                thread: Some(thread),
            });
        }
        Ok(Pool {
            workers,
            next: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    fn next(&self) -> &tokio::runtime::Handle {
        let i = self.next.fetch_add(1, Relaxed) % self.workers.len();
        &self.workers[i].handle
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for w in &mut self.workers {
            if let Some(tx) = w.stop.take() {
                let _ = tx.send(());
            }
        }
        for w in &mut self.workers {
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// Serves `listener` until `stop` turns true, then waits for the open connections to finish
/// (each is asked to close after its current request). Connections are driven on `pool`'s
/// threads when there is one, else on the runtime this runs on.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
    pool: Option<Arc<Pool>>,
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
        match &pool {
            None => {
                tokio::spawn(async move {
                    drive(stream, router, limits, stop).await;
                    drop(slot);
                });
            }
            Some(pool) => {
                // Registered again with the reactor of the thread that drives it.
                let Ok(std) = stream.into_std() else { continue };
                pool.next().spawn(async move {
                    if let Ok(stream) = TcpStream::from_std(std) {
                        drive(stream, router, limits, stop).await;
                    }
                    drop(slot);
                });
            }
        }
    }
    drop(listener);
    let _ = slots.acquire_many(cap as u32).await;
    if let Some(pool) = pool {
        // Joining the threads blocks.
        let _ = tokio::task::spawn_blocking(move || drop(pool)).await;
    }
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

#[cfg(test)]
mod tests {
    use super::Pool;

    #[tokio::test]
    async fn connections_go_to_the_threads_in_turn_and_the_threads_end_with_the_pool() {
        let pool = Pool::start(2).unwrap();
        let name = |h: &tokio::runtime::Handle| {
            let h = h.clone();
            async move {
                h.spawn(async { std::thread::current().name().map(str::to_string) })
                    .await
                    .unwrap()
            }
        };
        let mut names = Vec::new();
        for _ in 0..4 {
            names.push(name(pool.next()).await);
        }
        let expect = |i: usize| Some(format!("mlctl-serve-{i}"));
        assert_eq!(names, [expect(0), expect(1), expect(0), expect(1)]);
        let handle = pool.next().clone();
        drop(pool);
        // Its runtime is gone: what is spawned there is cancelled, never run.
        let late = handle.spawn(async { 1 }).await;
        assert!(late.is_err_and(|e| e.is_cancelled()));
    }
}
