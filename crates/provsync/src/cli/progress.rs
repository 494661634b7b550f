//! Progress of one job on stderr: a bar per stage on a terminal, a plain line every
//! few seconds otherwise (logs, CI). Counts start at zero for each job (the engine's
//! counters are read relative to the job's start), every stage says what it is
//! doing, the share of the source read and an ETA show when the source can tell its
//! size, and the last frame is drawn from the run's summary, so it shows the numbers
//! the summary prints.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use provsync_core::job::{Counts, JobId, Stage};
use provsync_core::store::{JobRecord, StateStore};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::job::Progress;

/// How often the line mode prints.
const LINE_EVERY: Duration = Duration::from_secs(5);

/// A running progress display.
pub struct Display {
    stop: oneshot::Sender<Option<serde_json::Value>>,
    task: JoinHandle<()>,
}

impl Display {
    /// Stops the display after a last frame drawn from the job's summary.
    pub async fn finish(self, job: Option<&JobRecord>) {
        let _ = self.stop.send(job.and_then(|j| j.summary.clone()));
        let _ = self.task.await;
    }
}

/// The engine's counters as one job sees them: relative to its start.
struct Live {
    p: Arc<Progress>,
    base: [u64; 5],
    started: Instant,
}

impl Live {
    fn new(p: Arc<Progress>) -> Self {
        // The gauges of an earlier job must not show as this one's.
        Progress::set(&p.source_done, 0);
        Progress::set(&p.source_total, 0);
        let base = Self::raw(&p);
        Self {
            p,
            base,
            started: Instant::now(),
        }
    }

    fn raw(p: &Progress) -> [u64; 5] {
        [
            Progress::get(&p.extracted),
            Progress::get(&p.transformed),
            Progress::get(&p.loaded),
            Progress::get(&p.links),
            Progress::get(&p.disconnected),
        ]
    }

    /// extracted, transformed, loaded, links, disconnected since the job started.
    fn counts(&self) -> [u64; 5] {
        let now = Self::raw(&self.p);
        std::array::from_fn(|i| now[i].saturating_sub(self.base[i]))
    }

    /// `45% of the source, ETA 12 s` when the source tells its size.
    fn share(&self) -> Option<String> {
        let total = Progress::get(&self.p.source_total);
        let done = Progress::get(&self.p.source_done).min(total);
        if total == 0 {
            return None;
        }
        let fraction = done as f64 / total as f64;
        let secs = self.started.elapsed().as_secs_f64();
        let eta = if fraction > 0.0 && fraction < 1.0 {
            format!(", ETA {}", human(secs * (1.0 - fraction) / fraction))
        } else {
            String::new()
        };
        Some(format!("{:.0}% of the source{eta}", fraction * 100.0))
    }
}

