//! What machine a run measured: CPU model, cores, the SIMD extensions kernels care about, the
//! kernels the engine runs on them, and one core's f32 multiply-add peak.

use super::report::{FmaPeak, Machine};

/// CPU flags worth naming in a benchmark (`/proc/cpuinfo` spelling: `flags` on x86,
/// `Features` on Arm).
const SIMD_FLAGS: &[&str] = &[
    "avx2",
    "fma",
    "f16c",
    "avx_vnni",
    "avx512f",
    "avx512dq",
    "avx512cd",
    "avx512bw",
    "avx512vl",
    "avx512ifma",
    "avx512vbmi",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_bf16",
    "amx_int8",
    "asimd",
    "asimddp",
    "sve",
    "sve2",
    "i8mm",
    "bf16",
];

/// This machine, and the kernels the benchmarked binaries choose on it: they inherit this
/// process's environment, so `AKIDB_MATMUL` (the service's `embedding.matmul`) is read here as
/// the service reads it.
pub fn describe() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let mut machine = from_cpuinfo(&cpuinfo);
    machine.cores = std::thread::available_parallelism().map_or(0, usize::from);
    let requested = std::env::var("AKIDB_MATMUL")
        .ok()
        .and_then(|name| name.parse().ok())
        .unwrap_or_default();
    machine.kernels = akidb_kernels::choice::Choice::of(requested).to_string();
    machine.fma_peak = akidb_kernels::peak::f32_multiply_add(std::time::Duration::from_millis(300))
        .map(|p| FmaPeak {
            isa: p.isa.to_string(),
            gflops_per_core: p.gflops,
        });
    machine
}

fn from_cpuinfo(cpuinfo: &str) -> Machine {
    let field = |name: &str| {
        cpuinfo.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == name).then(|| value.trim().to_string())
        })
    };
    let flags = field("flags")
        .or_else(|| field("Features"))
        .unwrap_or_default();
    let present: Vec<&str> = flags.split_whitespace().collect();
    Machine {
        cpu: field("model name").unwrap_or_else(|| "unknown".into()),
        cores: 0,
        simd: SIMD_FLAGS
            .iter()
            .filter(|f| present.contains(f))
            .map(|f| f.to_string())
            .collect(),
        kernels: String::new(),
        fma_peak: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_cpu_and_its_vector_extensions() {
        let cpuinfo = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse avx avx2 fma avx512f avx512dq avx512_bf16\n";
        let machine = from_cpuinfo(cpuinfo);
        assert_eq!(machine.cpu, "AMD EPYC");
        assert_eq!(
            machine.simd,
            ["avx2", "fma", "avx512f", "avx512dq", "avx512_bf16"]
        );
    }

    #[test]
    fn reads_an_arm_cpus_features() {
        let cpuinfo = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes asimddp sve i8mm\n";
        let machine = from_cpuinfo(cpuinfo);
        assert_eq!(machine.cpu, "unknown");
        assert_eq!(machine.simd, ["asimd", "asimddp", "sve", "i8mm"]);
    }

    #[test]
    fn names_the_kernels_that_run_here() {
        let machine = describe();
        assert!(
            machine.kernels.starts_with("dense ") && machine.kernels.contains("element-wise "),
            "{}",
            machine.kernels
        );
    }
}
