//! The HTTP section: akidb-embed and the legacy stand-in serving the same model, each under the
//! same open-loop loads (alternating server by server, load by load), then a step search for the
//! highest rate each holds within the latency target.

use std::{
    fs,
    path::Path,
    thread,
    time::{Duration, Instant},
};

use anyhow::Context;

use super::{
    oha::{Load, Oha},
    report::{HttpSection, LoadFigures, LoadRow, MaxRate, Peers, SearchStep, SERVING_SHAPE},
    servers::{waited_children_cpu_seconds, BenchServer, ServerKind, ServerSetup},
    threads::ThreadTimes,
};

/// Pause after each load, so that what one left queued does not land on the next.
const SETTLE: Duration = Duration::from_secs(1);
/// Bodies per file: oha picks one at random per request.
const BODIES: usize = 100;

/// What to measure.
#[derive(Debug, Clone)]
pub struct HttpPlan {
    /// The model both servers serve.
    pub model: String,
    /// Rates of the short-text loads, req/s.
    pub rates: Vec<u32>,
    /// Rate of the mixed load (70% short, 30% ~128 tokens).
    pub mixed_rate: u32,
    /// Seconds per load.
    pub seconds: f64,
    /// Whether to measure the legacy stand-in too.
    pub legacy: bool,
    /// The step search, when wanted.
    pub search: Option<SearchPlan>,
}

/// The step search for the highest rate held.
#[derive(Debug, Clone, Copy)]
pub struct SearchPlan {
    /// First rate tried.
    pub start: u32,
    /// P95 limit, ms.
    pub p95_limit_ms: f64,
    /// Seconds per step.
    pub step_seconds: f64,
    /// Wall-time budget per server.
    pub budget: Duration,
}

/// Share of long texts in the mixed load.
pub const MIXED_LONG_SHARE: f64 = 0.3;

/// Runs `plan` against freshly started servers; stops them afterwards.
pub fn measure(
    setup: &ServerSetup,
    oha: &Oha,
    work_dir: &Path,
    plan: &HttpPlan,
) -> anyhow::Result<HttpSection> {
    let short = work_dir.join(format!("bodies-short-{}.jsonl", plan.model));
    let mixed = work_dir.join(format!("bodies-mixed-{}.jsonl", plan.model));
    fs::write(&short, bodies(&plan.model, 0.0))?;
    fs::write(&mixed, bodies(&plan.model, MIXED_LONG_SHARE))?;

    let mut servers = vec![BenchServer::start(setup, ServerKind::Candle, Some(&plan.model))?.0];
    let short_text_tokens = short_text_tokens(&servers[0], &plan.model)?;
    if plan.legacy {
        servers.push(BenchServer::start(setup, ServerKind::Legacy, Some(&plan.model))?.0);
    }
    // Each load warms nothing for the next: both servers warmed up before they were ready.
    let idle: Vec<Option<f64>> = servers.iter().map(BenchServer::rss_mb).collect();

    let mut loads: Vec<(String, u32, f64, &Path)> = plan
        .rates
        .iter()
        .map(|&rate| (format!("short@{rate}"), rate, 0.0, short.as_path()))
        .collect();
    loads.push((
        format!("mixed@{}", plan.mixed_rate),
        plan.mixed_rate,
        MIXED_LONG_SHARE,
        mixed.as_path(),
    ));

    let mut rows = Vec::new();
    for (index, (name, rate, long_share, bodies)) in loads.into_iter().enumerate() {
        let mut results: Vec<(ServerKind, LoadFigures)> = Vec::new();
        // A B, B A, ...: neither server always runs right after the other's heaviest load.
        let order: Vec<usize> = if index % 2 == 0 {
            (0..servers.len()).collect()
        } else {
            (0..servers.len()).rev().collect()
        };
        for i in order {
            let server = &mut servers[i];
            let figures = run_load(oha, server, rate, plan.seconds, bodies)?;
            println!(
                "bench: http {name} {}: {:.0} req/s, P95 {:.1} ms, {} errors{}",
                server.kind().name(),
                figures.achieved_rps,
                figures.p95_ms,
                figures.errors,
                by_role(&figures)
            );
            results.push((server.kind(), figures));
        }
        rows.push(LoadRow {
            name,
            rate,
            long_share,
            figures: peers(results)?,
        });
    }

    let max_rate = match plan.search {
        Some(search) => {
            let mut steps = Vec::new();
            let mut highest = Vec::new();
            for server in &mut servers {
                let kind = server.kind();
                let (held, tried) = step_search(search, |rate| {
                    let figures = run_load(oha, server, rate, search.step_seconds, &short)?;
                    let held = holds(&figures, rate, search.p95_limit_ms);
                    println!(
                        "bench: search {} {rate} req/s: P95 {:.1} ms, {:.0} req/s achieved, {} \
                         errors: {}{}",
                        kind.name(),
                        figures.p95_ms,
                        figures.achieved_rps,
                        figures.errors,
                        if held { "held" } else { "not held" },
                        by_role(&figures)
                    );
                    Ok((held, figures))
                })?;
                highest.push((kind, held));
                steps.extend(tried.into_iter().map(|(rate, held, figures)| SearchStep {
                    server: kind.name().to_string(),
                    rate,
                    figures,
                    held,
                }));
            }
            let rate_of = |k: ServerKind| {
                highest
                    .iter()
                    .find(|(kind, _)| *kind == k)
                    .and_then(|(_, r)| *r)
            };
            let candle = rate_of(ServerKind::Candle);
            let legacy = rate_of(ServerKind::Legacy);
            Some(MaxRate {
                p95_limit_ms: search.p95_limit_ms,
                candle,
                legacy,
                faster_than_legacy: match (candle, legacy) {
                    (Some(c), Some(l)) if l > 0 => Some(f64::from(c) / f64::from(l)),
                    _ => None,
                },
                steps,
            })
        }
        None => None,
    };

    for server in servers {
        server.stop()?;
    }
    Ok(HttpSection {
        model: plan.model.clone(),
        seconds: plan.seconds,
        idle_rss_mb: Peers {
            candle: idle.first().copied().flatten().unwrap_or(0.0),
            legacy: idle.get(1).copied().flatten(),
        },
        loads: rows,
        max_rate,
        short_text_tokens: Some(short_text_tokens),
    })
}

