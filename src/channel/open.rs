//! Finding a channel in a region: the control section, checked, and what
//! its server announced, checked against the region before it is used.

use crate::region::Region;
use crate::sync::shim::Ordering;

use super::layout::{BOUND, CONTROL_KIND, ControlView, MAGIC, VERSION, control_len};
use super::spec::{CONTROL, FIRST_REPLY, MAX_CLIENTS, MAX_IN_FLIGHT, MAX_INLINE};

/// A view of `region`'s control section for `slots` slots and `methods`
/// entries (the creator's side: the counts come from its spec).
pub(crate) fn control_for(
    region: &Region,
    slots: usize,
    methods: usize,
) -> Result<ControlView, &'static str> {
    let s = region.section(CONTROL).map_err(|_| "no control section")?;
    if s.kind != CONTROL_KIND {
        return Err("section 0 is not a channel's control section");
    }
    // SAFETY: the section is valid for `s.len` bytes while `region` lives
    // (the view keeps a clone) and every process accesses it through the
    // atomics of the layout only.
    unsafe { ControlView::new(s.ptr, s.len, slots, methods, region.clone()) }
        .ok_or("the control section does not fit its slots and methods")
}

/// What a server announced in its control section, checked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Announced {
    pub(crate) slots: usize,
    pub(crate) inline_max: usize,
    pub(crate) max_in_flight: u32,
    pub(crate) server: u32,
}

/// The channel in `region` as its server announced it (read after the
/// state reached BOUND): checked against the region's sections before a
/// view is made.
pub(crate) fn announced(region: &Region) -> Result<(ControlView, Announced), &'static str> {
    // A view of just the header line first (one slot and one entry's worth
    // of room is the least a control section has).
    let probe = control_for(region, 1, 1)?;
    let h = probe.header();
    // Acquire: pairs with the server's Release store of BOUND (or later
    // states); the fields below were written before it.
    let state = h.state.word().load(Ordering::Acquire);
    if state < BOUND {
        return Err("the server has not formatted the channel yet");
    }
    // Relaxed (all): ordered by the Acquire load of the state above.
    if h.magic.load(Ordering::Relaxed) != MAGIC {
        return Err("bad magic");
    }
    if h.version.load(Ordering::Relaxed) != VERSION {
        return Err("another version of the channel layout");
    }
    let slots = h.slots.load(Ordering::Relaxed) as usize;
    let methods = h.methods_cap.load(Ordering::Relaxed) as usize;
    let inline_max = h.inline_max.load(Ordering::Relaxed) as usize;
    let max_in_flight = h.max_in_flight.load(Ordering::Relaxed);
    let server = h.server.load(Ordering::Relaxed);
    if slots == 0 || slots > usize::from(MAX_CLIENTS) {
        return Err("client slot count out of range");
    }
    if methods == 0 || methods > usize::from(u16::MAX) {
        return Err("method table size out of range");
    }
    if inline_max > MAX_INLINE || max_in_flight == 0 || max_in_flight > MAX_IN_FLIGHT {
        return Err("inline threshold or requests in flight out of range");
    }
    if region.sections().len() != usize::from(FIRST_REPLY) + slots {
        return Err("the region's sections do not match the slot count");
    }
    let len = region.section(CONTROL).map(|s| s.len).unwrap_or(0);
    if len != control_len(slots, methods) {
        return Err("the control section's length does not match");
    }
    let view = control_for(region, slots, methods)?;
    Ok((
        view,
        Announced {
            slots,
            inline_max,
            max_in_flight,
            server,
        },
    ))
}
