//! The same render with tiles returned through Unix sockets, for
//! comparison with the pool: worker processes (this program started again
//! with [`WORKER_VAR`] set), each connected to the master by a socketpair
//! that is its standard input and output. The master keeps two tiles in
//! flight per worker, handing out the next as each comes back, as the
//! pool does.
//!
//! Request: a `u32` tile index and the [`Tile`]. Reply: a header (the
//! index, the length, the nanoseconds the worker spent computing) and the
//! tile's pixels. A worker says one byte when it is ready, and exits when
//! its socket closes.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytemuck::{Pod, Zeroable};

use super::render::{Render, Tile, View, place, tile_pixels};

/// Set (to `fractal`) in a socket worker's environment.
pub const WORKER_VAR: &str = "POLYCEPHALY_SOCKET_WORKER";

/// What a worker sends before a tile's pixels.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct ReplyHeader {
    index: u32,
    len: u32,
    busy_ns: u64,
}

/// Tiles in flight per worker.
const DEPTH: usize = 2;

/// In a socket worker, serves tiles until the socket closes and exits;
/// elsewhere returns at once. Called by `main` right after the pool's
/// `serve`.
pub fn serve_worker() {
    if std::env::var_os(WORKER_VAR).is_none() {
        return;
    }
    let code = match work() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("polycephaly socket worker: {e}");
            1
        }
    };
    std::process::exit(code);
}

fn work() -> std::io::Result<()> {
    let mut sock = UnixStream::from(std::io::stdin().as_fd().try_clone_to_owned()?);
    sock.write_all(b"R")?;
    let mut request = [0u8; 4 + size_of::<Tile>()];
    loop {
        match sock.read_exact(&mut request) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let index: u32 = bytemuck::pod_read_unaligned(&request[..4]);
        let tile: Tile = bytemuck::pod_read_unaligned(&request[4..]);
        let start = Instant::now();
        let pixels = tile_pixels(tile);
        let header = ReplyHeader {
            index,
            len: u32::try_from(pixels.len()).map_err(std::io::Error::other)?,
            busy_ns: u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX),
        };
        sock.write_all(bytemuck::bytes_of(&header))?;
        sock.write_all(&pixels)?;
    }
}

/// Socket workers, started and ready.
#[derive(Debug)]
pub struct Workers {
    children: Vec<(Child, UnixStream)>,
    /// How long starting them took (until each said it was ready).
    pub started_in: Duration,
}

impl Workers {
    /// Starts `n` workers and waits until each is ready.
    ///
    /// # Errors
    /// A worker that could not be started or did not say it was ready.
    pub fn start(n: usize) -> std::io::Result<Self> {
        let start = Instant::now();
        let mut workers = Workers {
            children: Vec::with_capacity(n),
            started_in: Duration::ZERO,
        };
        for _ in 0..n {
            let (ours, theirs) = UnixStream::pair()?;
            let child = Command::new("/proc/self/exe")
                .env(WORKER_VAR, "fractal")
                .stdin(Stdio::from(OwnedFd::from(theirs.try_clone()?)))
                .stdout(Stdio::from(OwnedFd::from(theirs)))
                .spawn()?;
            workers.children.push((child, ours));
        }
        for (_, sock) in &mut workers.children {
            let mut ready = [0u8; 1];
            sock.read_exact(&mut ready)?;
        }
        workers.started_in = start.elapsed();
        Ok(workers)
    }

    /// Renders `view` in tiles of `tile_rows` rows; `tick` is called after
    /// each tile.
    ///
    /// # Errors
    /// A socket error, or a reply that does not add up.
    pub fn render(
        &mut self,
        view: &View,
        tile_rows: u32,
        tick: &(dyn Fn() + Sync),
    ) -> Result<Render, String> {
        let start = Instant::now();
        let tiles = view.tiles(tile_rows);
        let next = Mutex::new(0usize);
        let image = Mutex::new(vec![0u8; view.image_bytes()]);
        let results: Vec<Result<(Duration, u64), String>> = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .children
                .iter_mut()
                .map(|(_, sock)| {
                    let (tiles, next, image) = (&tiles, &next, &image);
                    s.spawn(move || drive(sock, tiles, next, image, tick))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("a socket thread panicked".into()))
                })
                .collect()
        });
        let (mut busy, mut bytes) = (Duration::ZERO, 0);
        for r in results {
            let (b, n) = r?;
            busy += b;
            bytes += n;
        }
        Ok(Render {
            pixels: image.into_inner().unwrap_or_else(|e| e.into_inner()),
            elapsed: start.elapsed(),
            busy,
            tiles: tiles.len(),
            bytes_in_arena: 0,
            bytes_in_transit: bytes,
        })
    }
}

/// One worker's share: keeps [`DEPTH`] tiles in flight, takes the next
/// from `next` as each comes back. Returns the worker's busy time and the
/// bytes through its socket.
fn drive(
    sock: &mut UnixStream,
    tiles: &[Tile],
    next: &Mutex<usize>,
    image: &Mutex<Vec<u8>>,
    tick: &(dyn Fn() + Sync),
) -> Result<(Duration, u64), String> {
    let take = || {
        let mut n = next.lock().unwrap_or_else(|e| e.into_inner());
        let i = *n;
        *n += 1;
        (i < tiles.len()).then_some(i)
    };
    let io = |e: std::io::Error| format!("socket worker: {e}");
    let (mut busy, mut bytes, mut in_flight) = (Duration::ZERO, 0u64, 0usize);
    let mut send = |sock: &mut UnixStream, i: usize| -> Result<(), String> {
        let mut request = Vec::with_capacity(4 + size_of::<Tile>());
        request.extend_from_slice(&(i as u32).to_ne_bytes());
        request.extend_from_slice(bytemuck::bytes_of(&tiles[i]));
        bytes += request.len() as u64;
        sock.write_all(&request).map_err(io)
    };
    while in_flight < DEPTH {
        let Some(i) = take() else { break };
        send(sock, i)?;
        in_flight += 1;
    }
    let mut pixels = Vec::new();
    let mut received = 0u64;
    while in_flight > 0 {
        let mut head = [0u8; size_of::<ReplyHeader>()];
        sock.read_exact(&mut head).map_err(io)?;
        let head: ReplyHeader = bytemuck::pod_read_unaligned(&head);
        pixels.resize(head.len as usize, 0);
        sock.read_exact(&mut pixels).map_err(io)?;
        received += (size_of::<ReplyHeader>() + pixels.len()) as u64;
        busy += Duration::from_nanos(head.busy_ns);
        let tile = tiles
            .get(head.index as usize)
            .ok_or_else(|| format!("socket worker answered tile {}", head.index))?;
        place(
            &mut image.lock().unwrap_or_else(|e| e.into_inner()),
            tile,
            &pixels,
        )?;
        tick();
        in_flight -= 1;
        if let Some(i) = take() {
            send(sock, i)?;
            in_flight += 1;
        }
    }
    Ok((busy, bytes + received))
}

impl Drop for Workers {
    fn drop(&mut self) {
        // Closing the sockets ends the workers; reap them. A worker that
        // is somehow still there after a second is killed (ours, by its
        // handle).
        let children: Vec<Child> = self.children.drain(..).map(|(c, _)| c).collect();
        let deadline = Instant::now() + Duration::from_secs(1);
        for mut child in children {
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Ok(None) => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
    }
}
