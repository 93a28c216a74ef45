//! What the kubernetes target acts on: the cluster (kube's standard configuration inference),
//! the namespace and object names, the cluster's Prometheus, the legacy label and the timeouts.

use std::time::Duration;

/// The legacy service's label: what `mlx_teardown` may delete carries it.
pub const LEGACY_SELECTOR: &str = "app.kubernetes.io/name=akidb-mlx";

/// The default load generator: oha's own image, pinned.
pub const LOAD_IMAGE: &str = "ghcr.io/hatoo/oha:1.15";

/// Options of `--target kubernetes`. Each falls back to an `AKIDB_*` environment variable (the
/// rollout workflow sets them from the GitHub environment's variables).
#[derive(Clone, Debug, clap::Args)]
pub struct KubernetesOptions {
    /// Kubeconfig context [default: the current context; the cluster comes from $KUBECONFIG,
    /// ~/.kube/config or the in-cluster service account, as kubectl finds it]
    #[arg(long = "kube-context", value_name = "NAME", env = "AKIDB_KUBE_CONTEXT")]
    pub context: Option<String>,
    /// Namespace of every object the rollout touches.
    #[arg(
        long = "kube-namespace",
        value_name = "NS",
        env = "AKIDB_KUBE_NAMESPACE",
        default_value = "production"
    )]
    pub namespace: String,
    /// The canary Ingress whose weight the rollout moves (ingress-nginx canary annotations).
    #[arg(
        long,
        value_name = "NAME",
        default_value = "akidb-candle-canary",
        env = "AKIDB_CANARY_INGRESS"
    )]
    pub canary_ingress: String,
    /// The Candle Deployment (the plan's canary deployment).
    #[arg(
        long,
        value_name = "NAME",
        default_value = "akidb-candle",
        env = "AKIDB_CANARY_DEPLOYMENT"
    )]
    pub canary_deployment: String,
    /// The legacy Deployment (the plan's `mlx_teardown` deployment).
    #[arg(
        long,
        value_name = "NAME",
        default_value = "akidb-mlx",
        env = "AKIDB_LEGACY_DEPLOYMENT"
    )]
    pub legacy_deployment: String,
    /// Label selector of the legacy service's objects: teardown deletes only what carries it.
    #[arg(long, value_name = "SELECTOR", default_value = LEGACY_SELECTOR, env = "AKIDB_LEGACY_SELECTOR")]
    pub legacy_selector: String,
    /// The cluster's Prometheus (gates and rollback triggers query it), e.g.
    /// http://localhost:9090 through `kubectl port-forward`.
    #[arg(long, value_name = "URL", env = "AKIDB_PROMETHEUS_URL")]
    pub prometheus_url: Option<String>,
    /// Prometheus job of the Candle service's series.
    #[arg(
        long,
        value_name = "JOB",
        default_value = "akidb-candle",
        env = "AKIDB_CANARY_JOB"
    )]
    pub canary_job: String,
    /// Prometheus job of the legacy service's series.
    #[arg(
        long,
        value_name = "JOB",
        default_value = "akidb-mlx",
        env = "AKIDB_STABLE_JOB"
    )]
    pub stable_job: String,
    /// The Candle service's root URL, for parity checks (e.g. a port-forward).
    #[arg(long, value_name = "URL", env = "AKIDB_CANARY_URL")]
    pub canary_url: Option<String>,
    /// The legacy service's root URL, for parity checks against it.
    #[arg(long, value_name = "URL", env = "AKIDB_LEGACY_URL")]
    pub legacy_url: Option<String>,
    /// The load generator of `load_test` (a Job's image, taking oha's command line).
    #[arg(long, value_name = "IMAGE", default_value = LOAD_IMAGE)]
    pub load_image: String,
    /// Where `load_test` sends its requests [default: the Candle Service,
    /// http://<canary-deployment>.<namespace>.svc:8080/api/v1/embed].
    #[arg(long, value_name = "URL")]
    pub load_url: Option<String>,
    /// How long `scale` waits for every replica to be ready.
    #[arg(long, value_name = "DURATION", default_value = "10m", env = "AKIDB_ROLLOUT_TIMEOUT", value_parser = humantime::parse_duration)]
    pub rollout_timeout: Duration,
    /// Print every API call the target would make (method, path, body); make none.
    #[arg(long)]
    pub dry_run: bool,
}

impl KubernetesOptions {
    /// The URL `load_test` drives (see `--load-url`).
    pub fn load_url(&self) -> String {
        self.load_url.clone().unwrap_or_else(|| {
            format!(
                "http://{}.{}.svc:8080/api/v1/embed",
                self.canary_deployment, self.namespace
            )
        })
    }

    /// The defaults (those of the command line) for `namespace`.
    #[cfg(test)]
    pub fn for_namespace(namespace: &str) -> Self {
        use clap::Parser;
        #[derive(Parser)]
        struct Command {
            #[command(flatten)]
            options: KubernetesOptions,
        }
        Command::parse_from(["kubernetes", "--kube-namespace", namespace]).options
    }

    /// The legacy selector as `(key, value)` pairs; only equality terms are accepted, since
    /// the teardown must be able to check each label on each object it deletes.
    pub fn legacy_labels(&self) -> Result<Vec<(String, String)>, String> {
        let mut labels = Vec::new();
        for term in self.legacy_selector.split(',').map(str::trim) {
            let Some((key, value)) = term.split_once('=') else {
                return Err(format!(
                    "--legacy-selector `{}`: `{term}` is not a `key=value` term",
                    self.legacy_selector
                ));
            };
            let (key, value) = (key.trim_end_matches('='), value.trim_start_matches('='));
            if key.is_empty() || value.is_empty() || key.ends_with('!') {
                return Err(format!(
                    "--legacy-selector `{}`: `{term}` is not a `key=value` term",
                    self.legacy_selector
                ));
            }
            labels.push((key.to_string(), value.to_string()));
        }
        Ok(labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_legacy_selector_takes_equality_terms_only() {
        let mut options = KubernetesOptions::for_namespace("p");
        options.legacy_selector = "app.kubernetes.io/name=akidb-mlx, tier==legacy".into();
        assert_eq!(
            options.legacy_labels().expect("valid"),
            vec![
                (
                    "app.kubernetes.io/name".to_string(),
                    "akidb-mlx".to_string()
                ),
                ("tier".to_string(), "legacy".to_string())
            ]
        );
        for bad in ["app", "app!=x", "app in (a,b)", "=x"] {
            options.legacy_selector = bad.into();
            assert!(options.legacy_labels().is_err(), "{bad}");
        }
    }
}