/// Tokens per short text as the server counts them, checked equal to the engine shape the
/// serving path is held against: `serving / engine` compares texts of the same length.
fn short_text_tokens(server: &BenchServer, model: &str) -> anyhow::Result<f64> {
    let texts: Vec<String> = (0..BODIES).map(short_text).collect();
    let answer: serde_json::Value = ureq::post(&server.url("/v1/embeddings"))
        .send_json(serde_json::json!({ "model": model, "input": texts }))
        .context("counting the short texts' tokens")?
        .into_json()?;
    let tokens = answer["usage"]["prompt_tokens"]
        .as_u64()
        .context("no usage.prompt_tokens in the answer")?;
    let per_text = tokens as f64 / texts.len() as f64;
    let expected = SERVING_SHAPE.1 as f64;
    anyhow::ensure!(
        per_text == expected,
        "the short texts are {per_text:.2} tokens each for {model}, the engine shape they are held \
         against {expected}: serving / engine would not compare like with like"
    );
    Ok(per_text)
}

/// One load against one server, with the server's peak memory during it.
fn run_load(
    oha: &Oha,
    server: &mut BenchServer,
    rate: u32,
    seconds: f64,
    bodies: &Path,
) -> anyhow::Result<LoadFigures> {
    server.reset_peak();
    let url = server.embed_url();
    let before = server.thread_times();
    let client_cpu = waited_children_cpu_seconds();
    let mut figures = oha.run(&Load {
        url: &url,
        rate,
        seconds,
        bodies,
    })?;
    figures.peak_rss_mb = server.peak_rss_mb();
    let answered = figures.requests.saturating_sub(figures.errors);
    let per_request = |before: Option<f64>, after: Option<f64>| {
        Some((after? - before?) * 1e3 / answered as f64).filter(|_| answered > 0)
    };
    let after = server.thread_times();
    let process = |times: &Option<ThreadTimes>| times.as_ref().map(|t| t.process);
    figures.server_cpu_ms = per_request(process(&before), process(&after));
    figures.client_cpu_ms = per_request(client_cpu, waited_children_cpu_seconds());
    // The stand-in's threads carry no roles.
    if server.kind() == ServerKind::Candle {
        figures.server_cpu_by_role = before
            .zip(after)
            .and_then(|(before, after)| before.per_request(&after, answered));
    }
    server
        .ensure_running()
        .with_context(|| format!("{} died under {rate} req/s", server.kind().name()))?;
    thread::sleep(SETTLE);
    Ok(figures)
}

