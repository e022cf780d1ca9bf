//! Decoding arbitrary bytes as a channel frame, as a hostile peer could
//! write them into a ring, and receiving what was decoded.
//!
//! The decoder must accept only frames the encoder writes (a decoded frame
//! re-encodes to the very same bytes) and never read outside the frame; an
//! accepted inline body is received as every shape (each either refused
//! or seen whole), and an accepted handle is read from a heap arena that
//! holds two published blocks (lane 0: 100 bytes at offset 0, generation
//! 0; 16 u64 at offset 128, generation 1: the seed corpus names them): a
//! read either fails or gives exactly the block, received as every shape.

use crate::arena::{ArenaSpec, HeapArena, ReadGuard};
use crate::channel::Shape;
use crate::channel::wire::{self, BLOCK_FRAME_LEN, Body, HEADER_LEN};

/// Checks what receiving `bytes` as each shape gives.
fn receive_inline(bytes: &[u8]) {
    let n = bytes.len();
    assert_eq!(u64::received_inline(bytes).is_some(), n == 8);
    assert_eq!(<()>::received_inline(bytes).is_some(), n == 0);
    match <[u32]>::received_inline(bytes) {
        Some(p) => {
            assert!(n % 4 == 0 && p.len() == n / 4);
            assert_eq!(bytemuck::cast_slice::<u32, u8>(&p), bytes);
        }
        None => assert!(n % 4 != 0),
    }
    let whole = <[u128]>::with_ref(bytes, |s| s.len() * 16);
    assert_eq!(whole, (n % 16 == 0).then_some(n));
    let copied = <[u8]>::with_ref(bytes, <[u8]>::to_vec);
    assert_eq!(copied.as_deref(), Some(bytes));
}

/// Checks a block read: inside its lane, exactly the handle's bytes, and
/// received as every shape.
fn receive_block(g: ReadGuard<'_, u8>, lane: (usize, usize)) {
    let start = g.as_ptr() as usize;
    assert!(
        start >= lane.0 && start + g.len() <= lane.1,
        "a view outside the lane"
    );
    assert_eq!(Some(g.len() as u64), g.handle().byte_len());
    receive_inline(&g);
    let n = g.len();
    match <[u64]>::received_block(g) {
        Some(p) => assert_eq!(p.len() * 8, n),
        None => assert!(n % 8 != 0),
    }
}

/// The fuzz entry point (see the module docs). Never panics, never hangs.
pub fn channel_frame(data: &[u8]) {
    let Ok(msg) = wire::decode(data) else {
        return;
    };
    // Canonical: the encoder writes exactly these bytes.
    let mut again = vec![0u8; data.len()];
    match msg.body {
        Body::Inline(b) => {
            assert!(wire::encode_inline(&mut again, &msg.head));
            assert_eq!(b.len(), data.len() - HEADER_LEN);
            again[HEADER_LEN..].copy_from_slice(b);
        }
        Body::Block(h) => {
            assert_eq!(data.len(), BLOCK_FRAME_LEN);
            assert!(wire::encode_block(&mut again, &msg.head, &h));
        }
    }
    assert_eq!(again, data, "a frame the encoder does not write");
    let handle = match msg.body {
        Body::Inline(b) => return receive_inline(b),
        Body::Block(h) => h,
    };
    let Ok(arena) = HeapArena::new(ArenaSpec::new(1, 4096).with_blocks(4)) else {
        return;
    };
    let (Ok(mut writer), Ok(reader)) = (arena.writer(), arena.reader()) else {
        return;
    };
    let lane = {
        let Ok(a) = writer.try_alloc_uninit::<u8>(100) else {
            return;
        };
        let a = a.init_with(|i| i as u8);
        let start = a.as_ptr() as usize;
        let _ = a.publish_for(u32::MAX);
        (start, start + 4096)
    };
    if let Ok(b) = writer.try_alloc_uninit::<u64>(16) {
        let _ = b.init_with(|i| i as u64).publish_for(u32::MAX);
    }
    if let Ok(g) = reader.read_bytes(&handle) {
        receive_block(g, lane);
    }
}
