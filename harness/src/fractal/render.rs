//! The Mandelbrot image itself: a view, tiles (bands of full rows), the
//! pixels of a tile with a smooth colour map, and the three ways of
//! rendering a whole image (one process, the pool, socket workers) that
//! must give the same bytes.

use std::time::{Duration, Instant};

use bytemuck::{Pod, Zeroable};
use polycephaly::pool::{Pool, PoolError, Task};

/// Bytes per pixel: RGB, 8 bits each.
pub const BYTES_PER_PIXEL: usize = 3;

/// The most pixels an image may have (300 MB of RGB).
pub const MAX_PIXELS: u64 = 100_000_000;

/// What to draw: the part of the complex plane, the image's size and the
/// iteration limit. `zoom` 1 shows a width of 3 (the whole set).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct View {
    /// Real part of the image's centre.
    pub center_x: f64,
    /// Imaginary part of the image's centre.
    pub center_y: f64,
    /// Magnification: the image is `3 / zoom` wide in the complex plane.
    pub zoom: f64,
    /// Pixels per row.
    pub width: u32,
    /// Rows.
    pub height: u32,
    /// Iterations before a point is taken to be in the set.
    pub max_iter: u32,
    /// Zero (keeps the struct free of padding, as `Pod` requires).
    pub _pad: u32,
}

impl View {
    /// The default view of `polycephaly fractal`: spirals in the seahorse
    /// valley.
    pub const DEFAULT: View = View {
        center_x: -0.743_643_887_037_151,
        center_y: 0.131_825_904_205_33,
        zoom: 60_000.0,
        width: 1920,
        height: 1200,
        max_iter: 4000,
        _pad: 0,
    };

    /// Bytes of one row of pixels.
    pub fn row_bytes(&self) -> usize {
        self.width as usize * BYTES_PER_PIXEL
    }

    /// Bytes of the whole image.
    pub fn image_bytes(&self) -> usize {
        self.row_bytes() * self.height as usize
    }

    /// The tiles of this view, `rows` rows each (the last may have fewer).
    pub fn tiles(&self, rows: u32) -> Vec<Tile> {
        let rows = rows.max(1);
        (0..self.height)
            .step_by(rows as usize)
            .map(|row0| Tile {
                view: *self,
                row0,
                rows: rows.min(self.height - row0),
            })
            .collect()
    }
}

/// A band of full rows of a view: what a drone computes at a time.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct Tile {
    /// The image it is part of.
    pub view: View,
    /// Its first row.
    pub row0: u32,
    /// Its rows.
    pub rows: u32,
}

/// The pool's task: a tile's pixels, row after row, RGB.
pub static TILE: Task<Tile, Vec<u8>> = Task::new_vec("fractal_tile", tile_pixels);

/// The RGB pixels of `tile`, row after row. Every way of rendering calls
/// this, so their images are equal byte for byte.
pub fn tile_pixels(tile: Tile) -> Vec<u8> {
    let v = tile.view;
    let mut out = Vec::with_capacity(v.row_bytes() * tile.rows as usize);
    // Complex units per pixel.
    let scale = 3.0 / (v.zoom * f64::from(v.width));
    let half_w = f64::from(v.width) / 2.0;
    let half_h = f64::from(v.height) / 2.0;
    for y in tile.row0..tile.row0.saturating_add(tile.rows).min(v.height) {
        let ci = v.center_y - (f64::from(y) + 0.5 - half_h) * scale;
        for x in 0..v.width {
            let cr = v.center_x + (f64::from(x) + 0.5 - half_w) * scale;
            out.extend_from_slice(&colour(escape(cr, ci, v.max_iter)));
        }
    }
    out
}

/// `|z|²` past which a point has escaped: large, so that the smooth
/// count is smooth.
const BAILOUT: f64 = 256.0 * 256.0;

/// The smooth escape count of `c = cr + ci·i` (`n + 1 - log2(ln |z|)`),
/// or `None` for a point taken to be in the set.
fn escape(cr: f64, ci: f64, max_iter: u32) -> Option<f64> {
    // The main cardioid and the period-2 bulb are in the set: skip the
    // iterations there.
    let x = cr - 0.25;
    let q = x * x + ci * ci;
    if q * (q + x) <= 0.25 * ci * ci || (cr + 1.0) * (cr + 1.0) + ci * ci <= 0.0625 {
        return None;
    }
    let (mut zr, mut zi) = (0.0f64, 0.0f64);
    for n in 0..max_iter {
        let (zr2, zi2) = (zr * zr, zi * zi);
        if zr2 + zi2 > BAILOUT {
            let log_modulus = 0.5 * (zr2 + zi2).ln();
            return Some(f64::from(n) + 1.0 - log_modulus.log2());
        }
        zi = 2.0 * zr * zi + ci;
        zr = zr2 - zi2 + cr;
    }
    None
}

/// The gradient: deep blue, light blue, white, orange, near black, and
/// round again.
const STOPS: [(f64, [f64; 3]); 6] = [
    (0.0, [0.0, 7.0, 100.0]),
    (0.16, [32.0, 107.0, 203.0]),
    (0.42, [237.0, 255.0, 255.0]),
    (0.6425, [255.0, 170.0, 0.0]),
    (0.8575, [0.0, 2.0, 0.0]),
    (1.0, [0.0, 7.0, 100.0]),
];

