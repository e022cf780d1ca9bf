//! `polycephaly fractal`: the seed's "fractal explorer". A Mandelbrot
//! image is cut into tiles (bands of full rows) that the pool's drones
//! are handed as they ask for work; each drone's pixels come back through
//! its arena lane; the master assembles them into a PNG. The same image is
//! then rendered in one process and by worker processes that return their
//! tiles through Unix sockets, for the speed-up and the cost of exchange.

pub mod render;
pub mod sockets;

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::Instant;

use polycephaly::pool::{MAX_DRONES, Pool};

use crate::human::{self, bytes, percent, say, secs, thousands};
use render::{Render, View};

/// The options of `polycephaly fractal`.
#[derive(Debug, Clone, clap::Args)]
pub struct FractalArgs {
    /// Drones (default: one per CPU).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=MAX_DRONES as i64))]
    pub drones: Option<u32>,
    /// Image size in pixels, WIDTHxHEIGHT (at most 100 megapixels).
    #[arg(long, value_name = "WxH", default_value = "1920x1200", value_parser = parse_size)]
    pub size: (u32, u32),
    /// Iterations before a point counts as inside the set.
    #[arg(long, value_name = "K", default_value_t = View::DEFAULT.max_iter,
          value_parser = clap::value_parser!(u32).range(1..=100_000_000))]
    pub max_iter: u32,
    /// Centre of the image in the complex plane, X,Y.
    #[arg(long, value_name = "X,Y", allow_hyphen_values = true,
          default_value = "-0.743643887037151,0.13182590420533", value_parser = parse_center)]
    pub center: (f64, f64),
    /// Magnification: 1 shows the whole set (3 units wide).
    #[arg(long, value_name = "Z", default_value_t = View::DEFAULT.zoom, allow_hyphen_values = true,
          value_parser = parse_zoom)]
    pub zoom: f64,
    /// The PNG to write.
    #[arg(long, value_name = "FILE.png", default_value = "fractal.png")]
    pub out: PathBuf,
    /// Rows per tile (default: the fewest whose pixels go through the
    /// drones' arena lanes rather than inside result frames).
    #[arg(long, value_name = "ROWS", value_parser = clap::value_parser!(u32).range(1..))]
    pub tile_rows: Option<u32>,
    /// Render N frames, each zoomed in twice as far, written as
    /// FILE-000.png, FILE-001.png, ... (no comparison renders).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub explore: Option<u32>,
    /// Skip the one-process and socket renders (no speed-up, no check).
    #[arg(long)]
    pub no_compare: bool,
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let bad = || {
        format!("{s:?} is not WIDTHxHEIGHT with two whole numbers of at least 1, such as 1920x1200")
    };
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let w: u32 = w.trim().parse().map_err(|_| bad())?;
    let h: u32 = h.trim().parse().map_err(|_| bad())?;
    if w == 0 || h == 0 {
        return Err(bad());
    }
    if u64::from(w) * u64::from(h) > render::MAX_PIXELS {
        return Err(format!(
            "{w}x{h} is more than {} pixels",
            thousands(render::MAX_PIXELS)
        ));
    }
    Ok((w, h))
}

fn parse_center(s: &str) -> Result<(f64, f64), String> {
    let bad = || format!("{s:?} is not X,Y with two finite numbers, such as -0.75,0.1");
    let (x, y) = s.split_once(',').ok_or_else(bad)?;
    let x: f64 = x.trim().parse().map_err(|_| bad())?;
    let y: f64 = y.trim().parse().map_err(|_| bad())?;
    if x.is_finite() && y.is_finite() {
        Ok((x, y))
    } else {
        Err(bad())
    }
}

fn parse_zoom(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(z) if z.is_finite() && z > 0.0 => Ok(z),
        _ => Err(format!("{s:?} is not a positive number")),
    }
}

impl FractalArgs {
    /// The view these options describe.
    pub fn view(&self) -> View {
        View {
            center_x: self.center.0,
            center_y: self.center.1,
            zoom: self.zoom,
            width: self.size.0,
            height: self.size.1,
            max_iter: self.max_iter,
            _pad: 0,
        }
    }
}