fn human(secs: f64) -> String {
    let s = secs.round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

const STAGES: [&str; 5] = ["extract", "transform", "load", "relations", "sweep"];

/// The stage bars' messages while the job runs in `stage`.
fn live_frame(live: &Live, stage: Option<Stage>) -> [String; 5] {
    let [extracted, transformed, loaded, links, disconnected] = live.counts();
    let secs = live.started.elapsed().as_secs_f64().max(0.001);
    let rate = |n: u64| format!("{n} records ({:.0}/s)", n as f64 / secs);
    let extract = match live.share() {
        Some(share) => format!("{}, {share}", rate(extracted)),
        None => rate(extracted),
    };
    let after_load = matches!(stage, Some(Stage::Relations | Stage::Finish | Stage::Done));
    let relations = if after_load {
        format!("{links} deferred links loaded")
    } else {
        "after the load".to_owned()
    };
    let sweep = if matches!(stage, Some(Stage::Finish | Stage::Done)) {
        format!("{disconnected} disconnected")
    } else {
        "at the end".to_owned()
    };
    [extract, rate(transformed), rate(loaded), relations, sweep]
}

/// The last frame, from the summary's headline: the numbers `provsync run` prints
/// first (a GMC night's doctors, not also their connections and bodies).
fn final_frame(summary: &serde_json::Value) -> [String; 5] {
    let all: Counts = serde_json::from_value(summary["counts"].clone()).unwrap_or_default();
    let relations = if all.relations_staged == 0 {
        "no link deferred".to_owned()
    } else {
        format!(
            "{} deferred: {} loaded, {} failed",
            all.relations_staged, all.relations_loaded, all.relations_failed
        )
    };
    let sweep = match summary["sweep"]["skipped"].as_str() {
        Some(why) => format!("{} disconnected ({why})", all.disconnected),
        None => format!("{} disconnected", all.disconnected),
    };
    [
        format!("{} records", all.extracted),
        format!(
            "{} mapped, {} rejected",
            all.extracted - all.rejected,
            all.rejected
        ),
        format!(
            "{} created, {} updated, {} unchanged, {} failed",
            all.created, all.updated, all.unchanged, all.failed
        ),
        relations,
        sweep,
    ]
}

/// Starts showing job `id`'s progress.
pub fn spawn(p: Arc<Progress>, store: Arc<dyn StateStore>, id: JobId) -> Display {
    let (stop, mut stopped) = oneshot::channel::<Option<serde_json::Value>>();
    let live = Live::new(p);
    let task = tokio::spawn(async move {
        // Bars would break the one-JSON-object-per-line contract of `--log-format json`.
        let tty = std::io::stderr().is_terminal() && !super::out::json_logs();
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let style =
            ProgressStyle::with_template("{prefix:>10} {spinner} {msg}").expect("static template");
        let bars: Vec<ProgressBar> = if tty {
            STAGES
                .iter()
                .map(|name| {
                    let b = multi.add(ProgressBar::new_spinner());
                    b.set_style(style.clone());
                    b.set_prefix(*name);
                    b
                })
                .collect()
        } else {
            Vec::new()
        };
        let mut last_line = Instant::now();
        let mut stage = None;
        let mut polled = Instant::now() - Duration::from_secs(1);
        let summary = loop {
            if polled.elapsed() >= Duration::from_millis(500) {
                stage = store.job(&id).await.ok().map(|j| j.stage);
                polled = Instant::now();
            }
            let frame = live_frame(&live, stage);
            if tty {
                for (b, m) in bars.iter().zip(frame) {
                    b.set_message(m);
                    b.tick();
                }
            } else if last_line.elapsed() >= LINE_EVERY {
                super::out::note!("{}", line(&live, stage, &frame));
                last_line = Instant::now();
            }
            tokio::select! {
                s = &mut stopped => break s.ok().flatten(),
                _ = tokio::time::sleep(Duration::from_millis(150)) => {}
            }
        };
        let Some(summary) = summary else {
            for b in bars {
                b.finish();
            }
            return;
        };
        let frame = final_frame(&summary);
        if tty {
            for (b, m) in bars.iter().zip(frame) {
                b.set_message(m);
                b.finish();
            }
        } else {
            super::out::note!("{}", line(&live, Some(Stage::Done), &frame));
        }
    });
    Display { stop, task }
}

/// One progress line for logs: elapsed time, the stage, each stage's message.
fn line(live: &Live, stage: Option<Stage>, frame: &[String; 5]) -> String {
    let stages: Vec<String> = STAGES
        .iter()
        .zip(frame)
        .map(|(name, m)| format!("{name} {m}"))
        .collect();
    format!(
        "progress: {} stage {}: {}",
        human(live.started.elapsed().as_secs_f64()),
        stage.map_or("?", |s| s.as_str()),
        stages.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_frame_shows_the_summarys_counts() {
        let summary = serde_json::json!({
            "counts": {"extracted": 15, "created": 13, "updated": 1, "rejected": 1,
                       "disconnected": 2, "relations_staged": 1, "relations_loaded": 1},
            "sweep": {}
        });
        let f = final_frame(&summary);
        assert_eq!(f[0], "15 records");
        assert_eq!(f[1], "14 mapped, 1 rejected");
        assert_eq!(f[2], "13 created, 1 updated, 0 unchanged, 0 failed");
        assert_eq!(f[3], "1 deferred: 1 loaded, 0 failed");
        assert_eq!(f[4], "2 disconnected");
    }

    #[test]
    fn the_last_frame_shows_the_headline_not_the_sum_of_every_kind() {
        // A GMC night: two doctors left, and with them their connections.
        let summary = serde_json::json!({
            "counts": {"extracted": 10, "unchanged": 10, "disconnected": 2},
            "counted": ["individual"],
            "per_kind": {
                "individual": {"extracted": 10, "unchanged": 10, "disconnected": 2},
                "activity": {"extracted": 10, "unchanged": 10, "disconnected": 2}
            },
            "sweep": {}
        });
        let f = final_frame(&summary);
        assert_eq!(f[0], "10 records");
        assert_eq!(f[4], "2 disconnected");
    }

    #[test]
    fn counts_start_at_zero_for_each_job_and_the_share_needs_a_size() {
        let p = Arc::new(Progress::default());
        Progress::add(&p.extracted, 294_956);
        Progress::set(&p.source_total, 100);
        let live = Live::new(p.clone());
        assert_eq!(live.counts(), [0; 5]);
        assert_eq!(live.share(), None, "an earlier job's size is forgotten");
        Progress::add(&p.extracted, 7);
        Progress::set(&p.source_total, 200);
        Progress::set(&p.source_done, 50);
        assert_eq!(live.counts()[0], 7);
        assert!(live.share().unwrap().starts_with("25% of the source, ETA "));
    }
}
