//! The pods' memory limit against the plan's `slos.memory_per_pod`: the chart must not let a
//! pod grow past what the rollout promises.

use serde_yaml_ng::Value;

use super::helm;

/// Bytes of a Kubernetes quantity (`4Gi`, `512M`, `1e9`, `1073741824`); `None` when it is
/// not one.
pub fn quantity_bytes(quantity: &str) -> Option<u64> {
    let split = quantity
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(quantity.len());
    let (number, suffix) = quantity.split_at(split);
    let multiplier: f64 = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        _ if suffix.starts_with('e') => {
            return number
                .parse::<f64>()
                .ok()
                .zip(suffix[1..].parse::<i32>().ok())
                .map(|(n, e)| (n * 10f64.powi(e)) as u64)
        }
        _ => return None,
    };
    let number: f64 = number.parse().ok()?;
    (number >= 0.0).then_some((number * multiplier) as u64)
}

/// Every container's `resources.limits.memory` in the rendered Deployments, by container name;
/// a container without one is reported with `None`.
pub fn memory_limits(objects: &[Value]) -> Vec<(String, Option<String>)> {
    objects
        .iter()
        .filter(|object| helm::kind(object) == "Deployment")
        .filter_map(|d| d.get("spec")?.get("template")?.get("spec"))
        .flat_map(|pod| {
            ["initContainers", "containers"]
                .into_iter()
                .filter_map(|key| pod.get(key)?.as_sequence())
                .flatten()
        })
        .map(|container| {
            let name = container.get("name").and_then(Value::as_str).unwrap_or("?");
            let limit = container
                .get("resources")
                .and_then(|r| r.get("limits")?.get("memory"))
                .and_then(Value::as_str)
                .map(str::to_string);
            (name.to_string(), limit)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_in_binary_and_decimal_units() {
        assert_eq!(quantity_bytes("4Gi"), Some(4 << 30));
        assert_eq!(quantity_bytes("512Mi"), Some(512 << 20));
        assert_eq!(quantity_bytes("1G"), Some(1_000_000_000));
        assert_eq!(quantity_bytes("1e3"), Some(1000));
        assert_eq!(quantity_bytes("100"), Some(100));
        assert_eq!(quantity_bytes("4GB"), None);
    }
}
