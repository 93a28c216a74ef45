//! Where a push goes: `oci://HOST/PATH` chart registries, `HOST/NAME:TAG` image references,
//! and whether a host may be spoken to over plain HTTP.

use std::net::IpAddr;

use oci_client::{client::ClientProtocol, Reference};

use super::error::OciError;

/// A chart registry, `oci://HOST[:PORT][/PATH]` as `helm push` takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChartRegistry {
    /// `HOST[:PORT]`.
    pub host: String,
    /// The namespace the chart goes under, possibly empty.
    pub path: String,
}

impl ChartRegistry {
    /// Parses `oci://HOST[:PORT][/PATH]`.
    pub fn parse(input: &str) -> Result<Self, OciError> {
        let bad = |reason: &str| OciError::Reference {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        let rest = input.strip_prefix("oci://").ok_or_else(|| {
            bad("a chart registry starts with oci://, e.g. oci://ghcr.io/akidb/charts")
        })?;
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        check_host(host).map_err(|reason| bad(&reason))?;
        let path = path.trim_end_matches('/');
        if path.split('/').any(str::is_empty) && !path.is_empty() {
            return Err(bad("the path has an empty segment"));
        }
        Ok(Self {
            host: host.to_string(),
            path: path.to_string(),
        })
    }

    /// The reference of chart `name` at `version`: helm's tag is the version with `+`
    /// written `_` (tags may not hold `+`).
    pub fn chart_reference(&self, name: &str, version: &str) -> Result<Reference, OciError> {
        let repository = if self.path.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.path)
        };
        let text = format!("{}/{repository}:{}", self.host, version.replace('+', "_"));
        parse_reference(&text)
    }
}

/// Parses `HOST[:PORT]/NAME[:TAG][@DIGEST]`. The host is required: a bare `name:tag` would
/// silently mean Docker Hub.
pub fn image_reference(input: &str) -> Result<Reference, OciError> {
    let bad = |reason: String| OciError::Reference {
        input: input.to_string(),
        reason,
    };
    let (host, _) = input.split_once('/').ok_or_else(|| {
        bad("an image reference is HOST/NAME:TAG, e.g. ghcr.io/akidb/embedding:v2.0.0".into())
    })?;
    if !(host.contains('.') || host.contains(':') || host == "localhost") {
        return Err(bad(format!(
            "`{host}` is not a registry host (no `.` or `:`); name the registry, e.g. ghcr.io/{input}"
        )));
    }
    check_host(host).map_err(bad)?;
    // The parser would default a missing tag to `latest`; a release names its tag.
    let last = input.rsplit('/').next().unwrap_or_default();
    if !last.contains(':') && !last.contains('@') {
        return Err(bad("no tag; add one, e.g. :v2.0.0".into()));
    }
    parse_reference(input)
}

/// Joins a plan step's `registry` (`ghcr.io`) and `image` (`akidb/embedding:v2.0.0`).
pub fn image_in_registry(registry: &str, image: &str) -> Result<Reference, OciError> {
    let registry = registry.trim_end_matches('/');
    image_reference(&format!("{registry}/{image}"))
}

fn parse_reference(text: &str) -> Result<Reference, OciError> {
    let reference = Reference::try_from(text).map_err(|e| OciError::Reference {
        input: text.to_string(),
        reason: e.to_string(),
    })?;
    // The parser lowercases nothing and accepts what it can; make sure it kept the host.
    if !text.starts_with(reference.registry()) {
        return Err(OciError::Reference {
            input: text.to_string(),
            reason: format!("parsed as registry {}", reference.registry()),
        });
    }
    Ok(reference)
}

fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("no registry host".into());
    }
    if host.contains('@') {
        return Err("credentials do not belong in the reference; use AKIDB_REGISTRY_USERNAME and AKIDB_REGISTRY_PASSWORD".into());
    }
    let valid = host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c));
    if !valid {
        return Err(format!("`{host}` is not a host name"));
    }
    Ok(())
}

/// Whether `host` (`NAME[:PORT]`, `IP[:PORT]` or `[IPv6]:PORT`) is this machine.
pub fn is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else if host.matches(':').count() == 1 {
        host.split(':').next().unwrap_or_default()
    } else {
        host
    };
    name == "localhost" || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// HTTPS, except plain HTTP for a loopback registry or when asked for explicitly.
pub fn protocol(host: &str, plain_http: bool) -> ClientProtocol {
    if plain_http || is_loopback(host) {
        ClientProtocol::HttpsExcept(vec![host.to_string()])
    } else {
        ClientProtocol::Https
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_registry_needs_the_oci_scheme_and_a_host() {
        let registry = ChartRegistry::parse("oci://127.0.0.1:5000/charts").unwrap();
        assert_eq!(registry.host, "127.0.0.1:5000");
        assert_eq!(registry.path, "charts");
        let reference = registry
            .chart_reference("akidb-candle", "2.0.0+build.1")
            .unwrap();
        assert_eq!(reference.repository(), "charts/akidb-candle");
        assert_eq!(reference.tag(), Some("2.0.0_build.1"));
        for bad in [
            "https://ghcr.io/charts",
            "oci://",
            "oci:///charts",
            "oci://ghcr.io/a//b",
            "oci://user:pw@ghcr.io/c",
        ] {
            let error = ChartRegistry::parse(bad).unwrap_err();
            assert!(
                matches!(error, OciError::Reference { .. }),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn image_reference_requires_a_host_and_a_tag() {
        let reference = image_reference("ghcr.io/akidb/embedding:v2.0.0").unwrap();
        assert_eq!(reference.registry(), "ghcr.io");
        assert_eq!(reference.repository(), "akidb/embedding");
        assert_eq!(reference.tag(), Some("v2.0.0"));
        let error = image_reference("akidb/embedding:v2.0.0")
            .unwrap_err()
            .to_string();
        assert!(error.contains("not a registry host"), "{error}");
        let error = image_reference("ghcr.io/akidb/embedding")
            .unwrap_err()
            .to_string();
        assert!(error.contains("no tag"), "{error}");
        let error = image_reference("ghcr.io/Akidb/Embedding:v1").unwrap_err();
        assert!(matches!(error, OciError::Reference { .. }));
        let joined = image_in_registry("127.0.0.1:5000", "akidb/embedding:v2.0.0").unwrap();
        assert_eq!(joined.registry(), "127.0.0.1:5000");
    }

    #[test]
    fn only_loopback_hosts_get_plain_http_unasked() {
        for host in [
            "127.0.0.1:5000",
            "localhost:5000",
            "localhost",
            "[::1]:5000",
            "127.3.4.5",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "ghcr.io",
            "10.0.0.1:5000",
            "[2001:db8::1]:443",
            "localhost.example.com",
        ] {
            assert!(!is_loopback(host), "{host}");
            assert!(
                matches!(protocol(host, false), ClientProtocol::Https),
                "{host}"
            );
        }
        assert!(matches!(
            protocol("10.0.0.1:5000", true),
            ClientProtocol::HttpsExcept(_)
        ));
    }
}
