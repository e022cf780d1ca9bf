//! The fractal's pixels, rendered by the pool's drones and by the socket
//! workers, equal those of one process, whatever the tiles' size and
//! whichever way the tiles come back (through the drones' arena lanes or
//! inside result frames).
//!
//! The drones and the socket workers are this test binary started again,
//! so `main` calls `serve` first and the tests run under our own runner
//! (`harness = false`).

#[path = "../../tests/common/runner.rs"]
mod runner;

use polycephaly::pool::Pool;
use polycephaly_harness::fractal::render::{
    self, RING_LEN, View, arena_tile_rows, render_pool, render_single,
};
use polycephaly_harness::fractal::sockets::{self, Workers};
use polycephaly_harness::tasks::TASKS;

fn main() {
    polycephaly::pool::serve(&TASKS);
    sockets::serve_worker();
    runner::run(&[
        (
            "pool_pixels_equal_one_process_through_the_arena",
            pool_pixels_equal_one_process_through_the_arena,
        ),
        (
            "pool_pixels_equal_one_process_through_the_rings",
            pool_pixels_equal_one_process_through_the_rings,
        ),
        (
            "socket_pixels_equal_one_process",
            socket_pixels_equal_one_process,
        ),
        ("tiles_cover_the_image_once", tiles_cover_the_image_once),
    ]);
}

/// A small view with the set's edge, interior and far outside in it.
fn small_view() -> View {
    View {
        center_x: -0.75,
        center_y: 0.1,
        zoom: 1.5,
        width: 600,
        height: 161,
        max_iter: 200,
        _pad: 0,
    }
}

fn pool(drones: usize) -> Pool {
    Pool::builder()
        .drones(drones)
        .ring_len(RING_LEN)
        .build()
        .expect("pool")
}

fn pool_pixels_equal_one_process_through_the_arena() {
    let view = small_view();
    let alone = render_single(&view, 7, || {});
    for drones in [1, 2, 3] {
        let pool = pool(drones);
        // A tile's pixels exceed a quarter of the results ring: arena.
        let rows = arena_tile_rows(&view, drones);
        assert!(rows < view.height, "several tiles ({rows} rows each)");
        let mut ticks = 0;
        let r = render_pool(&pool, &view, rows, || ticks += 1).expect("render");
        assert_eq!(ticks, r.tiles);
        assert!(r.pixels == alone.pixels, "{drones} drone(s)");
        // Full tiles come back through the arena (their bytes, plus a few
        // of framing each); a short last tile may come inside a frame.
        let full: usize = view
            .tiles(rows)
            .iter()
            .filter(|t| t.rows == rows)
            .map(|t| t.rows as usize * view.row_bytes())
            .sum();
        let arena = r.bytes_in_arena as usize;
        assert!(
            arena >= full && arena <= full + 16 * r.tiles,
            "{drones} drone(s): {arena} bytes through the arena, {full} in full tiles"
        );
    }
}

fn pool_pixels_equal_one_process_through_the_rings() {
    let view = small_view();
    let alone = render_single(&view, view.height, || {});
    let pool = pool(2);
    for rows in [1, 5, 13] {
        let r = render_pool(&pool, &view, rows, || {}).expect("render");
        assert!(r.pixels == alone.pixels, "{rows} rows per tile");
        assert_eq!(r.bytes_in_arena, 0, "{rows} rows per tile: in frames");
        assert!(r.busy > std::time::Duration::ZERO);
    }
}

fn socket_pixels_equal_one_process() {
    let view = small_view();
    let alone = render_single(&view, 11, || {});
    let mut workers = Workers::start(2).expect("workers");
    for rows in [1, 11, view.height] {
        let r = workers.render(&view, rows, &|| {}).expect("render");
        assert!(r.pixels == alone.pixels, "{rows} rows per tile");
        assert_eq!(r.tiles, view.tiles(rows).len());
    }
}

fn tiles_cover_the_image_once() {
    let view = small_view();
    for rows in [1, 2, 10, 160, 161, 1000] {
        let tiles = view.tiles(rows);
        let mut next = 0;
        for t in &tiles {
            assert_eq!(t.row0, next);
            assert!(t.rows >= 1 && t.rows <= rows);
            next += t.rows;
        }
        assert_eq!(next, view.height);
        let bytes: usize = tiles.iter().map(|t| render::tile_pixels(*t).len()).sum();
        assert_eq!(bytes, view.image_bytes());
    }
}
