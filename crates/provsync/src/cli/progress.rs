//! Progress on stderr: per-stage bars on a terminal, a plain line every few seconds
//! otherwise (logs, CI).

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::job::Progress;

/// A running progress display.
pub struct Display {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Display {
    /// Stops the display after one last refresh.
    pub async fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Starts showing the engine's counters.
pub fn spawn(p: Arc<Progress>) -> Display {
    let (stop, mut stopped) = oneshot::channel();
    let task = tokio::spawn(async move {
        // Bars would break the one-JSON-object-per-line contract of `--log-format json`.
        if std::io::stderr().is_terminal() && !super::out::json_logs() {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template("{prefix:>10} {spinner} {msg}")
                .expect("static template");
            let bars: Vec<ProgressBar> = ["extract", "transform", "load", "relations", "sweep"]
                .iter()
                .map(|name| {
                    let b = multi.add(ProgressBar::new_spinner());
                    b.set_style(style.clone());
                    b.set_prefix(*name);
                    b
                })
                .collect();
            let start = Instant::now();
            loop {
                let values = [
                    Progress::get(&p.extracted),
                    Progress::get(&p.transformed),
                    Progress::get(&p.loaded),
                    Progress::get(&p.links),
                    Progress::get(&p.disconnected),
                ];
                let secs = start.elapsed().as_secs_f64().max(0.001);
                for (b, v) in bars.iter().zip(values) {
                    b.set_message(format!("{v} records ({:.0}/s)", v as f64 / secs));
                    b.tick();
                }
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tokio::time::sleep(Duration::from_millis(150)) => {}
                }
            }
            for b in bars {
                b.finish();
            }
        } else {
            let start = Instant::now();
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {
                        super::out::note!(
                            "progress: {:.0}s pages {} extracted {} loaded {} relations {} disconnected {}",
                            start.elapsed().as_secs_f64(),
                            Progress::get(&p.pages),
                            Progress::get(&p.extracted),
                            Progress::get(&p.loaded),
                            Progress::get(&p.links),
                            Progress::get(&p.disconnected),
                        );
                    }
                }
            }
        }
    });
    Display { stop, task }
}
