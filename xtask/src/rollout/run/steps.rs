//! What each step kind does on the target, and how a gate's verdict ends its step.

use super::{load_test, sample::Sample, *};
use crate::rollout::notify::Notifier;

impl Runner<'_> {
    pub(super) fn gate(
        &mut self,
        stage: &Stage,
        index: usize,
        kind: &str,
        verdict: Verdict,
        state: &mut RunState,
    ) -> StepEnd {
        state.stage(&stage.id).gates.push(GateRecord {
            step: index,
            kind: kind.to_string(),
            verdict: verdict.label().to_string(),
            detail: verdict.detail().to_string(),
        });
        self.observe(Event::Gate {
            stage: stage.id.clone(),
            kind: kind.into(),
            verdict: verdict.label().into(),
            detail: verdict.detail().into(),
        });
        match verdict {
            Verdict::Pass(d) => StepEnd::Done(d),
            Verdict::Fail(d) => StepEnd::Failed(d),
            Verdict::Inconclusive(d) => StepEnd::Inconclusive(d),
        }
    }

    pub(super) fn execute_step(
        &mut self,
        stage: &Stage,
        index: usize,
        step: &Step,
        state: &mut RunState,
    ) -> anyhow::Result<StepEnd> {
        let scale = self.plan.time_scale();
        Ok(match step {
            Step::LoadTest(s) => {
                let rate = self.capped(s.rate);
                state.traffic_rate = Some(s.rate);
                self.save(state)?;
                let duration = scale.apply(s.duration);
                self.act(&format!("starting traffic at {rate} req/s"), |t| {
                    t.start_load(rate, duration)
                })?;
                let key = format!("{}#{index}", stage.id);
                let (side, end) = self.load_test(duration, state, &key)?;
                if let Some(end) = end {
                    return Ok(end);
                }
                if let Some(seen) = self.target.finish_load()? {
                    self.audit.record(&stage.id, "load_test", "ok", &seen)?;
                }
                let min = scale
                    .apply_count(u64::from(s.rate) * s.duration.as_secs() / 2)
                    .min(u64::from(rate));
                let window = self.at_current_split(duration);
                let mut verdict = match self.measure(side, window) {
                    Ok(m) => judge(&m, &s.thresholds, min),
                    Err(error) => gate::unmeasurable(&error),
                };
                if side == Side::Canary {
                    verdict = self.with_front_door(verdict, window, &s.thresholds);
                }
                if side == Side::Canary && state.weight == 0 {
                    verdict = load_test::candidate(verdict);
                }
                let verdict = self.compared(
                    &stage.id,
                    (index, "load_test"),
                    s.compare.as_ref(),
                    window,
                    verdict,
                    state,
                );
                self.gate(stage, index, "load_test", verdict, state)
            }
            Step::Parity(s) => {
                let corpus = self.corpus_root.join(&s.corpus);
                let against = s.against;
                let report = self.act(&format!("parity check on {}", corpus.display()), |t| {
                    t.parity(&corpus, against)
                })?;
                let detail = format!(
                    "{} texts vs {}: min cosine {:.7}, token-count mismatches {}",
                    report.texts,
                    match s.against {
                        ParityReference::Legacy => "the legacy service",
                        ParityReference::Golden => "the reference vectors",
                    },
                    report.min_cosine,
                    report.token_mismatches
                );
                let verdict = if report.texts == 0 {
                    Verdict::Inconclusive(format!("{}: no texts", corpus.display()))
                } else if report.min_cosine >= s.min_cosine && report.token_mismatches == 0 {
                    Verdict::Pass(detail)
                } else {
                    Verdict::Fail(format!("{detail} (need cosine >= {})", s.min_cosine))
                };
                self.gate(stage, index, "parity", verdict, state)
            }
            Step::Canary(s) => {
                let weight = s.weight.percent();
                let before = self.target.take_traffic()?;
                self.act(&format!("setting canary weight {weight}%"), |t| {
                    t.set_canary_weight(weight)
                })?;
                self.shifted_at = Instant::now();
                state.weight = weight;
                let record = state.stage(&stage.id);
                state::merge(&mut record.traffic, &before);
                record.after_shift = Some(Default::default());
                self.save(state)?;
                if self.options.inject_fault.as_deref() == Some(stage.id.as_str())
                    || state.inject_fault.as_deref() == Some(stage.id.as_str())
                {
                    self.target.inject_fault()?;
                    self.fault_at = Some(Instant::now());
                    self.audit.record(
                        &stage.id,
                        "inject_fault",
                        "ok",
                        "every canary request fails from now on",
                    )?;
                }
                StepEnd::Done(format!("canary weight {weight}%"))
            }
            Step::SloCheck(s) => {
                let window = scale.apply(s.window);
                // The plan's minimum assumes the plan's traffic; a run capped by --max-rate
                // sends proportionally less, so it expects proportionally fewer requests.
                let planned = scale.apply_count(s.min_requests);
                let min_requests = match (state.traffic_rate, self.options.max_rate) {
                    (Some(rate), Some(max)) if max < rate && rate > 0 => {
                        (planned * u64::from(max)).div_ceil(u64::from(rate)).max(1)
                    }
                    _ => planned,
                };
                let verdict = match self.sample(
                    &stage.id,
                    Side::Canary,
                    window,
                    gate::sample_needed(min_requests),
                    &s.thresholds,
                    state,
                )? {
                    Sample::Measured(m) => judge(&m, &s.thresholds, min_requests),
                    Sample::Unmeasurable(error) => gate::unmeasurable(&error),
                    Sample::Ended(end) => return Ok(end),
                };
                let verdict = self.with_front_door(verdict, window, &s.thresholds);
                let window = self.at_current_split(window);
                let verdict = self.compared(
                    &stage.id,
                    (index, "slo_check"),
                    s.compare.as_ref(),
                    window,
                    verdict,
                    state,
                );
                self.gate(stage, index, "slo_check", verdict, state)
            }
            Step::Soak(s) => {
                let duration = scale.apply(s.duration);
                let key = format!("{}#{index}", stage.id);
                if let Some(end) = self.hold(duration, state, Some(&key))? {
                    return Ok(end);
                }
                let side = if state.weight == 0 {
                    Side::Stable
                } else {
                    Side::Canary
                };
                let mut verdict = match self.sample(
                    &stage.id,
                    side,
                    duration,
                    gate::sample_needed(1),
                    &s.thresholds,
                    state,
                )? {
                    Sample::Measured(m) => judge(&m, &s.thresholds, 1),
                    Sample::Unmeasurable(error) => gate::unmeasurable(&error),
                    Sample::Ended(end) => return Ok(end),
                };
                if side == Side::Canary {
                    verdict = self.with_front_door(verdict, duration, &s.thresholds);
                }
                self.gate(stage, index, "soak", verdict, state)
            }
            Step::Wait(s) => {
                let key = format!("{}#{index}", stage.id);
                match self.hold(scale.apply(s.duration), state, Some(&key))? {
                    Some(end) => return Ok(end),
                    None => StepEnd::Done(format!("waited {:?}", scale.apply(s.duration))),
                }
            }
            Step::Scale(s) => outcome(self.act(
                &format!("scaling {} to {}", s.deployment, s.replicas),
                |t| t.scale(&s.deployment, s.replicas),
            )?),
            Step::MlxTeardown(s) => {
                let key = format!("{}#{index}", stage.id);
                match self.teardown(&s.deployment, scale.apply(s.grace_period), state, &key)? {
                    Ok(done) => done,
                    Err(end) => return Ok(end),
                }
            }
            Step::Notify(s) => {
                // Never fails the step: an unreachable webhook is reported, not a reason to stop.
                let delivery = Notifier::from_env().deliver(&s.channel, &s.message);
                let detail = format!("{}: {} ({delivery})", s.channel, s.message);
                state.stage(&stage.id).gates.push(GateRecord {
                    step: index,
                    kind: "notify".into(),
                    verdict: delivery.result().into(),
                    detail: detail.clone(),
                });
                StepEnd::Done(detail)
            }
            Step::GaTag(s) => outcome(publish::ga_tag(s, self.options.publish)?),
            Step::HelmPush(s) => outcome(publish::helm_push(s, self.options.publish)?),
            Step::ImagePush(s) => outcome(publish::image_push(s, self.options.publish)?),
        })
    }
}