/// Runs `polycephaly fractal`.
///
/// # Errors
/// One line saying what went wrong (an unwritable output, a pool that
/// could not start, a render that failed).
pub fn run(args: &FractalArgs) -> Result<(), String> {
    let view = args.view();
    let drones = args.drones.map_or_else(human::cpus, |n| n as usize);
    let tile_rows = args
        .tile_rows
        .unwrap_or_else(|| render::arena_tile_rows(&view, drones))
        .min(view.height);
    // Open the output first: a path that cannot be written is said before
    // any work is done.
    let frames = args.explore.unwrap_or(0);
    let first_path = if frames > 0 {
        frame_path(&args.out, 0)
    } else {
        args.out.clone()
    };
    let first_file = create(&first_path)?;

    say!(
        "fractal {}x{}, centre {},{}, zoom {}, up to {} iterations",
        view.width,
        view.height,
        view.center_x,
        view.center_y,
        view.zoom,
        view.max_iter
    );
    say!("machine: {}", human::machine());
    let started = Instant::now();
    let pool = Pool::builder()
        .drones(drones)
        .ring_len(render::RING_LEN)
        .build()
        .map_err(|e| format!("cannot start the drones: {e}"))?;
    let start_time = started.elapsed();
    say!("{drones} drone(s) started in {}", secs(start_time));

    if frames > 0 {
        return explore(&pool, &view, args, frames, first_file);
    }

    let tiles = view.tiles(tile_rows).len() as u64;
    let bar = human::bar(tiles, "drones", "tiles");
    let pooled = render::render_pool(&pool, &view, tile_rows, || bar.inc(1))?;
    bar.finish_and_clear();
    let stats = pool.stats();
    drop(pool);
    report_pool(&pooled, drones, tile_rows, stats.drones_lost);

    let mut identical = true;
    if !args.no_compare {
        let bar = human::bar(tiles, "one process", "tiles");
        let single = render::render_single(&view, tile_rows, || bar.inc(1));
        bar.finish_and_clear();
        identical &= single.pixels == pooled.pixels;
        let speedup = single.elapsed.as_secs_f64() / pooled.elapsed.as_secs_f64();
        let with_start = single.elapsed.as_secs_f64() / (pooled.elapsed + start_time).as_secs_f64();
        say!(
            "one process    {}: speed-up {speedup:.2}x ({with_start:.2}x counting the drones' start)",
            secs(single.elapsed)
        );

        let mut workers = sockets::Workers::start(drones)
            .map_err(|e| format!("cannot start the socket workers: {e}"))?;
        let bar = human::bar(tiles, "sockets", "tiles");
        let socketed = workers.render(&view, tile_rows, &|| bar.inc(1))?;
        bar.finish_and_clear();
        let workers_start = workers.started_in;
        drop(workers);
        identical &= socketed.pixels == pooled.pixels;
        let x = human::exchange(socketed.elapsed, socketed.busy, drones);
        say!(
            "Unix sockets   {}: the same tiles returned through a socketpair per worker \
             ({drones} worker(s) started in {}); exchange {} per worker ({}); {:.2}x the pool's time",
            secs(socketed.elapsed),
            secs(workers_start),
            secs(x),
            percent(x.as_secs_f64(), socketed.elapsed.as_secs_f64()),
            socketed.elapsed.as_secs_f64() / pooled.elapsed.as_secs_f64()
        );
        say!(
            "pixels identical to the one-process render: {}",
            if identical {
                "yes (pool and sockets)"
            } else {
                "NO"
            }
        );
    }

    write_png(first_file, &view, &pooled.pixels)
        .map_err(|e| format!("cannot write {}: {e}", first_path.display()))?;
    say!(
        "wrote {} ({}x{}, {})",
        first_path.display(),
        view.width,
        view.height,
        bytes(std::fs::metadata(&first_path).map_or(0, |m| m.len()))
    );
    if identical {
        Ok(())
    } else {
        Err("the renders differ: this is a bug".to_owned())
    }
}

/// Prints the pool render's account.
fn report_pool(r: &Render, drones: usize, tile_rows: u32, lost: u64) {
    let x = human::exchange(r.elapsed, r.busy, drones);
    say!(
        "pool render    {}: {} tiles of {tile_rows} row(s), handed out as drones asked{}",
        secs(r.elapsed),
        r.tiles,
        if lost > 0 {
            format!(" ({lost} drone(s) lost and replaced)")
        } else {
            String::new()
        }
    );
    say!(
        "  work         {} of drone time in tasks ({} per drone)",
        secs(r.busy),
        secs(r.busy / drones.max(1) as u32)
    );
    say!(
        "  exchange     {} per drone ({} of the render): handing out tiles, returning pixels, waiting for the last tile",
        secs(x),
        percent(x.as_secs_f64(), r.elapsed.as_secs_f64())
    );
    say!(
        "  pixels       {} through the drones' arena lanes (published to the master, copied once), {} of frames through the rings",
        bytes(r.bytes_in_arena),
        bytes(r.bytes_in_transit)
    );
}

/// `--explore`: frames zooming in twice as far each time.
fn explore(
    pool: &Pool,
    view: &View,
    args: &FractalArgs,
    frames: u32,
    first_file: File,
) -> Result<(), String> {
    let mut file = Some(first_file);
    for i in 0..frames {
        let mut v = *view;
        v.zoom = view.zoom * 2f64.powi(i as i32);
        let rows = args
            .tile_rows
            .unwrap_or_else(|| render::arena_tile_rows(&v, pool.drones()))
            .min(v.height);
        let bar = human::bar(v.tiles(rows).len() as u64, &format!("frame {i}"), "tiles");
        let r = render::render_pool(pool, &v, rows, || bar.inc(1))?;
        bar.finish_and_clear();
        let path = frame_path(&args.out, i);
        let f = match file.take() {
            Some(f) => f,
            None => create(&path)?,
        };
        write_png(f, &v, &r.pixels).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        say!(
            "frame {i}: zoom {}, {} -> {}",
            v.zoom,
            secs(r.elapsed),
            path.display()
        );
    }
    Ok(())
}

/// `dir/name-007.png` for `dir/name.png` and frame 7.
pub fn frame_path(out: &Path, i: u32) -> PathBuf {
    let stem = out
        .file_stem()
        .map_or_else(|| "fractal".into(), |s| s.to_string_lossy().into_owned());
    let ext = out
        .extension()
        .map_or_else(|| "png".into(), |s| s.to_string_lossy().into_owned());
    out.with_file_name(format!("{stem}-{i:03}.{ext}"))
}

fn create(path: &Path) -> Result<File, String> {
    File::create(path).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Writes RGB `pixels` of `view`'s size as a PNG.
///
/// # Errors
/// The file's or the encoder's.
pub fn write_png(file: File, view: &View, pixels: &[u8]) -> std::io::Result<()> {
    let mut encoder = png::Encoder::new(BufWriter::new(file), view.width, view.height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::High);
    let mut writer = encoder.write_header().map_err(std::io::Error::other)?;
    writer
        .write_image_data(pixels)
        .map_err(std::io::Error::other)?;
    writer.finish().map_err(std::io::Error::other)
}