/// A pixel's colour from its smooth escape count; black inside the set.
/// The gradient repeats along the square root of the count, so that
/// colours change quickly near the set's edge and slowly far from it.
fn colour(smooth: Option<f64>) -> [u8; 3] {
    let Some(s) = smooth else {
        return [0, 0, 0];
    };
    let t = (s.max(0.0).sqrt() * 0.23).fract();
    let i = STOPS
        .iter()
        .position(|&(at, _)| at > t)
        .unwrap_or(STOPS.len() - 1);
    let ((t0, c0), (t1, c1)) = (STOPS[i.saturating_sub(1)], STOPS[i]);
    let f = if t1 > t0 { (t - t0) / (t1 - t0) } else { 0.0 };
    // `as u8` saturates; the values are in 0..=255 anyway.
    core::array::from_fn(|k| (c0[k] + (c1[k] - c0[k]) * f).round() as u8)
}

/// A rendered image and what it cost.
#[derive(Debug, Clone)]
pub struct Render {
    /// RGB pixels, row after row.
    pub pixels: Vec<u8>,
    /// Wall time of the render (workers already started).
    pub elapsed: Duration,
    /// Time the workers spent computing pixels, summed over workers.
    pub busy: Duration,
    /// Tiles handed out.
    pub tiles: usize,
    /// Bytes of pixels that came back through arena lanes (pool only).
    pub bytes_in_arena: u64,
    /// Bytes of task and result frames through rings (pool), or of
    /// requests and replies through sockets.
    pub bytes_in_transit: u64,
}

/// Copies a tile's pixels into their place in `image`.
///
/// # Errors
/// A tile whose pixels do not fill its rows exactly (a worker's bug).
pub fn place(image: &mut [u8], tile: &Tile, pixels: &[u8]) -> Result<(), String> {
    let at = tile.row0 as usize * tile.view.row_bytes();
    let len = tile.rows as usize * tile.view.row_bytes();
    match image.get_mut(at..at + len) {
        Some(dst) if pixels.len() == len => {
            dst.copy_from_slice(pixels);
            Ok(())
        }
        _ => Err(format!(
            "tile at row {} came back with {} bytes, not {len}",
            tile.row0,
            pixels.len()
        )),
    }
}

/// The image in this process alone, tile after tile; `tick` is called
/// after each tile.
pub fn render_single(view: &View, tile_rows: u32, mut tick: impl FnMut()) -> Render {
    let start = Instant::now();
    let tiles = view.tiles(tile_rows);
    let mut pixels = Vec::with_capacity(view.image_bytes());
    for tile in &tiles {
        pixels.extend_from_slice(&tile_pixels(*tile));
        tick();
    }
    let elapsed = start.elapsed();
    Render {
        pixels,
        elapsed,
        busy: elapsed,
        tiles: tiles.len(),
        bytes_in_arena: 0,
        bytes_in_transit: 0,
    }
}

/// The image by the pool's drones: the tiles are streamed (each drone is
/// handed the next tile when it has room), the pixels come back as the
/// drones finish them (through their arena lanes when a tile exceeds the
/// pool's inline limit, see [`arena_tile_rows`]) and are placed into the
/// image. `tick` is called after each tile.
///
/// # Errors
/// A pool error, or a tile that came back with the wrong size.
pub fn render_pool(
    pool: &Pool,
    view: &View,
    tile_rows: u32,
    mut tick: impl FnMut(),
) -> Result<Render, String> {
    let before = pool.stats();
    let start = Instant::now();
    let tiles = view.tiles(tile_rows);
    let mut image = vec![0u8; view.image_bytes()];
    let stream = pool
        .stream(&TILE, tiles.iter().copied())
        .map_err(|e: PoolError| e.to_string())?;
    for result in stream {
        let (index, pixels) = result.map_err(|e| e.to_string())?;
        place(&mut image, &tiles[index], &pixels)?;
        tick();
    }
    let elapsed = start.elapsed();
    let after = pool.stats();
    Ok(Render {
        pixels: image,
        elapsed,
        busy: after.busy.saturating_sub(before.busy),
        tiles: tiles.len(),
        bytes_in_arena: after.bytes_in_arena - before.bytes_in_arena,
        bytes_in_transit: after.bytes_in_rings - before.bytes_in_rings,
    })
}

/// The task ring length the fractal's pool is built with
/// ([`PoolBuilder::ring_len`](polycephaly::pool::PoolBuilder::ring_len)).
pub const RING_LEN: usize = 256 << 10;

/// The fewest rows whose pixels exceed a quarter of the results ring of
/// a pool of `drones` built with [`RING_LEN`]: tiles that large come back
/// through the drones' arena lanes rather than inside result frames.
///
/// The pool sizes its results ring as the task ring times the drones,
/// rounded up to a power of two (at most 16 MiB), and sends an output
/// through the arena when it is larger than a quarter of the ring.
pub fn arena_tile_rows(view: &View, drones: usize) -> u32 {
    let results_ring = (RING_LEN * drones.max(1)).next_power_of_two().min(1 << 24);
    let rows = (results_ring / 4 + 1).div_ceil(view.row_bytes().max(1));
    u32::try_from(rows)
        .unwrap_or(u32::MAX)
        .clamp(1, view.height.max(1))
}
