//! The `kubernetes` target: the rollout on a cluster, through its API (kube's client).
//!
//! - the split: the ingress-nginx canary annotations of the Candle Ingress ([`ingress`]);
//! - replicas: the scale subresource of the Deployments, awaited until ready ([`deployments`]);
//! - the legacy teardown: only objects carrying the legacy label, all checked first ([`teardown`]);
//! - measurements: the cluster's Prometheus, with the local target's PromQL ([`metrics`]);
//! - traffic: production's own, plus the load tests' Job of a load generator at the stage's
//!   rate, watched and deleted, with the HPA's replicas read over the test ([`load_test`]);
//!   gates judge what the services answered (server side), client-side counters stay at zero;
//! - parity: straight to each service's URL, with the local target's comparison;
//! - `--dry-run`: every call printed and recorded ([`api::Recorder`]), none made.
//!
//! The trait is synchronous; the target runs kube's async client on its own single-threaded
//! Tokio runtime. Each action prints one `kubernetes: ...` line.

pub mod api;
pub mod deployments;
pub mod dry_run;
pub mod error;
pub mod ingress;
pub mod load_test;
pub mod metrics;
pub mod options;
pub mod teardown;

#[cfg(test)]
pub(crate) mod fake_apiserver;
#[cfg(test)]
mod tests;

