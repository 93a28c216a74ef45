//! The project's local stack: both services as supervised child processes, nginx splitting
//! traffic between them with ingress-nginx's canary semantics, Prometheus scraping both, and an
//! open-loop traffic generator through the front door, all on 127.0.0.1; and an OCI registry
//! for what a release pushes (`registry`).
//!
//! The local rollout target drives it (`rollout::targets::local`); the bench, the soak, the
//! monitoring checks and the kubernetes target's tests use its parts. It knows nothing of
//! plans, gates or runs.

pub mod candle;
pub mod legacy;
pub mod nginx;
pub mod programs;
pub mod prometheus;
pub mod registry;
pub mod supervisor;
pub mod traffic;
