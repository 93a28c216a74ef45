//! `cargo xtask rollout run --target kubernetes --dry-run`: the plan's cluster actions, stage by
//! stage, with every API call the target would make printed and none made.
//!
//! Gates cannot be judged without measurements, so the walk does not go through the runner: it
//! shows each gate's PromQL instead of inventing a verdict, and takes every stage in order.

use crate::{
    rollout::{
        plan::{step::Step, Plan},
        targets::{Side, Target},
    },
    stack::prometheus::EMBED_ROUTE,
};

use super::{metrics, KubernetesTarget};

/// Walks `plan` on `target` (a dry-run target); returns the number of API calls printed.
pub fn walk(plan: &Plan, target: &mut KubernetesTarget) -> anyhow::Result<usize> {
    let recorder = target
        .recorder()
        .ok_or_else(|| anyhow::anyhow!("the walk only runs on a dry-run target"))?;
    let scale = plan.time_scale();
    target.start()?;
    for stage in plan.stages() {
        println!("\n== stage {} ({})", stage.id, stage.name);
        for (index, step) in stage.steps.iter().enumerate() {
            println!("-- {}#{index}", step.kind());
            match step {
                Step::Canary(s) => target.set_canary_weight(s.weight.percent())?,
                Step::Scale(s) => {
                    target.scale(&s.deployment, s.replicas)?;
                }
                Step::MlxTeardown(s) => {
                    target.teardown_legacy(&s.deployment, scale.apply(s.grace_period))?;
                }
                Step::SloCheck(s) => print_queries(target, scale.apply(s.window)),
                Step::Soak(s) => print_queries(target, scale.apply(s.duration)),
                Step::LoadTest(s) => {
                    target.start_load(s.rate, scale.apply(s.duration))?;
                    target.finish_load()?;
                    print_queries(target, scale.apply(s.duration));
                }
                Step::Parity(s) => println!(
                    "   POST {}/v1/embeddings (and {}{EMBED_ROUTE} for `against: legacy`) per \
                     text of {}",
                    target
                        .options
                        .canary_url
                        .as_deref()
                        .unwrap_or("<--canary-url>"),
                    target
                        .options
                        .legacy_url
                        .as_deref()
                        .unwrap_or("<--legacy-url>"),
                    s.corpus
                ),
                _ => println!("   no cluster call"),
            }
        }
    }
    target.stop()?;
    Ok(recorder.calls().len())
}

fn print_queries(target: &KubernetesTarget, window: std::time::Duration) {
    let options = &target.options;
    let prometheus = options
        .prometheus_url
        .as_deref()
        .unwrap_or("<--prometheus-url>");
    let q = metrics::queries(
        Side::Canary,
        &options.canary_job,
        &options.stable_job,
        window,
    );
    println!("   Prometheus {prometheus}/api/v1/query (GET, none made):");
    for promql in [q.requests.clone(), q.errors.clone(), q.quantile(0.95)] {
        println!("     {promql}");
    }
    let [front_door, _] =
        metrics::front_door_queries(&options.namespace, &options.canary_deployment, window);
    println!("     {front_door}");
}