use std::{
    path::Path,
    sync::Mutex,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{bail, Context};

pub use self::options::KubernetesOptions;
use self::{
    api::{Cluster, Recorder},
    error::TargetError,
    load_test::{HpaTrace, JobState, LoadSpec},
    metrics::ClusterMetrics,
    teardown::Teardown,
};
use super::{Measurement, Outcome, ParityReport, Side, Target, TrafficStats};
use crate::rollout::{judge::SideSample, parity, plan::step::ParityReference};

/// How often waits poll the API server.
const POLL: Duration = Duration::from_secs(2);

/// The rollout on a Kubernetes cluster (see the module documentation).
pub struct KubernetesTarget {
    options: KubernetesOptions,
    runtime: tokio::runtime::Runtime,
    /// Set by `start` (or given, for tests).
    cluster: Option<Cluster>,
    metrics: Option<ClusterMetrics>,
    poll: Duration,
    /// Names this process's load-test Jobs apart from any earlier run's.
    run_id: String,
    /// Load tests started so far.
    loads: u32,
    /// The load test under way, if any (read by `measure`, which samples the HPA).
    load: Mutex<Option<ActiveLoad>>,
}

/// A load test's Job while it runs.
struct ActiveLoad {
    spec: LoadSpec,
    trace: HpaTrace,
    /// When it should have finished, with `--rollout-timeout` to spare.
    deadline: Instant,
}

impl KubernetesTarget {
    /// A target with `options`; the cluster is reached at [`Target::start`] (through kube's
    /// standard inference: `$KUBECONFIG`, `~/.kube/config`, or the in-cluster account).
    pub fn new(options: KubernetesOptions) -> anyhow::Result<Self> {
        options.legacy_labels().map_err(TargetError::Options)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the kubernetes target's runtime")?;
        let metrics = options.prometheus_url.as_deref().map(|url| {
            ClusterMetrics::new(
                url,
                &options.canary_job,
                &options.stable_job,
                &options.namespace,
                &options.canary_deployment,
            )
        });
        let cluster = options
            .dry_run
            .then(|| Cluster::DryRun(Recorder::default()));
        Ok(Self {
            options,
            runtime,
            cluster,
            metrics,
            poll: POLL,
            run_id: run_id(),
            loads: 0,
            load: Mutex::new(None),
        })
    }

    /// A target on the API server of `config` (tests point it at a fake), polling every `poll`.
    #[cfg(test)]
    pub fn with_config(
        options: KubernetesOptions,
        config: kube::Config,
        poll: Duration,
    ) -> anyhow::Result<Self> {
        let mut target = Self::new(options)?;
        if !target.options.dry_run {
            let client = {
                let _entered = target.runtime.enter();
                kube::Client::try_from(config).context("building the Kubernetes client")?
            };
            target.cluster = Some(Cluster::Live(client));
        }
        target.poll = poll;
        Ok(target)
    }

    /// The dry run's recorder, when this is one.
    pub fn recorder(&self) -> Option<Recorder> {
        match &self.cluster {
            Some(Cluster::DryRun(recorder)) => Some(recorder.clone()),
            _ => None,
        }
    }

    fn cluster(&self) -> anyhow::Result<Cluster> {
        self.cluster
            .clone()
            .context("the kubernetes target is not started")
    }

    fn metrics(&self) -> anyhow::Result<&ClusterMetrics> {
        self.metrics.as_ref().context(
            "the kubernetes target measures through the cluster's Prometheus: pass \
             --prometheus-url (e.g. a `kubectl port-forward` to it)",
        )
    }

    fn namespace(&self) -> &str {
        &self.options.namespace
    }

    /// Adds a reading of the canary's HPA to the load test under way, if one is.
    fn sample_hpa(&self) {
        let Ok(mut load) = self.load.lock() else {
            return;
        };
        let (Some(active), Ok(cluster)) = (load.as_mut(), self.cluster()) else {
            return;
        };
        let deployment = &self.options.canary_deployment;
        let reading = self.runtime.block_on(load_test::hpa_replicas(
            &cluster,
            self.namespace(),
            deployment,
        ));
        // A reading that fails costs a sample, not the gate.
        if let Ok(reading) = reading {
            active.trace.push(reading);
        }
    }
}

/// A short id, different for each process: the base-36 clock in milliseconds, last six digits.
fn run_id() -> String {
    let mut millis = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let mut digits = Vec::new();
    for _ in 0..6 {
        digits.push(char::from_digit((millis % 36) as u32, 36).unwrap_or('0'));
        millis /= 36;
    }
    digits.into_iter().rev().collect()
}

impl Target for KubernetesTarget {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    fn start(&mut self) -> anyhow::Result<()> {
        if self.cluster.is_some() {
            return Ok(());
        }
        let context = self.options.context.clone();
        let client = self.runtime.block_on(async move {
            let config = match context {
                Some(context) => kube::Config::from_kubeconfig(&kube::config::KubeConfigOptions {
                    context: Some(context.clone()),
                    ..Default::default()
                })
                .await
                .with_context(|| format!("reading kubeconfig context `{context}`"))?,
                None => kube::Config::infer()
                    .await
                    .context("finding the cluster (KUBECONFIG, ~/.kube/config or in-cluster)")?,
            };
            let url = config.cluster_url.to_string();
            let client =
                kube::Client::try_from(config).context("building the Kubernetes client")?;
            anyhow::Ok((client, url))
        })?;
        println!(
            "kubernetes: API server {} (namespace {}), Prometheus {}",
            client.1,
            self.namespace(),
            self.metrics
                .as_ref()
                .map_or("not given (gates cannot measure)", ClusterMetrics::url)
        );
        self.cluster = Some(Cluster::Live(client.0));
        Ok(())
    }

    fn set_canary_weight(&mut self, percent: u8) -> anyhow::Result<()> {
        if percent > 100 {
            bail!("canary weight {percent}% is over 100%");
        }
        let cluster = self.cluster()?;
        let (namespace, name) = (self.namespace(), &self.options.canary_ingress);
        let before = self
            .runtime
            .block_on(ingress::set_weight(&cluster, namespace, name, percent))?;
        match before {
            Some(before) => {
                println!("kubernetes: Ingress {name} canary weight {before}% -> {percent}%")
            }
            None => println!("kubernetes: Ingress {name} canary weight -> {percent}%"),
        }
        Ok(())
    }

    fn start_traffic(&mut self, rate: u32) -> anyhow::Result<()> {
        println!(
            "kubernetes: no synthetic traffic on a cluster ({rate} req/s asked): gates judge \
             the requests production sends"
        );
        Ok(())
    }

    fn start_load(&mut self, rate: u32, duration: Duration) -> anyhow::Result<()> {
        // A test left running (a resumed step) ends before the next begins.
        self.finish_load()?;
        let cluster = self.cluster()?;
        let spec = LoadSpec {
            name: format!("akidb-load-test-{}-{}", self.run_id, self.loads),
            image: self.options.load_image.clone(),
            url: self.options.load_url(),
            rate,
            duration,
        };
        let namespace = self.namespace().to_string();
        let deployment = self.options.canary_deployment.clone();
        // The HPA is read before the load starts: that reading is the baseline.
        let first = self.runtime.block_on(async {
            let first = load_test::hpa_replicas(&cluster, &namespace, &deployment).await?;
            load_test::create(&cluster, &namespace, &spec).await?;
            Ok::<_, TargetError>(first)
        })?;
        self.loads += 1;
        println!(
            "kubernetes: load test Job {} ({}): {rate} req/s for {} against {}",
            spec.name,
            spec.image,
            humantime::format_duration(duration),
            spec.url
        );
        let mut trace = HpaTrace::default();
        trace.push(first);
        let deadline = Instant::now() + duration + self.options.rollout_timeout;
        *self
            .load
            .lock()
            .map_err(|_| anyhow::anyhow!("load test state poisoned"))? = Some(ActiveLoad {
            spec,
            trace,
            deadline,
        });
        Ok(())
    }

    fn finish_load(&mut self) -> anyhow::Result<Option<String>> {
        let active = self
            .load
            .lock()
            .map_err(|_| anyhow::anyhow!("load test state poisoned"))?
            .take();
        let Some(ActiveLoad {
            spec,
            mut trace,
            deadline,
        }) = active
        else {
            return Ok(None);
        };
        let cluster = self.cluster()?;
        let (namespace, poll) = (self.namespace().to_string(), self.poll);
        let deployment = self.options.canary_deployment.clone();
        let ended = self.runtime.block_on(async {
            loop {
                let state = load_test::state(&cluster, &namespace, &spec.name).await?;
                trace.push(load_test::hpa_replicas(&cluster, &namespace, &deployment).await?);
                match state {
                    JobState::Succeeded => return Ok(()),
                    JobState::Failed(reason) => {
                        let name = spec.name.clone();
                        return Err(TargetError::LoadTest { name, reason });
                    }
                    JobState::Running if Instant::now() >= deadline => {
                        let name = spec.name.clone();
                        let reason = "still running past its duration and --rollout-timeout";
                        return Err(TargetError::LoadTest {
                            name,
                            reason: reason.into(),
                        });
                    }
                    JobState::Running => tokio::time::sleep(poll).await,
                }
            }
        });
        // Deleted whatever the outcome: a generator must not outlive its step.
        let deleted = self
            .runtime
            .block_on(load_test::delete(&cluster, &namespace, &spec.name));
        ended?;
        deleted?;
        let outcome = if cluster.is_dry_run() {
            "(dry run)"
        } else {
            "succeeded and was deleted;"
        };
        let text = format!(
            "load test Job {} ({} req/s for {} against {}) {outcome} {trace}",
            spec.name,
            spec.rate,
            humantime::format_duration(spec.duration),
            spec.url
        );
        println!("kubernetes: {text}");
        Ok(Some(text))
    }

    fn take_traffic(&mut self) -> anyhow::Result<TrafficStats> {
        // Nothing is generated, so the client side saw nothing; measure() has the real counts.
        Ok(TrafficStats::default())
    }

    fn front_door(&self, side: Side, window: Duration) -> anyhow::Result<(u64, u64)> {
        if side != Side::Canary {
            bail!("the kubernetes target reads the front door for the canary only");
        }
        self.metrics()?.front_door(window)
    }

    fn measure(&self, side: Side, window: Duration) -> anyhow::Result<Measurement> {
        self.sample_hpa();
        self.metrics()?.measure(side, window)
    }

    fn side_sample(&self, side: Side, window: Duration) -> anyhow::Result<SideSample> {
        self.metrics()?.side_sample(side, window)
    }

    fn parity(&self, corpus: &Path, against: ParityReference) -> anyhow::Result<ParityReport> {
        let candle = self.options.canary_url.clone().context(
            "parity on the kubernetes target calls the services directly: pass --canary-url \
             (and --legacy-url to compare with the legacy service)",
        )?;
        let services = parity::Services {
            candle,
            legacy: self.options.legacy_url.clone(),
        };
        let run = parity::check(&services, corpus, against)?;
        println!(
            "kubernetes: parity on {} ({}): {} texts, min cosine {:.8}, {} token mismatches",
            corpus.display(),
            run.model,
            run.report.texts,
            run.report.min_cosine,
            run.report.token_mismatches
        );
        Ok(run.report)
    }

    fn scale(&mut self, deployment: &str, replicas: u32) -> anyhow::Result<Outcome> {
        let cluster = self.cluster()?;
        let namespace = self.namespace().to_string();
        let (timeout, poll) = (self.options.rollout_timeout, self.poll);
        let text = self.runtime.block_on(async {
            deployments::set_replicas(&cluster, &namespace, deployment, replicas).await?;
            let ready =
                deployments::await_ready(&cluster, &namespace, deployment, timeout, poll).await?;
            let hpa = deployments::hpa_summary(&cluster, &namespace, deployment, replicas).await?;
            let mut text = if cluster.is_dry_run() {
                format!("Deployment {deployment} scaled to {replicas} (dry run)")
            } else {
                format!("Deployment {deployment}: {ready}/{replicas} replicas ready")
            };
            if let Some(hpa) = hpa {
                text.push_str(&format!("; {hpa}"));
            }
            Ok::<_, TargetError>(text)
        })?;
        println!("kubernetes: {text}");
        Ok(Outcome::Done(text))
    }

    fn teardown_legacy(&mut self, deployment: &str, grace: Duration) -> anyhow::Result<Outcome> {
        if deployment != self.options.legacy_deployment {
            return Err(TargetError::TeardownRefused(format!(
                "the plan retires `{deployment}`, but the legacy deployment is `{}` \
                 (--legacy-deployment)",
                self.options.legacy_deployment
            ))
            .into());
        }
        let cluster = self.cluster()?;
        let labels = self.options.legacy_labels().map_err(TargetError::Options)?;
        let teardown = Teardown {
            namespace: self.namespace(),
            deployment,
            labels: &labels,
            selector: &self.options.legacy_selector,
            canary_ingress: &self.options.canary_ingress,
            canary_deployment: &self.options.canary_deployment,
            grace,
            timeout: self.options.rollout_timeout,
            poll: self.poll,
        };
        let text = self.runtime.block_on(teardown.run(&cluster))?;
        println!("kubernetes: legacy teardown: {text}");
        Ok(Outcome::Done(text))
    }

    fn inject_fault(&mut self) -> anyhow::Result<()> {
        bail!(
            "--inject-fault breaks the canary on purpose: the kubernetes target refuses it on a \
             real cluster (prove the rollback on the local target)"
        )
    }

    fn stop(&mut self) -> anyhow::Result<()> {
        let active = self.load.lock().ok().and_then(|mut load| load.take());
        if let (Some(active), Ok(cluster)) = (active, self.cluster()) {
            let name = &active.spec.name;
            self.runtime
                .block_on(load_test::delete(&cluster, self.namespace(), name))?;
            println!("kubernetes: load test Job {name} stopped and deleted");
        }
        if let Some(recorder) = self.recorder() {
            println!(
                "kubernetes (dry run): {} API calls printed, none made",
                recorder.calls().len()
            );
        }
        Ok(())
    }
}