/// `; CPU ms/req kernels …` when the server's CPU was split by thread role.
fn by_role(figures: &LoadFigures) -> String {
    figures
        .server_cpu_by_role
        .map(|split| format!("; CPU ms/req {}", split.describe()))
        .unwrap_or_default()
}

fn peers(results: Vec<(ServerKind, LoadFigures)>) -> anyhow::Result<Peers<LoadFigures>> {
    let mut candle = None;
    let mut legacy = None;
    for (kind, figures) in results {
        match kind {
            ServerKind::Candle => candle = Some(figures),
            ServerKind::Legacy => legacy = Some(figures),
        }
    }
    Ok(Peers {
        candle: candle.context("akidb-embed was not measured")?,
        legacy,
    })
}

/// Whether a load at `rate` was held: no errors, P95 under the limit, ≥ 95% of the rate served.
pub fn holds(figures: &LoadFigures, rate: u32, p95_limit_ms: f64) -> bool {
    figures.errors == 0
        && figures.p95_ms < p95_limit_ms
        && figures.achieved_rps >= 0.95 * f64::from(rate)
}

/// One step of a search: the rate tried, whether it was held, what happened.
pub type Tried = (u32, bool, LoadFigures);

/// Finds the highest rate held: doubles from `plan.start` while held (halves while not), then
/// bisects between the highest held and the lowest not held, to within 5% (in steps of 10
/// req/s) — until the budget is spent. Returns the highest rate held and every step.
pub fn step_search(
    plan: SearchPlan,
    mut try_rate: impl FnMut(u32) -> anyhow::Result<(bool, LoadFigures)>,
) -> anyhow::Result<(Option<u32>, Vec<Tried>)> {
    const LOWEST: u32 = 10;
    const HIGHEST: u32 = 50_000;
    let started = Instant::now();
    let mut held: Option<u32> = None;
    let mut failed: Option<u32> = None;
    let mut steps = Vec::new();
    let mut rate = plan.start.clamp(LOWEST, HIGHEST);
    while started.elapsed() < plan.budget {
        let (ok, figures) = try_rate(rate)?;
        steps.push((rate, ok, figures));
        if ok {
            held = held.max(Some(rate));
        } else {
            failed = Some(failed.map_or(rate, |f| f.min(rate)));
        }
        let next = match (held, failed) {
            (Some(h), None) => h.saturating_mul(2),
            (None, Some(f)) => f / 2,
            (Some(h), Some(f)) if f > h && f - h > (h / 20).max(LOWEST) => {
                ((h + f) / 2).div_ceil(10) * 10
            }
            _ => break,
        };
        if !(LOWEST..=HIGHEST).contains(&next) || steps.iter().any(|(r, _, _)| *r == next) {
            break;
        }
        rate = next;
    }
    Ok((held, steps))
}

/// Short queries the bodies vary over: two tokens each in the uncased BERT vocabulary, so that
/// with `(n).` and the special tokens every short text is 10 tokens, the engine shape
/// ([`SERVING_SHAPE`]) the serving path is held against (checked at run time).
const SUBJECTS: &[&str] = &[
    "The service",
    "A database",
    "Our customer",
    "The model",
    "This query",
];
const PREDICATES: &[&str] = &[
    "returns results",
    "finds documents",
    "answers questions",
    "runs locally",
];
/// Words the long texts are made of (one token each, about 140 of them: cut at 128 tokens).
const WORDS: &[&str] = &[
    "search", "index", "vector", "query", "model", "service", "user", "data", "time", "result",
    "system", "team", "week", "text", "document",
];
const LONG_WORDS: usize = 140;

