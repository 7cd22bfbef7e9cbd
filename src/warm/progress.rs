//! How `feedcache warm` shows its progress: a bar on an interactive
//! terminal, one plain line per package otherwise (a CI log cannot redraw a
//! bar, and a line per package is what a failed pipeline is debugged from).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

use super::list::Package;
use super::{Outcome, Summary};

/// Where progress goes: both write to stderr, stdout keeps only the summary.
pub enum Progress {
    Bar(ProgressBar),
    Lines,
}

impl Progress {
    /// A bar when stderr is a terminal, else log lines.
    pub fn new(total: usize) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress::Lines;
        }
        let bar = ProgressBar::new(total as u64);
        // The template is a constant; should it ever fail to parse, the
        // default bar is as good as a crash is bad.
        let style = ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        Progress::Bar(bar)
    }

    /// One package done. On the bar only failures get a line of their own
    /// (printed above it), so they stay on screen after the bar is gone.
    pub fn report(&self, p: &Package, outcome: &Outcome, so_far: &Summary) {
        let line = match outcome {
            Outcome::Fetched => format!("fetched {} {}", p.id, p.version),
            Outcome::Cached => format!("cached {} {}", p.id, p.version),
            Outcome::Failed(why) => format!("failed {} {}: {why}", p.id, p.version),
        };
        match self {
            Progress::Lines => eprintln!("{line}"),
            Progress::Bar(bar) => {
                if matches!(outcome, Outcome::Failed(_)) {
                    bar.println(line);
                }
                bar.set_message(so_far.counts());
                bar.inc(1);
            }
        }
    }

    /// Removes the bar: the summary on stdout says the rest.
    pub fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}
