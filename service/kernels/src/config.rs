//! The choices the kernels run with, set once per process by the program that uses them (from
//! its own settings) before the first layer is built: which dense kernel, and how many threads.
//! Unset, each is chosen from the CPU. This crate reads no environment.

use std::{fmt, str::FromStr, sync::OnceLock};

use crate::{linear::Kernel, panel::Micro};

/// The dense layers' kernel as asked for; [`KernelRequest::resolve`] turns it into the
/// [`Kernel`] this CPU runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum KernelRequest {
    /// The faster one on this CPU ([`Kernel::best`]).
    #[default]
    Auto,
    /// The `gemm` crate.
    Gemm,
    /// The panels on the fastest micro-kernel this CPU runs.
    Panels,
    /// The panels on this micro-kernel, where the CPU runs it.
    Micro(Micro),
    /// AMX tiles ([`crate::amx`]), where the CPU and OS run them.
    Amx,
}

impl KernelRequest {
    /// Every name [`KernelRequest::from_str`] takes.
    pub const NAMES: [&'static str; 7] = [
        "auto", "gemm", "panels", "amx", "avx512", "avx2", "portable",
    ];

    /// Its name: `auto`, `gemm`, `panels`, `amx`, or the micro-kernel's.
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Gemm => "gemm",
            Self::Panels => "panels",
            Self::Amx => "amx",
            Self::Micro(micro) => micro.name(),
        }
    }

    /// Whether this CPU (and build) runs what is asked for: false only for a micro-kernel or
    /// AMX where it cannot run them.
    pub fn available(self) -> bool {
        match self {
            Self::Micro(micro) => micro.available(),
            Self::Amx => crate::amx::available(),
            _ => true,
        }
    }

    /// The kernel this CPU runs for it: [`Kernel::best`] for `auto`, and in place of a
    /// micro-kernel or AMX it cannot run ([`KernelRequest::available`] tells that case).
    pub fn resolve(self) -> Kernel {
        match self {
            Self::Auto => Kernel::best(),
            Self::Gemm => Kernel::Gemm,
            Self::Panels => Kernel::Panels(Micro::best()),
            Self::Micro(micro) if micro.available() => Kernel::Panels(micro),
            Self::Micro(_) => Kernel::best(),
            Self::Amx if crate::amx::available() => Kernel::Amx,
            Self::Amx => Kernel::best(),
        }
    }
}

impl fmt::Display for KernelRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A kernel name that is not one of [`KernelRequest::NAMES`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKernel(pub String);

impl fmt::Display for UnknownKernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown kernel {:?}: expected one of {}",
            self.0,
            KernelRequest::NAMES.join(", ")
        )
    }
}

impl std::error::Error for UnknownKernel {}

impl FromStr for KernelRequest {
    type Err = UnknownKernel;

    /// One of [`KernelRequest::NAMES`]; an empty name is `auto`.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "" | "auto" => Ok(Self::Auto),
            "gemm" => Ok(Self::Gemm),
            "panels" => Ok(Self::Panels),
            "amx" => Ok(Self::Amx),
            other => Micro::from_name(other)
                .map(Self::Micro)
                .ok_or_else(|| UnknownKernel(other.to_string())),
        }
    }
}

/// The kernels' process-wide configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelConfig {
    /// The dense layers' kernel.
    pub dense: KernelRequest,
    /// Threads of the kernel pool ([`crate::threads`]); `None` or 0: one per core.
    pub threads: Option<usize>,
}

static CONFIG: OnceLock<KernelConfig> = OnceLock::new();

/// [`configure`] was called before; the first configuration stays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlreadyConfigured(pub KernelConfig);

impl fmt::Display for AlreadyConfigured {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the kernels are already configured ({:?})", self.0)
    }
}

impl std::error::Error for AlreadyConfigured {}

/// Sets the process's configuration, once, and starts the kernel pool at its size; returns the
/// pool's size in effect (a pool already started by an earlier use keeps its size). Layers
/// built before this call keep the kernel they were built on.
pub fn configure(config: KernelConfig) -> Result<usize, AlreadyConfigured> {
    if CONFIG.set(config).is_err() {
        return Err(AlreadyConfigured(current()));
    }
    Ok(crate::threads::init(config.threads))
}

/// The configuration in effect: the one [`configure`] set, else the default (everything chosen
/// from the CPU).
pub fn current() -> KernelConfig {
    CONFIG.get().copied().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_to_itself() {
        for name in KernelRequest::NAMES {
            let request: KernelRequest = name.parse().unwrap();
            assert_eq!(request.name(), name);
        }
        assert_eq!("".parse::<KernelRequest>(), Ok(KernelRequest::Auto));
    }

    #[test]
    fn an_unknown_name_lists_the_allowed_ones() {
        let err = "sse".parse::<KernelRequest>().unwrap_err();
        let shown = err.to_string();
        assert!(shown.contains("\"sse\""), "{shown}");
        for name in KernelRequest::NAMES {
            assert!(shown.contains(name), "{shown}");
        }
    }

    #[test]
    fn requests_resolve_to_what_this_cpu_runs() {
        assert_eq!(KernelRequest::Auto.resolve(), Kernel::best());
        assert_eq!(KernelRequest::Gemm.resolve(), Kernel::Gemm);
        assert_eq!(
            KernelRequest::Panels.resolve(),
            Kernel::Panels(Micro::best())
        );
        for micro in Micro::ALL {
            let request = KernelRequest::Micro(micro);
            assert_eq!(request.available(), micro.available());
            let want = if micro.available() {
                Kernel::Panels(micro)
            } else {
                Kernel::best()
            };
            assert_eq!(request.resolve(), want, "{micro:?}");
        }
        let want = if crate::amx::available() {
            Kernel::Amx
        } else {
            Kernel::best()
        };
        assert_eq!(KernelRequest::Amx.available(), crate::amx::available());
        assert_eq!(KernelRequest::Amx.resolve(), want);
    }
}
