//! Reading a snapshot cell whose words hold arbitrary bytes (its shape,
//! writer and sequence words included), as a hostile process sharing the
//! cell could write them, between writes of a real writer: a read gives a
//! value or an error, never a panic or a hang.
//!
//! Input: `[image..., ops...]`: the first 8 bytes poke the shape and
//! writer words, the next 8 the sequence word, the next 24 the value
//! words (a `[u8; 20]` cell: three words, the last one partial). Then each
//! op byte picks an operation: a `try_` read, a blocking read with a
//! deadline already passed, a write (attaching a writer if there is none),
//! the writer's death, or a poke of one word.

use std::time::Instant;

use super::Input;
use crate::arena::{HeapSnapshot, SnapshotWriter};

type Value = [u8; 20];

/// The fuzz entry point (see the module docs). Never panics, never hangs.
pub fn snapshot_read(data: &[u8]) {
    let mut input = Input(data);
    let cell = HeapSnapshot::<Value>::new();
    let Ok(reader) = cell.reader() else {
        return;
    };
    let (header, words) = cell.raw_parts();
    let shape_writer = input.u64().unwrap_or(0);
    header.poke(
        shape_writer as u32,
        (shape_writer >> 32) as u32,
        input.u64().unwrap_or(0),
    );
    for w in words {
        // Relaxed: a hostile write, nothing to order.
        w.store(
            input.u64().unwrap_or(0),
            crate::sync::shim::Ordering::Relaxed,
        );
    }
    let mut writer: Option<SnapshotWriter<Value>> = None;
    // The last value written by a live writer with no poke since.
    let mut expect: Option<Value> = None;
    let mut graveyard = Vec::new();
    while let Some(op) = input.byte() {
        match op % 6 {
            0 => {
                if let Ok(v) = reader.try_read() {
                    if let Some(e) = expect {
                        assert_eq!(v, e, "a clean cell read back another value");
                    }
                }
            }
            1 => {
                let _ = reader.read_deadline(Some(Instant::now()));
            }
            2 => {
                if writer.is_none() {
                    writer = cell.writer().ok();
                }
                if let Some(w) = writer.as_mut() {
                    let v = [op; 20];
                    w.write(&v);
                    expect = Some(v);
                }
            }
            3 => {
                if let Some(w) = writer.take() {
                    cell.mark_dead(HeapSnapshot::writer_id(&w));
                    // Its process is gone; the handle is dropped at the
                    // end (its drop finds the role no longer its own).
                    graveyard.push(w);
                }
            }
            4 => {
                let v = input.u64().unwrap_or(0);
                header.poke(v as u32, (v >> 32) as u32, input.u64().unwrap_or(0));
                expect = None;
            }
            _ => {
                let i = usize::from(input.byte().unwrap_or(0)) % words.len();
                // Relaxed: a hostile write.
                words[i].store(
                    input.u64().unwrap_or(0),
                    crate::sync::shim::Ordering::Relaxed,
                );
                expect = None;
            }
        }
    }
}
