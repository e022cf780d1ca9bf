//! The bench's progress: a bar on a terminal, plain lines elsewhere.
//!
//! The bar (indicatif) is drawn only when both stdout and stderr are
//! terminals and the JSON does not go to stdout; it is redrawn between
//! rows from the bench's one thread (no steady tick: a ticker thread would
//! make the next row's `fork` unsound). Otherwise each row is announced by
//! one plain line on stderr, for logs and tests.

use std::io::{IsTerminal as _, Write as _};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Progress over `rounds` x `rows` steps.
#[derive(Debug)]
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    rows: usize,
    rounds: usize,
    started: Instant,
}

impl Progress {
    /// A bar when stdout and stderr are terminals and `json_to_stdout` is
    /// false; plain lines otherwise.
    pub(crate) fn new(rows: usize, rounds: usize, json_to_stdout: bool) -> Self {
        let tty = std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
        let bar = (tty && !json_to_stdout).then(|| {
            let bar = ProgressBar::with_draw_target(
                Some((rows * rounds) as u64),
                ProgressDrawTarget::stderr(),
            );
            let style = ProgressStyle::with_template(
                "[{elapsed_precise}] {bar:30} {pos}/{len} rows (eta {eta}) {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar
        });
        Self {
            bar,
            rows,
            rounds,
            started: Instant::now(),
        }
    }

    /// Row `i` (from 0) of round `round` (from 0), named `name`, starts.
    pub(crate) fn row(&self, round: usize, i: usize, name: &str) {
        let of_round = if self.rounds > 1 {
            format!(" run {}/{}", round + 1, self.rounds)
        } else {
            String::new()
        };
        match &self.bar {
            Some(bar) => {
                bar.set_position((round * self.rows + i) as u64);
                bar.set_message(format!("{name}{of_round}"));
            }
            None => {
                let mut err = std::io::stderr();
                let _ = writeln!(
                    err,
                    "[{}/{}{of_round}] {name} ({:.1} s so far)",
                    i + 1,
                    self.rows,
                    self.started.elapsed().as_secs_f64()
                );
                let _ = err.flush();
            }
        }
    }

    /// Every row ran: the bar is cleared.
    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