/// The `n`th short text: 10 tokens with the special ones.
fn short_text(n: usize) -> String {
    format!(
        "{} {} ({n}).",
        SUBJECTS[n % SUBJECTS.len()],
        PREDICATES[(n / SUBJECTS.len()) % PREDICATES.len()]
    )
}

/// One JSON body per line for `model`: each request embeds one text, a ~128-token one with
/// probability `long_share` (spread evenly through the file), else a short one (10 tokens).
pub fn bodies(model: &str, long_share: f64) -> String {
    let longs = (long_share * BODIES as f64).round() as usize;
    (0..BODIES)
        .map(|n| {
            // Line n is long when it crosses the next multiple of the share: evenly spread.
            let long = (n + 1) * longs / BODIES > n * longs / BODIES;
            let text = if long {
                (0..LONG_WORDS)
                    .map(|w| WORDS[(n + w * 7) % WORDS.len()])
                    .collect::<Vec<_>>()
                    .join(" ")
            } else {
                short_text(n)
            };
            format!(
                "{}\n",
                serde_json::json!({ "texts": [text], "model": model })
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(start: u32) -> SearchPlan {
        SearchPlan {
            start,
            p95_limit_ms: 35.0,
            step_seconds: 1.0,
            budget: Duration::from_secs(60),
        }
    }

    fn server_holding(capacity: u32) -> impl FnMut(u32) -> anyhow::Result<(bool, LoadFigures)> {
        move |rate| Ok((rate <= capacity, LoadFigures::default()))
    }

    #[test]
    fn search_climbs_then_bisects_to_within_five_percent() {
        // 200, 400, 800 (not held), then 600, 700, 750 (not held): a search to within 10%
        // would stop at 700, under 95% of what the server holds.
        let (held, steps) = step_search(plan(200), server_holding(740)).expect("search");
        let held = held.expect("some rate held");
        assert!((740 * 19 / 20..=740).contains(&held), "{held}");
        let rates: Vec<u32> = steps.iter().map(|s| s.0).collect();
        assert_eq!(&rates[..3], &[200, 400, 800], "{rates:?}");
    }

    #[test]
    fn search_goes_down_when_the_start_is_not_held() {
        let (held, _) = step_search(plan(200), server_holding(60)).expect("search");
        let held = held.expect("some rate held");
        assert!((50..=60).contains(&held), "{held}");
        let (none, steps) = step_search(plan(200), server_holding(0)).expect("search");
        assert_eq!(none, None);
        assert!(steps.len() <= 6, "{steps:?}");
    }

    #[test]
    fn search_stops_when_the_budget_is_spent() {
        let mut zero = plan(200);
        zero.budget = Duration::ZERO;
        let (held, steps) = step_search(zero, server_holding(1000)).expect("search");
        assert_eq!((held, steps.len()), (None, 0));
    }

    #[test]
    fn a_rate_is_held_only_without_errors_under_the_limit_at_full_rate() {
        let ok = LoadFigures {
            achieved_rps: 199.0,
            p95_ms: 20.0,
            ..LoadFigures::default()
        };
        assert!(holds(&ok, 200, 35.0));
        assert!(!holds(
            &LoadFigures {
                errors: 1,
                ..ok.clone()
            },
            200,
            35.0
        ));
        assert!(!holds(
            &LoadFigures {
                p95_ms: 35.0,
                ..ok.clone()
            },
            200,
            35.0
        ));
        assert!(!holds(
            &LoadFigures {
                achieved_rps: 150.0,
                ..ok
            },
            200,
            35.0
        ));
    }

    #[test]
    fn mixed_bodies_carry_the_long_share() {
        let text = bodies("m", MIXED_LONG_SHARE);
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect();
        assert_eq!(lines.len(), BODIES);
        let long = lines
            .iter()
            .filter(|v| {
                v["texts"][0]
                    .as_str()
                    .is_some_and(|t| t.split(' ').count() > 100)
            })
            .count();
        assert_eq!(long, 30);
        assert!(lines.iter().all(|v| v["model"] == "m"));
        assert!(bodies("m", 0.0).lines().all(|l| l.len() < 120));
    }
}
