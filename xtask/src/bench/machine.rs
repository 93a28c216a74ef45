//! What machine a run measured: CPU model, cores and the SIMD extensions kernels care about.

use super::report::Machine;

/// CPU flags worth naming in a benchmark (`/proc/cpuinfo` spelling).
const SIMD_FLAGS: &[&str] = &[
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "amx_bf16",
    "amx_int8",
];

/// This machine.
pub fn describe() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let mut machine = from_cpuinfo(&cpuinfo);
    machine.cores = std::thread::available_parallelism().map_or(0, usize::from);
    machine
}

fn from_cpuinfo(cpuinfo: &str) -> Machine {
    let field = |name: &str| {
        cpuinfo.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == name).then(|| value.trim().to_string())
        })
    };
    let flags = field("flags").unwrap_or_default();
    let present: Vec<&str> = flags.split_whitespace().collect();
    Machine {
        cpu: field("model name").unwrap_or_else(|| "unknown".into()),
        cores: 0,
        simd: SIMD_FLAGS
            .iter()
            .filter(|f| present.contains(f))
            .map(|f| f.to_string())
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_cpu_and_its_vector_extensions() {
        let cpuinfo = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse avx avx2 fma avx512f avx512_bf16\n";
        let machine = from_cpuinfo(cpuinfo);
        assert_eq!(machine.cpu, "AMD EPYC");
        assert_eq!(machine.simd, ["avx2", "fma", "avx512f", "avx512_bf16"]);
    }
}
