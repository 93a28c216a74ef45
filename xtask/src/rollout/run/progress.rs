//! What a run shows while it goes: on a terminal, the current stage and step, a bar with the
//! time left of each hold, the latest figures of both sides and the last gate's, each beside
//! its SLO (indicatif); without a terminal, plain lines (the audit log's, and these).

use std::{
    io::IsTerminal,
    time::{Duration, Instant},
};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::observe::Observer;
use super::timeline::{Event, Figures};
use crate::rollout::plan::{slo::SloThresholds, Plan};

/// How often plain output repeats the latest figures.
const PLAIN_FIGURES_EVERY: Duration = Duration::from_secs(20);

/// The progress display of a run.
pub struct Progress {
    slos: Option<SloThresholds>,
    stages: usize,
    stage_at: usize,
    stage: String,
    left: Option<Duration>,
    figures_shown: Option<Instant>,
    lines: Option<Lines>,
}

/// The terminal's lines.
struct Lines {
    _multi: MultiProgress,
    header: ProgressBar,
    hold: ProgressBar,
    figures: ProgressBar,
    gate: ProgressBar,
}

impl Lines {
    fn new() -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let text = || {
            let bar = multi.add(ProgressBar::new(1));
            bar.set_style(ProgressStyle::with_template("{msg}").expect("a valid template"));
            bar
        };
        let header = text();
        let hold = multi.add(ProgressBar::new(1));
        hold.set_style(
            ProgressStyle::with_template("  hold [{bar:40.cyan/blue}] {msg}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        let figures = text();
        let gate = text();
        Self {
            _multi: multi,
            header,
            hold,
            figures,
            gate,
        }
    }
}

impl Progress {
    /// A display for a run of `plan`: bars on a terminal, plain lines otherwise.
    pub fn new(plan: &Plan) -> Self {
        let terminal = std::io::stderr().is_terminal() && std::io::stdout().is_terminal();
        Self {
            slos: plan.slos.resolve(&plan.slos).ok(),
            stages: plan.stages().len(),
            stage_at: 0,
            stage: String::new(),
            left: None,
            figures_shown: None,
            lines: terminal.then(Lines::new),
        }
    }

    fn say(&self, line: String) {
        match &self.lines {
            Some(lines) => lines.header.println(line),
            None => println!("{line}"),
        }
    }
}

fn ms(value: Option<f64>) -> String {
    value.map_or("-".into(), |v| format!("{v:.1}"))
}

/// One side's figures, each beside its SLO.
pub fn figures_line(side: &str, f: &Figures, slos: Option<&SloThresholds>) -> String {
    let limit = |d: Option<Duration>| {
        d.map_or(String::new(), |d| {
            format!(" (< {:.0})", d.as_secs_f64() * 1000.0)
        })
    };
    format!(
        "{side} {:.1} req/s, errors {}{}, P50 {}{} P95 {}{} P99 {}{} ms, memory {} MiB",
        f.rate,
        f.error_rate.map_or("-".into(), |e| format!("{e:.2}%")),
        slos.map_or(String::new(), |s| format!(" (< {})", s.error_rate)),
        ms(f.p50_ms),
        limit(slos.map(|s| s.p50)),
        ms(f.p95_ms),
        limit(slos.map(|s| s.p95)),
        ms(f.p99_ms),
        limit(slos.map(|s| s.p99)),
        f.memory_mib.map_or("-".into(), |m| format!("{m:.0}")),
    )
}

/// The SLOs a gate is judged on, in a few words.
fn slo_line(slos: &SloThresholds) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "SLO: errors < {}, P50 < {:.0} ms, P95 < {:.0} ms, P99 < {:.0} ms",
        slos.error_rate,
        ms(slos.p50),
        ms(slos.p95),
        ms(slos.p99)
    )
}

impl Observer for Progress {
    fn event(&mut self, event: &Event) {
        match event {
            Event::Started {
                plan,
                target,
                time_scale,
                resumed,
            } => self.say(format!(
                "rollout: {} {plan} on the {target} target at time scale {time_scale}",
                if *resumed { "resuming" } else { "running" }
            )),
            Event::Stage {
                stage,
                name,
                weight,
            } => {
                self.stage_at += 1;
                self.stage = format!(
                    "stage {}/{} {stage}: {name} (canary at {weight}%)",
                    self.stage_at, self.stages
                );
                match &self.lines {
                    Some(lines) => lines.header.set_message(self.stage.clone()),
                    None => println!("== {}", self.stage),
                }
            }
            Event::Step {
                index, kind, of, ..
            } => {
                if let Some(lines) = &self.lines {
                    lines.header.set_message(format!(
                        "{} · step {}/{of} {kind}",
                        self.stage,
                        index + 1
                    ));
                    lines.hold.set_position(0);
                    lines.hold.set_message("");
                }
            }
            Event::Gate {
                stage,
                kind,
                verdict,
                detail,
            } => {
                let slo = self.slos.as_ref().map(slo_line).unwrap_or_default();
                let line = format!("gate {stage} {kind}: {verdict}: {detail} [{slo}]");
                match &self.lines {
                    Some(lines) => lines.gate.set_message(line),
                    None => println!("rollout: {line}"),
                }
            }
            Event::Approval { stage, actor, via } => {
                if self.lines.is_some() {
                    self.say(format!("rollout: {stage} approved by {actor} via {via}"));
                }
            }
            Event::Rollback { stage, reason } => {
                if self.lines.is_some() {
                    self.say(format!("rollout: {stage} ROLLED BACK: {reason}"));
                }
            }
            Event::Sample { canary, stable, .. } => {
                let slos = self.slos.as_ref();
                let text = format!(
                    "  {}\n  {}",
                    figures_line("canary", canary, slos),
                    figures_line("stable", stable, slos)
                );
                match &self.lines {
                    Some(lines) => lines.figures.set_message(text),
                    None => {
                        if self
                            .figures_shown
                            .is_none_or(|at| at.elapsed() >= PLAIN_FIGURES_EVERY)
                        {
                            self.figures_shown = Some(Instant::now());
                            println!("rollout: figures\n{text}");
                        }
                    }
                }
            }
            Event::Finished { .. } => {
                if let Some(lines) = self.lines.take() {
                    for bar in [&lines.header, &lines.hold, &lines.figures, &lines.gate] {
                        bar.finish();
                    }
                }
            }
        }
    }

    fn hold(&mut self, left: Duration, total: Duration) {
        let new_hold = self.left.is_none_or(|before| left > before);
        self.left = Some(left);
        match &self.lines {
            Some(lines) => {
                let total_ms = total.as_millis().max(1) as u64;
                lines.hold.set_length(total_ms);
                lines
                    .hold
                    .set_position(total_ms.saturating_sub(left.as_millis() as u64));
                lines.hold.set_message(format!(
                    "{:.0}s left of {:.0}s",
                    left.as_secs_f64(),
                    total.as_secs_f64()
                ));
            }
            None if new_hold => println!(
                "rollout: holding {:.1}s, watching the rollback triggers",
                total.as_secs_f64()
            ),
            None => {}
        }
    }
}
